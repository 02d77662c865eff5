"""Prompts (`store.prompts`), and which of them labeling, the arena and training may see.

    prompt_id = store.prompts.add("What is the capital of France?")
    store.prompts.add_many(texts, source="prompts.jsonl", eval_only=False)   # all or none, one transaction
    store.prompts.for_labeling(8)          # least sampled first; never a held-out (eval-only) prompt
    store.prompts.hold_out(20, seed=0)     # 20 unlabeled prompts no round trained on, held out for the arena
    store.prompts.for_arena(4)             # held-out prompts for battles, eval-only ones first

A prompt marked eval-only is held out for the arena: never sampled for labeling, and labels it already has never
train or export. A prompt some finished round trained on cannot be held out (a battle on it would favour that
round). The arena fights on the held-out prompts, or, while there are none, on any prompt no round trained on.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime

from storage.db import Cursor, Database
from storage.errors import StoreError
from storage.judgements import COUNTED_JUDGEMENTS
from storage.models import Prompt
from storage.ratings import COUNTED_RATINGS

# Prompts some finished round trained on: through a judgement (a pair, or "both bad" for KTO), a rating or an
# arena battle.
TRAINED_PROMPTS = """SELECT j.prompt_id FROM round_judgements rj JOIN rounds r ON r.id = rj.round_id
                     JOIN judgements j ON j.id = rj.judgement_id WHERE r.status = 'done'
                     UNION
                     SELECT t.prompt_id FROM round_ratings rr JOIN rounds r ON r.id = rr.round_id
                     JOIN ratings t ON t.id = rr.rating_id WHERE r.status = 'done'
                     UNION
                     SELECT b.prompt_id FROM round_battles rb JOIN rounds r ON r.id = rb.round_id
                     JOIN battles b ON b.id = rb.battle_id WHERE r.status = 'done'"""


class Prompts:
    """Prompts in a `Database` shared with the rest of the store; see the module docstring."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def add(self, text: str, source: str = "typed") -> int:
        """Store a prompt (stripped) and return its id; the same text again returns the existing id."""
        text = (text or "").strip()
        if not text:
            raise ValueError("Prompt is empty: type some text first.")
        return self.db.write(lambda cur: _insert_prompt(cur, text, source))

    def add_many(self, texts: Sequence[str], source: str, eval_only: bool = False) -> int:
        """Store all prompts in one transaction, or none if any is empty; returns how many were new.
        eval_only: the new ones are for the arena only (see `set_eval_only`); prompts already stored keep theirs."""
        cleaned = [(text or "").strip() for text in texts]
        for i, text in enumerate(cleaned, start=1):
            if not text:
                raise ValueError(f"Prompt {i} is empty; nothing was imported. Remove or fill it and try again.")

        import pyarrow as pa  # comes with datasets; imported here, like datasets, to keep start-up light

        incoming = pa.table({"pos": pa.array(range(len(cleaned)), pa.int64()), "text": pa.array(cleaned, pa.string())})

        def insert_all(cur: Cursor) -> int:
            # One set-based statement (DuckDB reads the Arrow table in place): each new text once, in file order.
            cur.register("incoming", incoming)
            try:
                return cur.execute(
                    """INSERT INTO prompts (text, source, created_at, eval_only)
                       SELECT n.text, ?, ?, ? FROM (SELECT text, min(pos) AS pos FROM incoming GROUP BY text) n
                       WHERE NOT EXISTS (SELECT 1 FROM prompts p WHERE p.text = n.text)
                       ORDER BY n.pos""",
                    [source, datetime.now(), bool(eval_only)],
                ).fetchone()[0]
            finally:
                cur.unregister("incoming")

        return self.db.write(insert_all)

    def count_unjudged(self) -> int:
        """Prompts for labeling without a counted vote yet (0: every one has one, and new pairs repeat prompts)."""
        return self.db.value(
            "SELECT count(*) FROM prompts WHERE NOT eval_only "
            f"AND id NOT IN (SELECT j.prompt_id FROM {COUNTED_JUDGEMENTS})"
        )

    def set_eval_only(self, prompt_ids: Collection[int], eval_only: bool = True) -> None:
        """Hold prompts out for the arena (eval_only) or give them back to labeling. An eval-only prompt is never
        sampled for labeling, and labels it already has never train or export. A prompt some finished round
        trained on cannot be held out (a battle on it would favour that round): refused, nothing changed."""
        ids = sorted({int(i) for i in prompt_ids})

        def mark(cur: Cursor) -> None:
            missing = cur.execute(
                "SELECT unnest(?::BIGINT[]) AS id EXCEPT SELECT id FROM prompts ORDER BY id", [ids]
            ).fetchall()
            if missing:
                raise StoreError(f"No prompt with id {missing[0][0]}; pick prompts from the prompt list.")
            if eval_only:
                trained = cur.execute(
                    f"SELECT min(id) FROM ({TRAINED_PROMPTS}) t(id) WHERE list_contains(?::BIGINT[], id)", [ids]
                ).fetchone()[0]
                if trained is not None:
                    raise StoreError(
                        f"Prompt {trained} has trained a round, so it cannot be held out for the arena; "
                        "hold out prompts no round has seen (import new ones with --eval-only)."
                    )
            cur.execute("UPDATE prompts SET eval_only = ? WHERE list_contains(?::BIGINT[], id)", [eval_only, ids])

        self.db.write(mark)

    def hold_out(self, n: int, seed: int | None = None) -> list[int]:
        """Hold out `n` prompts for the arena, drawn at random from those with no label yet (so no vote leaves
        training) that no round trained on; returns their ids. Refuses when fewer are left, changing nothing."""
        if not isinstance(n, int) or n < 1:
            raise StoreError(f"Say how many prompts to hold out (a whole number >= 1), got {n!r}.")

        def pick(cur: Cursor) -> list[int]:
            if seed is not None:
                cur.execute("SELECT setseed(?)", [(seed % 1000) / 1000])
            ids = [
                row[0]
                for row in cur.execute(
                    f"""SELECT id FROM prompts WHERE NOT eval_only
                        AND id NOT IN (SELECT j.prompt_id FROM {COUNTED_JUDGEMENTS})
                        AND id NOT IN (SELECT t.prompt_id FROM {COUNTED_RATINGS})
                        AND id NOT IN ({TRAINED_PROMPTS}) ORDER BY random() LIMIT ?""",
                    [n],
                ).fetchall()
            ]
            if len(ids) < n:
                raise StoreError(
                    f"Only {len(ids)} prompts have no label and trained no round; hold out at most that many, or "
                    "import new prompts as eval-only (python -m labeling import-prompts FILE --eval-only)."
                )
            cur.execute("UPDATE prompts SET eval_only = TRUE WHERE list_contains(?::BIGINT[], id)", [ids])
            return sorted(ids)

        return self.db.write(pick)

    def give_back_held_out(self) -> int:
        """Give every held-out prompt back to labeling; returns how many. Battles already fought on them stay."""

        def release(cur: Cursor) -> int:
            held = cur.execute("SELECT count(*) FROM prompts WHERE eval_only").fetchone()[0]
            # No RETURNING: with it DuckDB checks the prompts' foreign keys as if the rows were deleted.
            cur.execute("UPDATE prompts SET eval_only = FALSE WHERE eval_only")
            return held

        return self.db.write(release)

    def count_eval_only(self) -> int:
        """Prompts held out for the arena."""
        return self.db.value("SELECT count(*) FROM prompts WHERE eval_only")

    def count(self) -> int:
        """Every prompt, held-out ones too."""
        return self.db.value("SELECT count(*) FROM prompts")

    def list(self, limit: int | None = None, held_out: bool = True) -> list[Prompt]:
        """Prompts in the order they were added, at most `limit` of them; without the arena's held-out
        (eval-only) ones unless `held_out`."""
        where = "" if held_out else "WHERE NOT eval_only "
        rows = self.db.read(f"SELECT id, text, source FROM prompts {where}ORDER BY id LIMIT ?", [_limit(limit)])
        return [Prompt(*row) for row in rows]

    def get(self, prompt_id: int) -> Prompt:
        """The prompt with this id; StoreError if there is none."""
        rows = self.db.read("SELECT id, text, source FROM prompts WHERE id = ?", [prompt_id])
        if not rows:
            raise StoreError(f"No prompt with id {prompt_id}; pick one from the prompt list.")
        return Prompt(*rows[0])

    def for_labeling(self, n: int, exclude_ids: Collection[int] = ()) -> list[Prompt]:
        """Up to `n` prompts for labeling, sampled least so far first, random among equals; never an eval-only one.

        Counting generations rather than judgements keeps a prompt whose pair is on a labeler's screen (sampled,
        not yet voted on) from being sampled again before every other prompt has had its turn.
        """
        rows = self.db.read(
            """SELECT p.id, p.text, p.source FROM prompts p
               LEFT JOIN (SELECT prompt_id, count(*) AS n FROM generations GROUP BY prompt_id) g
                      ON g.prompt_id = p.id
               WHERE NOT p.eval_only AND NOT list_contains(?::BIGINT[], p.id)
               ORDER BY coalesce(g.n, 0), random() LIMIT ?""",
            [list(exclude_ids), max(n, 0)],
        )
        return [Prompt(*row) for row in rows]

    def for_arena(self, n: int, exclude_ids: Collection[int] = (), by_id: bool = False) -> list[Prompt]:
        """Up to `n` prompts for arena battles: held out from training, so a battle shows how versions do on
        prompts none of them learned from.

        The pool is every prompt marked eval-only (never sampled for labeling, never trained on) and every
        prompt that no finished round trained on (no judgement or rating of it is in a done round's lineage).
        Eval-only prompts come first, so once there are any the arena uses only them; among equals, the
        prompts with the fewest battles so far, random among those; with `by_id`, the oldest first instead (the
        same prompts each time while they stay held out: what round diagnostics compare on). `exclude_ids`
        (battles already queued) are left out."""
        order = "p.id" if by_id else "coalesce(b.n, 0), random()"
        rows = self.db.read(
            f"""SELECT p.id, p.text, p.source FROM prompts p
                LEFT JOIN (SELECT prompt_id, count(*) AS n FROM battles GROUP BY prompt_id) b ON b.prompt_id = p.id
                WHERE NOT list_contains(?::BIGINT[], p.id)
                  AND (p.eval_only OR p.id NOT IN ({TRAINED_PROMPTS}))
                ORDER BY p.eval_only DESC, {order} LIMIT ?""",
            [list(exclude_ids), max(n, 0)],
        )
        return [Prompt(*row) for row in rows]

    def count_held_out(self) -> tuple[int, int]:
        """(eval-only prompts, other prompts no round trained on): the arena's pool, as `for_arena` draws
        from it."""
        row = self.db.read(
            f"""SELECT count(*) FILTER (WHERE p.eval_only),
                       count(*) FILTER (WHERE NOT p.eval_only AND p.id NOT IN ({TRAINED_PROMPTS}))
                FROM prompts p"""
        )[0]
        return int(row[0]), int(row[1])


def _insert_prompt(cur: Cursor, text: str, source: str) -> int:
    """The id of the prompt with this text, inserting it if new."""
    row = cur.execute("SELECT id FROM prompts WHERE text = ?", [text]).fetchone()
    if row:
        return row[0]
    return cur.execute(
        "INSERT INTO prompts (text, source, created_at) VALUES (?, ?, ?) RETURNING id", [text, source, datetime.now()]
    ).fetchone()[0]


def _limit(limit: int | None) -> int | None:
    if limit is not None and limit < 0:
        raise ValueError(f"limit must be >= 0 or None, got {limit}")
    return limit
