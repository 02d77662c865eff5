"""The one DuckDB file, one part per table group, each on the same `Database`:

    store = Store("data/prefloop.duckdb")      # or Store() / Store(":memory:") in tests
    store.prompts.add("What is 2 + 2?")                                            # storage/prompts.py
    store.generations.add(prompt_id, "base", "4.", settings)                      # storage/generations.py
    store.judgements.add(prompt_id, left_id, right_id, "left", labeler="ana", policy_version="base")
    store.ratings.add(generation_id, "up", labeler="ana", policy_version="base")  # one completion, 👍
    store.training_data.preference_pairs(unused_only=True)   # what the next round trains on
    store.guidelines.latest(); store.settings.sampling()     # storage/guidelines.py, storage/settings.py
    store.rounds.start(config, parent_round=None, base_model="...")               # see storage/rounds.py
    store.battles.vote(battle_id, "left", labeler="ana")                          # the arena: storage/arena.py
    store.audit.votes()                                                            # storage/audit.py

All SQL lives in the storage package; `storage/db.py` holds the connection (a cursor per call, every write
in a transaction that commits before the call returns, retried on write conflicts).
"""

from __future__ import annotations

import os

from storage.arena import Battles
from storage.audit import Audit
from storage.db import Database
from storage.errors import StoreError
from storage.generations import Generations
from storage.guidelines import Guidelines
from storage.judgements import Judgements
from storage.migrations import applied_migrations as _applied_migrations
from storage.migrations import apply_migrations
from storage.prompts import Prompts
from storage.ratings import Ratings
from storage.rounds import Rounds
from storage.settings import Settings
from storage.training_data import TrainingData

__all__ = ["DEFAULT_DB", "Store", "StoreError"]

DEFAULT_DB = "data/prefloop.duckdb"  # the app's database file, relative to where it starts


class Store:
    """Thread-safe access to one prefloop database, its parts composed on one `Database`; see the module
    docstring."""

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
        self.guidelines = Guidelines(self.db)
        self.rounds = Rounds(self.db)
        self.battles = Battles(self.db)
        self.audit = Audit(self.db)
        self.training_data = TrainingData(self.db, self.battles)

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
