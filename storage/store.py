"""The one DuckDB file: guidelines and training data here; prompts (and which are held out) in `store.prompts`,
completions in `store.generations`, votes on pairs (with withdrawals and edits) in `store.judgements`, 👍 / 👎 in
`store.ratings`, rounds in `store.rounds`, arena battles in `store.battles`, label audits and second looks in
`store.audit`, app settings in `store.settings`.

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
from collections.abc import Collection
from datetime import datetime

from storage.audit import Audit
from storage.battles import Battles
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
from storage.prompts import Prompts
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
        self.prompts = Prompts(self.db)
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
