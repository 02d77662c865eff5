"""The one DuckDB file: prompts, guidelines and training data here; completions in `store.generations`, votes
on pairs (with withdrawals and edits) in `store.judgements`, 👍 / 👎 in `store.ratings`, rounds in `store.rounds`,
arena battles in `store.battles`, label audits and second looks in `store.audit`, app settings in `store.settings`.

    store = Store("data/prefloop.duckdb")      # or Store() / Store(":memory:") in tests
    store.judgements.add(prompt_id, left_id, right_id, "left", labeler="ana", policy_version="base")
    store.ratings.add(generation_id, "up", labeler="ana", policy_version="base")  # one completion, 👍
    store.preference_pairs(unused_only=True)   # what the next round trains on
    store.rounds.start(config, parent_round=None, base_model="...")               # see storage/rounds.py
    store.battles.vote(battle_id, "left", labeler="ana")                          # the arena: storage/battles.py

All SQL lives in the storage package; `storage/db.py` holds the connection (a cursor per call, every write
in a transaction that commits before the call returns, retried on write conflicts).
"""

from __future__ import annotations

import os
from collections.abc import Collection, Sequence
from datetime import datetime

from storage.audit import Audit
from storage.battles import TRAINED_PROMPTS, Battles
from storage.db import Cursor, Database
from storage.errors import StoreError
from storage.export import check_format, write_rows
from storage.generations import Generations
from storage.judgements import COUNTED_JUDGEMENTS, UNUSED_JUDGEMENT, Judgements
from storage.labels import (
    BOTH_BAD_CHOICES,
    PAIR_CHOICES,
    PreferencePair,
    UnpairedExample,
    kto_rows,
    trl_rows,
)
from storage.migrations import applied_migrations as _applied_migrations
from storage.migrations import apply_migrations
from storage.models import Prompt
from storage.ratings import COUNTED_RATINGS, UNUSED_RATING, Ratings
from storage.rounds import Rounds
from storage.settings import Settings

__all__ = ["DEFAULT_DB", "Store", "StoreError"]

DEFAULT_DB = "data/prefloop.duckdb"  # the app's database file, relative to where it starts


class Store:
    """Thread-safe access to one prefloop database; see the module docstring."""

    def __init__(self, path: str | os.PathLike = ":memory:") -> None:
        self.db = Database(path)
        self.path = self.db.path
        try:
            with self.db.cursor() as cur:
                apply_migrations(cur, where=self.path)
        except BaseException:
            self.db.close()
            raise
        self.settings = Settings(self.db)
        self.generations = Generations(self.db)
        self.judgements = Judgements(self.db)
        self.ratings = Ratings(self.db)
        self.rounds = Rounds(self.db)
        self.battles = Battles(self.db)
        self.audit = Audit(self.db)

    def close(self) -> None:
        """Close the database; committed writes are already on disk."""
        self.db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def applied_migrations(self) -> list[str]:
        """Names of the schema migrations this database has, in the order they were applied."""
        with self.db.cursor() as cur:
            return _applied_migrations(cur)

    # -- prompts --------------------------------------------------------------------------------------
    def add_prompt(self, text: str, source: str = "typed") -> int:
        """Store a prompt (stripped) and return its id; the same text again returns the existing id."""
        text = (text or "").strip()
        if not text:
            raise ValueError("Prompt is empty: type some text first.")
        return self.db.write(lambda cur: _insert_prompt(cur, text, source))

    def add_prompts(self, texts: Sequence[str], source: str, eval_only: bool = False) -> int:
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

    def count_unjudged_prompts(self) -> int:
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

    def count_prompts(self) -> int:
        return self.db.value("SELECT count(*) FROM prompts")

    def list_prompts(self, limit: int | None = None, held_out: bool = True) -> list[Prompt]:
        """Prompts in the order they were added, at most `limit` of them; without the arena's held-out
        (eval-only) ones unless `held_out`."""
        where = "" if held_out else "WHERE NOT eval_only "
        rows = self.db.read(f"SELECT id, text, source FROM prompts {where}ORDER BY id LIMIT ?", [_limit(limit)])
        return [Prompt(*row) for row in rows]

    def get_prompt(self, prompt_id: int) -> Prompt:
        rows = self.db.read("SELECT id, text, source FROM prompts WHERE id = ?", [prompt_id])
        if not rows:
            raise StoreError(f"No prompt with id {prompt_id}; pick one from the prompt list.")
        return Prompt(*rows[0])

    def next_prompts(self, n: int, exclude_ids: Collection[int] = ()) -> list[Prompt]:
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

    # -- guidelines -----------------------------------------------------------------------------------
    def set_guidelines(self, text: str, author: str) -> int:
        """A new version of the labeling guidelines (Markdown); earlier versions stay. Returns its id."""

        def insert(cur: Cursor) -> int:
            return cur.execute(
                "INSERT INTO guidelines (text, author, created_at) VALUES (?, ?, ?) RETURNING id",
                [text, author, datetime.now()],
            ).fetchone()[0]

        return self.db.write(insert)

    def guidelines(self) -> tuple[str, str, datetime] | None:
        """The newest guidelines as (text, author, when), or None before any were written."""
        rows = self.db.read("SELECT text, author, created_at FROM guidelines ORDER BY id DESC LIMIT 1")
        return rows[0] if rows else None

    def guideline_history(self) -> list[tuple[int, str, datetime]]:
        return self.db.read("SELECT id, author, created_at FROM guidelines ORDER BY id")

    # -- training data --------------------------------------------------------------------------------
    def preference_pairs(
        self, unused_only: bool = False, judgement_ids: Collection[int] | None = None
    ) -> list[PreferencePair]:
        """Left/right votes as (prompt, chosen, rejected), by judgement id; other votes never become pairs, and
        votes on prompts held out for the arena (eval-only) never train or export.

        unused_only: leave out judgements a finished ('done') round trained on.
        judgement_ids: only these judgements.
        """
        sql = f"""SELECT p.text,
                        CASE WHEN j.choice = 'left' THEN gl.text ELSE gr.text END AS chosen,
                        CASE WHEN j.choice = 'left' THEN gr.text ELSE gl.text END AS rejected, j.id
                 FROM {COUNTED_JUDGEMENTS}
                 JOIN prompts p ON p.id = j.prompt_id
                 JOIN generations gl ON gl.id = j.left_generation_id
                 JOIN generations gr ON gr.id = j.right_generation_id
                 WHERE NOT p.eval_only AND list_contains(?::VARCHAR[], j.choice)"""
        params: list = [list(PAIR_CHOICES)]
        if unused_only:
            sql += UNUSED_JUDGEMENT
        if judgement_ids is not None:
            sql += " AND list_contains(?::BIGINT[], j.id)"
            params.append(list(judgement_ids))
        return [PreferencePair(*row) for row in self.db.read(sql + " ORDER BY j.id", params)]

    def unpaired_examples(self, unused_only: bool = False) -> list[UnpairedExample]:
        """Labels on single completions, for unpaired losses (KTO): each "both bad" vote as two 👎 (left then
        right), by judgement id, then each 👍 / 👎 rating, by rating id; none on eval-only prompts.

        unused_only: leave out labels a finished ('done') round trained on.
        """
        sql = f"""SELECT j.id, p.text, g.text FROM {COUNTED_JUDGEMENTS}
                 JOIN prompts p ON p.id = j.prompt_id
                 JOIN generations g ON g.id IN (j.left_generation_id, j.right_generation_id)
                 WHERE NOT p.eval_only AND list_contains(?::VARCHAR[], j.choice)"""
        sql += (UNUSED_JUDGEMENT if unused_only else "") + " ORDER BY j.id, g.id = j.right_generation_id"
        rows = self.db.read(sql, [list(BOTH_BAD_CHOICES)])
        both_bad = [UnpairedExample(prompt, text, False, judgement_id) for judgement_id, prompt, text in rows]
        sql = f"""SELECT t.id, p.text, g.text, t.rating = 'up' FROM {COUNTED_RATINGS}
                 JOIN prompts p ON p.id = t.prompt_id
                 JOIN generations g ON g.id = t.generation_id WHERE NOT p.eval_only"""
        rows = self.db.read(sql + (UNUSED_RATING if unused_only else "") + " ORDER BY t.id")
        rated = [UnpairedExample(prompt, text, good, rating_id=rating_id) for rating_id, prompt, text, good in rows]
        return both_bad + rated

    def export_pairs(self, path: str | os.PathLike, fmt: str = "jsonl", include_arena: bool = False) -> int:
        """Write all pairs in TRL's conversational format (jsonl, parquet or an hf folder); returns the count.
        include_arena: decisive arena votes too, after the labels, every row with its `source` ("label" /
        "arena") and `battle_id`; without it the rows are the labels alone, as before arena votes could train."""
        check_format(fmt)
        pairs = self.preference_pairs() + (self.battles.preference_pairs() if include_arena else [])
        if not pairs:
            raise StoreError(
                "No preference pairs to export yet: label some pairs (pick left or right)"
                + (" or vote A / B in the arena" if include_arena else "")
                + " first."
            )
        return write_rows(trl_rows(pairs, with_source=include_arena), path, fmt)

    def export_unpaired(self, path: str | os.PathLike, fmt: str = "jsonl", include_arena: bool = False) -> int:
        """Write every label as one completion with a 👍 / 👎 (TRL's unpaired format: prompt, completion, label),
        exactly what a KTO round trains on: each pair as its chosen 👍 and rejected 👎, each "both bad" vote as
        two 👎, and each rating. include_arena: as for `export_pairs`. Returns the number of rows."""
        check_format(fmt)
        pairs = self.preference_pairs() + (self.battles.preference_pairs() if include_arena else [])
        rows = kto_rows(pairs, self.unpaired_examples(), with_source=include_arena)
        if not rows:
            raise StoreError("Nothing to export yet: vote on pairs or rate completions 👍 / 👎 first.")
        return write_rows(rows, path, fmt)


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
