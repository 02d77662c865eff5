"""Training rounds, their lineage (parent round, judgements, ratings and arena battles trained on) and the
serving version.

A round starts 'running' and ends exactly once: 'done' (finish_round, which also records the judgements, ratings
and battles it trained on, in the same transaction), or 'failed' / 'cancelled' (fail). Only done rounds can be
served, and only their labels count as used.

    store.rounds.start(config, parent_round=None, base_model="...")  # -> round id, 'running'
    store.rounds.finish(round_id, "runs/round_001/adapter", metrics, judgement_ids, rating_ids, battle_ids)
    store.rounds.set_serving("round_001")
    store.settings.set_review(True)          # rounds wait for review (storage/settings.py)
    store.rounds.set_candidate("round_002")  # awaiting review: serves once set_serving serves it
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection
from datetime import datetime

from storage.db import Database
from storage.errors import StoreError
from storage.models import BASE_VERSION, Round, round_version

ROUND_COLUMNS = (
    "id, status, config, metrics, adapter_path, parent_round, base_model, n_pairs, started_at, finished_at, error, "
    "(SELECT count(*) FROM round_ratings rr WHERE rr.round_id = rounds.id) AS n_ratings, "
    "(SELECT count(*) FROM round_judgements rj JOIN judgements j ON j.id = rj.judgement_id "
    " JOIN generations g ON g.id = j.left_generation_id WHERE rj.round_id = rounds.id AND g.author = 'human') "
    "AS n_edited, "
    "(SELECT count(*) FROM round_battles rb WHERE rb.round_id = rounds.id) AS n_arena"
)
# The serving version's lineage: the serving round and every round it continued from (empty while the base
# serves). A subquery of round ids, for "labels the serving policy has not trained on yet".
SERVING_LINEAGE = """(WITH RECURSIVE lineage(id) AS (
        SELECT CAST(regexp_extract(value, '^round_(\\d+)$', 1) AS BIGINT) FROM settings
        WHERE key = 'serving_version' AND regexp_matches(value, '^round_\\d+$')
        UNION ALL
        SELECT r.parent_round FROM rounds r JOIN lineage l ON r.id = l.id WHERE r.parent_round IS NOT NULL)
    SELECT id FROM lineage)"""
FAIL_STATUSES = ("failed", "cancelled")
INTERRUPTED = "interrupted: the app stopped during this round"
ROUND_VERSION = re.compile(r"round_(\d+)")


class Rounds:
    """Rounds and the serving version, in a `Database` shared with the rest of the store."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def start(self, config: dict, parent_round: int | None, base_model: str) -> int:
        """Record a new 'running' round continuing from `parent_round` (None: from the base model)."""
        config_json = json.dumps(config)

        def insert(cur) -> int:
            if parent_round is not None:
                _round_status(cur, parent_round)
            return cur.execute(
                "INSERT INTO rounds (status, config, metrics, parent_round, base_model, n_pairs, started_at) "
                "VALUES ('running', ?, '{}', ?, ?, 0, ?) RETURNING id",
                [config_json, parent_round, base_model, datetime.now()],
            ).fetchone()[0]

        return self.db.write(insert)

    def finish(
        self,
        round_id: int,
        adapter_path: str,
        metrics: dict,
        judgement_ids: Collection[int],
        rating_ids: Collection[int] = (),
        battle_ids: Collection[int] = (),
    ) -> None:
        """In one transaction: mark the round done with its results and record the labels (judgements, ratings)
        and arena battles it trained on."""
        ids = sorted({int(i) for i in judgement_ids})
        rated = sorted({int(i) for i in rating_ids})
        battled = sorted({int(i) for i in battle_ids})
        metrics_json = json.dumps(metrics)

        def finish(cur) -> None:
            status = _round_status(cur, round_id)
            if status != "running":
                raise StoreError(
                    f"Round {round_id} is {status}, not running, so it cannot be finished; start a new round."
                )
            for table, label_ids in (("judgements", ids), ("ratings", rated), ("battles", battled)):
                if not label_ids:
                    continue
                missing = cur.execute(
                    f"SELECT unnest(?::BIGINT[]) AS id EXCEPT SELECT id FROM {table} ORDER BY id", [label_ids]
                ).fetchall()
                if missing:
                    raise StoreError(
                        f"Round {round_id} names {table} that do not exist "
                        f"({', '.join(str(m) for (m,) in missing)}); train on labels the store handed out "
                        "and run the round again."
                    )
            cur.execute(
                "UPDATE rounds SET status = 'done', finished_at = ?, metrics = ?, adapter_path = ?, n_pairs = ? "
                "WHERE id = ?",
                [datetime.now(), metrics_json, str(adapter_path), len(ids), round_id],
            )
            if ids:
                cur.execute("INSERT INTO round_judgements SELECT ?, unnest(?::BIGINT[])", [round_id, ids])
            if rated:
                cur.execute("INSERT INTO round_ratings SELECT ?, unnest(?::BIGINT[])", [round_id, rated])
            if battled:
                cur.execute("INSERT INTO round_battles SELECT ?, unnest(?::BIGINT[])", [round_id, battled])

        self.db.write(finish)

    def fail(self, round_id: int, error: str, status: str = "failed") -> None:
        """Mark a round failed or cancelled with its error; a done round keeps its result and raises StoreError."""
        if status not in FAIL_STATUSES:
            raise ValueError(f"status must be 'failed' or 'cancelled', got {status!r}")

        def fail(cur) -> None:
            if _round_status(cur, round_id) == "done":
                raise StoreError(f"Round {round_id} is already done; it cannot be marked {status}.")
            cur.execute(
                "UPDATE rounds SET status = ?, error = ?, finished_at = ? WHERE id = ?",
                [status, error, datetime.now(), round_id],
            )

        self.db.write(fail)

    def mark_interrupted(self) -> int:
        """Rounds left 'running' by an app that stopped become 'failed'; returns how many. Call at start-up."""
        rows = self.db.write(
            lambda cur: cur.execute(
                "UPDATE rounds SET status = 'failed', error = ?, finished_at = ? WHERE status = 'running' RETURNING id",
                [INTERRUPTED, datetime.now()],
            ).fetchall()
        )
        return len(rows)

    def list(self) -> list[Round]:
        """All rounds, oldest first."""
        return [_round(row) for row in self.db.read(f"SELECT {ROUND_COLUMNS} FROM rounds ORDER BY id")]

    def get(self, round_id: int) -> Round:
        rows = self.db.read(f"SELECT {ROUND_COLUMNS} FROM rounds WHERE id = ?", [round_id])
        if not rows:
            raise StoreError(f"No round {round_id}; pick one from the round history.")
        return _round(rows[0])

    def judgement_ids(self, round_id: int) -> list[int]:
        """The judgements a finished round trained on, by id (empty for rounds that did not finish)."""
        rows = self.db.read(
            "SELECT judgement_id FROM round_judgements WHERE round_id = ? ORDER BY judgement_id", [round_id]
        )
        return [judgement_id for (judgement_id,) in rows]

    def rating_ids(self, round_id: int) -> list[int]:
        """The ratings a finished round trained on, by id (empty for rounds that did not finish)."""
        rows = self.db.read("SELECT rating_id FROM round_ratings WHERE round_id = ? ORDER BY rating_id", [round_id])
        return [rating_id for (rating_id,) in rows]

    def battle_ids(self, round_id: int) -> list[int]:
        """The arena battles a finished round trained on, by id (empty for rounds that did not finish)."""
        rows = self.db.read("SELECT battle_id FROM round_battles WHERE round_id = ? ORDER BY battle_id", [round_id])
        return [battle_id for (battle_id,) in rows]

    def record_served_anyway(self, round_id: int, who: str) -> None:
        """Note in a round's metrics (its gate record) that `who` served it although it failed the health gate."""

        def note(cur) -> None:
            row = cur.execute("SELECT metrics FROM rounds WHERE id = ?", [round_id]).fetchone()
            if row is None:
                raise StoreError(f"No round {round_id}; pick one from the round history.")
            metrics = json.loads(row[0] or "{}")
            gate = metrics.setdefault("gate", {})
            gate.setdefault("served_anyway", []).append({"by": who, "at": datetime.now().isoformat(timespec="seconds")})
            cur.execute("UPDATE rounds SET metrics = ? WHERE id = ?", [json.dumps(metrics), round_id])

        self.db.write(note)

    # -- serving version ------------------------------------------------------------------------------
    def set_serving(self, version: str) -> None:
        """Remember the serving version, 'base' or 'round_NNN' of a done round, so a restart serves it again.
        Serving the round awaiting review ends its review."""

        def save(cur) -> None:
            _check_servable(cur, version)
            cur.execute("INSERT OR REPLACE INTO settings VALUES ('serving_version', ?)", [version])
            cur.execute("DELETE FROM settings WHERE key = 'candidate_version' AND value = ?", [version])

        self.db.write(save)

    def get_serving(self) -> str:
        """The version to serve: what set_serving saved last, else 'base'."""
        return self.db.value("SELECT value FROM settings WHERE key = 'serving_version'") or BASE_VERSION

    # -- the round awaiting review (whether rounds wait for one: store.settings.review) ---------------
    def set_candidate(self, version: str) -> None:
        """Record a finished round as awaiting review (replacing an earlier one): it serves once someone serves
        it (`set_serving`)."""

        def save(cur) -> None:
            if version == BASE_VERSION:
                raise StoreError("The base is not a round to review; pick a finished round.")
            _check_servable(cur, version)
            cur.execute("INSERT OR REPLACE INTO settings VALUES ('candidate_version', ?)", [version])

        self.db.write(save)

    def get_candidate(self) -> str | None:
        """The finished round awaiting review, or None."""
        return self.db.value("SELECT value FROM settings WHERE key = 'candidate_version'")


def _check_servable(cur, version: str) -> None:
    """StoreError unless `version` is 'base' or the 'round_NNN' of a done round (inside the caller's transaction)."""
    if version == BASE_VERSION:
        return
    match = ROUND_VERSION.fullmatch(version)
    if match is None:
        raise StoreError(f"Unknown version {version!r}: use 'base' or 'round_NNN'.")
    round_id = int(match.group(1))
    status = _round_status(cur, round_id)
    if status != "done":
        raise StoreError(f"{version} is not a finished round; pick base or a round whose status is done.")
    if version != round_version(round_id):
        raise StoreError(f"Unknown version {version!r}: did you mean {round_version(round_id)}?")


def _round_status(cur, round_id: int) -> str:
    """The status of a round, inside the caller's transaction; StoreError if there is no such round."""
    row = cur.execute("SELECT status FROM rounds WHERE id = ?", [round_id]).fetchone()
    if row is None:
        raise StoreError(f"No round {round_id}; pick one from the round history.")
    return row[0]


def _round(row: tuple) -> Round:
    """A rounds row as a Round, with config and metrics parsed from JSON."""
    values = list(row)
    values[2], values[3] = json.loads(values[2]), json.loads(values[3] or "{}")
    return Round(*values)
