"""The labeling guidelines (`store.guidelines`): Markdown, versioned; every version is kept.

store.guidelines.set("Prefer the shorter answer when both are right.", author="ana")   # -> its id
store.guidelines.latest()    # ("Prefer the shorter ...", "ana", datetime(...)), or None before any
"""

from __future__ import annotations

from datetime import datetime

from storage.db import Cursor, Database


class Guidelines:
    """Guideline versions in a `Database` shared with the rest of the store; see the module docstring."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def set(self, text: str, author: str) -> int:
        """A new version of the labeling guidelines (Markdown); earlier versions stay. Returns its id."""

        def insert(cur: Cursor) -> int:
            return cur.execute(
                "INSERT INTO guidelines (text, author, created_at) VALUES (?, ?, ?) RETURNING id",
                [text, author, datetime.now()],
            ).fetchone()[0]

        return self.db.write(insert)

    def latest(self) -> tuple[str, str, datetime] | None:
        """The newest guidelines as (text, author, when), or None before any were written."""
        rows = self.db.read("SELECT text, author, created_at FROM guidelines ORDER BY id DESC LIMIT 1")
        return rows[0] if rows else None

    def history(self) -> list[tuple[int, str, datetime]]:
        """Every version as (id, author, when), oldest first."""
        return self.db.read("SELECT id, author, created_at FROM guidelines ORDER BY id")
