"""Completions of prompts (`store.generations`): each with the policy version that wrote it and its sampling
settings, or written by a labeler (an edit to chosen, see `store.judgements.add_edited_pair`).

    generation_id = store.generations.add(prompt_id, "base", "Paris.", {"temperature": 0.7}, cut_at=None)
    store.generations.get(generation_id)   # Generation(id, prompt_id, "base", "Paris.", {...}, "model", None)
"""

from __future__ import annotations

import json
from datetime import datetime

from storage.db import Cursor, Database
from storage.errors import StoreError
from storage.models import Generation


class Generations:
    """Completions in a `Database` shared with the rest of the store; see the module docstring."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def add(self, prompt_id: int, version: str, text: str, settings: dict, cut_at: int | None = None) -> int:
        """Store one completion of a prompt by policy `version` with its sampling settings; returns its id.
        cut_at: the token limit stopped it after that many new tokens."""

        def insert(cur: Cursor) -> int:
            return insert_generation(cur, prompt_id, version, text, settings, "model", cut_at)

        return self.db.write(insert)

    def count(self) -> int:
        """Completions stored so far (the sampler stores two per pair)."""
        return self.db.value("SELECT count(*) FROM generations")

    def get(self, generation_id: int) -> Generation:
        rows = self.db.read(
            "SELECT id, prompt_id, version, text, settings, author, cut_at FROM generations WHERE id = ?",
            [generation_id],
        )
        if not rows:
            raise StoreError(f"No generation with id {generation_id}; fetch a new pair.")
        gid, prompt_id, version, text, settings, author, cut_at = rows[0]
        return Generation(gid, prompt_id, version, text, json.loads(settings), author or "model", cut_at)


def insert_generation(
    cur: Cursor, prompt_id: int, version: str, text: str, settings: dict, author: str, cut_at: int | None
) -> int:
    """Insert a completion inside the caller's transaction and return its id; StoreError if the prompt is missing."""
    if cur.execute("SELECT 1 FROM prompts WHERE id = ?", [prompt_id]).fetchone() is None:
        raise StoreError(f"No prompt with id {prompt_id}; add the prompt before its completions.")
    return cur.execute(
        "INSERT INTO generations (prompt_id, version, text, settings, created_at, author, cut_at) "
        "VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING id",
        [prompt_id, version, text, json.dumps(settings), datetime.now(), author, cut_at],
    ).fetchone()[0]
