"""👍 / 👎 ratings of single completions (`store.ratings`), for unpaired losses (KTO).

    rating_id = store.ratings.add(generation_id, "up", labeler="ana", policy_version="base")
    store.ratings.count("down")

A completion's first rating is the one that counts (`rated_generations`, migration 003_one_label_each).
"""

from __future__ import annotations

from datetime import datetime

from storage.db import Cursor, Database
from storage.errors import StoreError
from storage.labels import RATINGS
from storage.models import Rating
from storage.rounds import SERVING_LINEAGE

# The ratings that count: a completion's first rating (see migration 003_one_label_each).
COUNTED_RATINGS = "rated_generations rg JOIN ratings t ON t.id = rg.rating_id"
# Ratings the serving version has not trained on (appended to a WHERE over ratings t), as UNUSED_JUDGEMENT is
# for judgements in storage/judgements.py.
UNUSED_RATING = f""" AND t.id NOT IN (SELECT rr.rating_id FROM round_ratings rr
                                      WHERE rr.round_id IN {SERVING_LINEAGE})"""


class Ratings:
    """Ratings of single completions in a `Database` shared with the rest of the store; see the module docstring."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def add(self, generation_id: int, rating: str, labeler: str, policy_version: str) -> int:
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

    def count(self, rating: str | None = None) -> int:
        """How many ratings there are, or how many 👍 ("up") or 👎 ("down")."""
        if rating is None:
            return self.db.value("SELECT count(*) FROM rated_generations")
        if rating not in RATINGS:
            raise ValueError(f"rating must be one of {', '.join(RATINGS)}; got {rating!r}")
        return self.db.value(f"SELECT count(*) FROM {COUNTED_RATINGS} WHERE t.rating = ?", [rating])

    def list(self) -> list[Rating]:
        """Every rating, oldest first."""
        rows = self.db.read(
            "SELECT id, prompt_id, generation_id, rating, labeler, policy_version, created_at FROM ratings ORDER BY id"
        )
        return [Rating(*row) for row in rows]
