"""The one DuckDB file: prompts, generations, judgements and ratings here; rounds in `store.rounds`, arena
battles in `store.battles`, label audits and second looks in `store.audit`, app settings in `store.settings`.

    store = Store("data/prefloop.duckdb")      # or Store() / Store(":memory:") in tests
    store.add_judgement(prompt_id, left_id, right_id, "left", labeler="ana", policy_version="base")
    store.add_rating(generation_id, "up", labeler="ana", policy_version="base")   # one completion, 👍
    store.preference_pairs(unused_only=True)   # what the next round trains on
    store.rounds.start(config, parent_round=None, base_model="...")               # see storage/rounds.py
    store.battles.vote(battle_id, "left", labeler="ana")                          # the arena: storage/battles.py

All SQL lives in the storage package; `storage/db.py` holds the connection (a cursor per call, every write
in a transaction that commits before the call returns, retried on write conflicts).
"""

from __future__ import annotations

import json
import os
from collections.abc import Collection, Sequence
from datetime import datetime

from storage.audit import Audit
from storage.battles import TRAINED_PROMPTS, Battles
from storage.db import Cursor, Database
from storage.errors import StoreError
from storage.export import check_format, write_rows
from storage.labels import (
    BOTH_BAD_CHOICES,
    CHOICES,
    PAIR_CHOICES,
    RATINGS,
    PreferencePair,
    UnpairedExample,
    kto_rows,
    trl_rows,
)
from storage.migrations import applied_migrations as _applied_migrations
from storage.migrations import apply_migrations
from storage.models import Generation, Judgement, Prompt, Rating
from storage.rounds import SERVING_LINEAGE, Rounds
from storage.settings import Settings

__all__ = ["DEFAULT_DB", "Store", "StoreError"]

DEFAULT_DB = "data/prefloop.duckdb"  # the app's database file, relative to where it starts
# The labels that count: a pair's first judgement, a completion's first rating (see migration 003_one_label_each).
COUNTED_JUDGEMENTS = "judged_pairs jp JOIN judgements j ON j.id = jp.judgement_id"
COUNTED_RATINGS = "rated_generations rg JOIN ratings t ON t.id = rg.rating_id"
# Judgements the serving version has not trained on: no round of its lineage used them (appended to a WHERE
# over judgements j). A round that finished but never served (held back by review or the health gate), or that
# was rolled back, does not use up its labels: the next round from the serving version trains on them.
UNUSED_JUDGEMENT = f""" AND j.id NOT IN (SELECT rj.judgement_id FROM round_judgements rj
                                         WHERE rj.round_id IN {SERVING_LINEAGE})"""
# The same for ratings (appended to a WHERE over ratings t).
UNUSED_RATING = f""" AND t.id NOT IN (SELECT rr.rating_id FROM round_ratings rr
                                      WHERE rr.round_id IN {SERVING_LINEAGE})"""


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

    # -- generations ----------------------------------------------------------------------------------
    def add_generation(self, prompt_id: int, version: str, text: str, settings: dict, cut_at: int | None = None) -> int:
        """Store one completion of a prompt by policy `version` with its sampling settings; returns its id.
        cut_at: the token limit stopped it after that many new tokens."""

        def insert(cur: Cursor) -> int:
            return _insert_generation(cur, prompt_id, version, text, settings, "model", cut_at)

        return self.db.write(insert)

    def count_generations(self) -> int:
        """Completions stored so far (the sampler stores two per pair)."""
        return self.db.value("SELECT count(*) FROM generations")

    def get_generation(self, generation_id: int) -> Generation:
        rows = self.db.read(
            "SELECT id, prompt_id, version, text, settings, author, cut_at FROM generations WHERE id = ?",
            [generation_id],
        )
        if not rows:
            raise StoreError(f"No generation with id {generation_id}; fetch a new pair.")
        gid, prompt_id, version, text, settings, author, cut_at = rows[0]
        return Generation(gid, prompt_id, version, text, json.loads(settings), author or "model", cut_at)

    # -- judgements -----------------------------------------------------------------------------------
    def add_judgement(
        self,
        prompt_id: int,
        left_generation_id: int,
        right_generation_id: int,
        choice: str,
        labeler: str,
        policy_version: str,
    ) -> int:
        """Record a vote on a pair as shown (left / right generation ids); committed before returning.

        A pair is judged once: the same vote again (a double key press, a retried request) returns the first
        one's id and stores nothing; a different vote on an already judged pair is refused."""
        if choice not in CHOICES:
            raise ValueError(f"choice must be one of {', '.join(CHOICES)}; got {choice!r}")

        def insert(cur: Cursor) -> int:
            owned = cur.execute(
                "SELECT count(*) FROM generations WHERE id IN (?, ?) AND prompt_id = ?",
                [left_generation_id, right_generation_id, prompt_id],
            ).fetchone()[0]
            if owned != 2 or left_generation_id == right_generation_id:
                raise StoreError(
                    f"Generations {left_generation_id} and {right_generation_id} are not two completions of prompt "
                    f"{prompt_id}; fetch a new pair and vote again."
                )
            low, high = sorted([left_generation_id, right_generation_id])
            prior = cur.execute(
                "SELECT j.id, j.choice, j.labeler FROM judged_pairs p JOIN judgements j ON j.id = p.judgement_id "
                "WHERE p.low_generation_id = ? AND p.high_generation_id = ?",
                [low, high],
            ).fetchone()
            if prior is not None:
                if prior[1:] == (choice, labeler):
                    return prior[0]
                raise StoreError(
                    f"This pair already has vote #{prior[0]} ({prior[1]}, by {prior[2]}); each pair is judged once. "
                    "Fetch the next pair."
                )
            judgement_id = cur.execute(
                "INSERT INTO judgements (prompt_id, left_generation_id, right_generation_id, choice, labeler, "
                "policy_version, created_at) VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING id",
                [prompt_id, left_generation_id, right_generation_id, choice, labeler, policy_version, datetime.now()],
            ).fetchone()[0]
            # the primary key on (low, high): of two votes on this pair racing each other, one commits; the
            # other is retried (a write conflict) and then finds this one above
            cur.execute("INSERT INTO judged_pairs VALUES (?, ?, ?)", [low, high, judgement_id])
            return judgement_id

        return self.db.write(insert)

    def withdraw_judgement(self, judgement_id: int, labeler: str) -> None:
        """Undo a vote: it stays as a row (the audit) with a withdrawal beside it, never counts, trains or
        exports again, and its pair can be judged anew. Only its labeler may, and not once a round used it."""

        def withdraw(cur: Cursor) -> None:
            row = cur.execute(
                "SELECT j.labeler, j.created_at, w.judgement_id IS NOT NULL FROM judgements j "
                "LEFT JOIN withdrawals w ON w.judgement_id = j.id WHERE j.id = ?",
                [judgement_id],
            ).fetchone()
            if row is None:
                raise StoreError(f"No vote #{judgement_id} to undo.")
            owner, created_at, withdrawn = row
            if withdrawn:
                raise StoreError(f"Vote #{judgement_id} is already undone.")
            if owner != labeler:
                raise StoreError(f"Vote #{judgement_id} is {owner}'s; you can undo only your own votes.")
            used = cur.execute(
                "SELECT min(r.id) FROM rounds r LEFT JOIN round_judgements rj ON rj.round_id = r.id "
                "WHERE (r.status = 'done' AND rj.judgement_id = ?) OR (r.status = 'running' AND r.started_at > ?)",
                [judgement_id, created_at],
            ).fetchone()[0]
            if used is not None:
                raise StoreError(
                    f"Vote #{judgement_id} is in round {used}'s training data, so it cannot be undone; "
                    "a later round can outweigh it."
                )
            cur.execute("DELETE FROM judged_pairs WHERE judgement_id = ?", [judgement_id])
            cur.execute("INSERT INTO withdrawals VALUES (?, ?, ?)", [judgement_id, labeler, datetime.now()])

        self.db.write(withdraw)

    def withdrawn_judgements(self) -> list[int]:
        return [jid for (jid,) in self.db.read("SELECT judgement_id FROM withdrawals ORDER BY judgement_id")]

    def add_edited_pair(
        self, prompt_id: int, original_id: int, edited_text: str, labeler: str, policy_version: str
    ) -> int:
        """Edit to chosen: store `edited_text` as a human-written completion of the prompt and a judgement
        with it as chosen (left) and the original completion `original_id` as rejected. Returns its id."""
        edited_text = (edited_text or "").strip()
        if not edited_text:
            raise StoreError("The edited answer is empty: write the better answer, or cancel the edit.")

        def insert(cur: Cursor) -> int:
            original = cur.execute(
                "SELECT text FROM generations WHERE id = ? AND prompt_id = ?", [original_id, prompt_id]
            ).fetchone()
            if original is None:
                raise StoreError(f"Generation {original_id} is not a completion of prompt {prompt_id}.")
            if original[0].strip() == edited_text:
                raise StoreError("The edit is the same as the original: change it, or vote instead.")
            edited_id = _insert_generation(cur, prompt_id, policy_version, edited_text, {}, "human", None)
            judgement_id = cur.execute(
                "INSERT INTO judgements (prompt_id, left_generation_id, right_generation_id, choice, labeler, "
                "policy_version, created_at) VALUES (?, ?, ?, 'left', ?, ?, ?) RETURNING id",
                [prompt_id, edited_id, original_id, labeler, policy_version, datetime.now()],
            ).fetchone()[0]
            cur.execute("INSERT INTO judged_pairs VALUES (?, ?, ?)", [*sorted([edited_id, original_id]), judgement_id])
            return judgement_id

        return self.db.write(insert)

    def label_counters(self, labeler: str | None = None) -> dict[str, int]:
        """Counted votes today (since local midnight), by `labeler`, and since the last finished round."""
        midnight = datetime.now().replace(hour=0, minute=0, second=0, microsecond=0)
        today, mine = self.db.read(
            f"SELECT count(*) FILTER (WHERE j.created_at >= ?), count(*) FILTER (WHERE j.labeler = ?) "
            f"FROM {COUNTED_JUDGEMENTS}",
            [midnight, labeler or ""],
        )[0]
        unused = self.db.value(f"SELECT count(*) FROM {COUNTED_JUDGEMENTS} WHERE true{UNUSED_JUDGEMENT}")
        return {"today": today, "mine": mine, "since_round": unused}

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

    def count_judgements(self, choice: str | None = None) -> int:
        """How many votes there are, or how many with this `choice`."""
        if choice is None:
            return self.db.value("SELECT count(*) FROM judged_pairs")
        if choice not in CHOICES:
            raise ValueError(f"choice must be one of {', '.join(CHOICES)}; got {choice!r}")
        return self.db.value(f"SELECT count(*) FROM {COUNTED_JUDGEMENTS} WHERE j.choice = ?", [choice])

    def list_judgements(self) -> list[Judgement]:
        rows = self.db.read(
            "SELECT id, prompt_id, left_generation_id, right_generation_id, choice, labeler, policy_version, "
            "created_at FROM judgements ORDER BY id"
        )
        return [Judgement(*row) for row in rows]

    # -- ratings --------------------------------------------------------------------------------------
    def add_rating(self, generation_id: int, rating: str, labeler: str, policy_version: str) -> int:
        """Record a 👍 ("up") or 👎 ("down") on one completion; committed before returning. Returns its id.

        A completion is rated once: the same rating again returns the first one's id and stores nothing; a
        different rating of an already rated completion is refused."""
        if rating not in RATINGS:
            raise ValueError(f"rating must be one of {', '.join(RATINGS)}; got {rating!r}")

        def insert(cur: Cursor) -> int:
            row = cur.execute("SELECT prompt_id FROM generations WHERE id = ?", [generation_id]).fetchone()
            if row is None:
                raise StoreError(f"No generation with id {generation_id}; fetch a new pair and rate again.")
            prior = cur.execute(
                "SELECT t.id, t.rating, t.labeler FROM rated_generations g JOIN ratings t ON t.id = g.rating_id "
                "WHERE g.generation_id = ?",
                [generation_id],
            ).fetchone()
            if prior is not None:
                if prior[1:] == (rating, labeler):
                    return prior[0]
                raise StoreError(
                    f"This completion already has rating #{prior[0]} ({prior[1]}, by {prior[2]}); each completion "
                    "is rated once. Go on to the next one."
                )
            rating_id = cur.execute(
                "INSERT INTO ratings (prompt_id, generation_id, rating, labeler, policy_version, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?) RETURNING id",
                [row[0], generation_id, rating, labeler, policy_version, datetime.now()],
            ).fetchone()[0]
            cur.execute("INSERT INTO rated_generations VALUES (?, ?)", [generation_id, rating_id])  # one per completion
            return rating_id

        return self.db.write(insert)

    def count_ratings(self, rating: str | None = None) -> int:
        """How many ratings there are, or how many 👍 ("up") or 👎 ("down")."""
        if rating is None:
            return self.db.value("SELECT count(*) FROM rated_generations")
        if rating not in RATINGS:
            raise ValueError(f"rating must be one of {', '.join(RATINGS)}; got {rating!r}")
        return self.db.value(f"SELECT count(*) FROM {COUNTED_RATINGS} WHERE t.rating = ?", [rating])

    def list_ratings(self) -> list[Rating]:
        rows = self.db.read(
            "SELECT id, prompt_id, generation_id, rating, labeler, policy_version, created_at FROM ratings ORDER BY id"
        )
        return [Rating(*row) for row in rows]

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


def _insert_generation(
    cur: Cursor, prompt_id: int, version: str, text: str, settings: dict, author: str, cut_at: int | None
) -> int:
    if cur.execute("SELECT 1 FROM prompts WHERE id = ?", [prompt_id]).fetchone() is None:
        raise StoreError(f"No prompt with id {prompt_id}; add the prompt before its completions.")
    return cur.execute(
        "INSERT INTO generations (prompt_id, version, text, settings, created_at, author, cut_at) "
        "VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING id",
        [prompt_id, version, text, json.dumps(settings), datetime.now(), author, cut_at],
    ).fetchone()[0]


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
