"""App settings an admin changes while the app runs (`store.settings`), kept in the `settings` table so a restart
keeps them: the sampling settings, whether rounds wait for review, and the share of second looks.

    store.settings.set_sampling({"temperature": 0.7, "top_p": 0.9, "max_new_tokens": 256})
    store.settings.sampling()                 # the dict above, or None before an admin applied any
    store.settings.set_review(True)           # each finished round waits for review before it serves
    store.settings.set_second_look_share(0.1) # a tenth of the pairs served are someone else's, shown again

The same table holds the serving version and the round awaiting review; those are round state, checked against
the rounds table, and live with it in storage/rounds.py.
"""

from __future__ import annotations

import json

from storage.db import Database

SHARE_KEY = "second_look_share"  # the share of served pairs that are second looks (storage/audit.py)


class Settings:
    """App settings in a `Database` shared with the rest of the store; see the module docstring."""

    def __init__(self, db: Database) -> None:
        self.db = db

    # -- sampling -------------------------------------------------------------------------------------
    def sampling(self) -> dict | None:
        """The sampling settings an admin last applied (temperature, top_p, max_new_tokens), or None."""
        value = self.db.value("SELECT value FROM settings WHERE key = 'sampling'")
        return json.loads(value) if value else None

    def set_sampling(self, settings: dict) -> None:
        """Keep `settings` for the next start (`sampling`)."""
        value = json.dumps(settings)
        self.db.write(lambda cur: cur.execute("INSERT OR REPLACE INTO settings VALUES ('sampling', ?)", [value]))

    # -- review before serving ------------------------------------------------------------------------
    def set_review(self, on: bool) -> None:
        """Review each round before serving it (True), or serve each round as it finishes (False, the default)."""
        value = "on" if on else "off"
        self.db.write(lambda cur: cur.execute("INSERT OR REPLACE INTO settings VALUES ('review_rounds', ?)", [value]))

    def review(self) -> bool:
        """Whether finished rounds wait for review instead of serving at once."""
        return self.db.value("SELECT value FROM settings WHERE key = 'review_rounds'") == "on"

    # -- second looks ---------------------------------------------------------------------------------
    def second_look_share(self) -> float:
        """The share of served pairs that are second looks (0: none, the default)."""
        value = self.db.value("SELECT value FROM settings WHERE key = ?", [SHARE_KEY])
        return float(value) if value is not None else 0.0

    def set_second_look_share(self, share: float) -> None:
        """Serve this share of pairs (0 to 1) as second looks from now on; kept in the database."""
        share = float(share)
        if not 0.0 <= share <= 1.0:
            raise ValueError(f"The share of second looks must be between 0 and 1, got {share}; 0 turns them off.")
        self.db.write(lambda cur: cur.execute("INSERT OR REPLACE INTO settings VALUES (?, ?)", [SHARE_KEY, str(share)]))
