"""The one DuckDB file: prompts, generations, judgements, rounds and their lineage. All SQL lives here.

    store = Store("data/prefloop.duckdb")      # or Store() / Store(":memory:") in tests
    store.add_judgement(prompt_id, left_id, right_id, "left", labeler="ana", policy_version="base")
    store.preference_pairs(unused_only=True)   # what the next round trains on

Gradio runs handlers on many threads; DuckDB wants a cursor per thread, so every call opens its own.
Each write commits before returning: a vote acknowledged in the UI is on disk.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Collection, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

import duckdb

from storage.migrations import MIGRATIONS
from storage.models import (
    BOTH_BAD_CHOICES,
    CHOICES,
    PAIR_CHOICES,
    Generation,
    Judgement,
    PreferencePair,
    Prompt,
    Round,
    UnpairedExample,
)

# Judgements that no finished round trained on.
UNUSED_JUDGEMENT = """ AND j.id NOT IN (SELECT rj.judgement_id FROM round_judgements rj
                                        JOIN rounds r ON r.id = rj.round_id WHERE r.status = 'done')"""
ROUND_COLUMNS = (
    "id, status, config, metrics, adapter_path, parent_round, base_model, n_pairs, started_at, finished_at, error"
)


class StoreError(Exception):
    """A storage operation failed; the message says what to do."""


class Store:
    def __init__(self, path: str | os.PathLike = ":memory:") -> None:
        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        try:
            self._con = duckdb.connect(self.path)
        except duckdb.IOException as err:
            if "lock" in str(err).lower():
                raise StoreError(
                    f"{self.path} is in use by another running prefloop app (or another DuckDB client). "
                    "Stop that app, or start this one with --db pointing at another file."
                ) from err
            raise StoreError(f"{self.path} is not a DuckDB database ({err}). Pass --db with a new file name.") from err
        except duckdb.Error as err:
            raise StoreError(f"Cannot open {self.path}: {err}. Pass --db with a new file name.") from err
        self._migrate()

    def close(self) -> None:
        self._con.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- plumbing -------------------------------------------------------------------------------------
    @contextmanager
    def _cursor(self) -> Iterator[duckdb.DuckDBPyConnection]:
        cur = self._con.cursor()
        try:
            yield cur
        finally:
            cur.close()

    @contextmanager
    def _transaction(self) -> Iterator[duckdb.DuckDBPyConnection]:
        with self._cursor() as cur:
            cur.begin()
            try:
                yield cur
            except BaseException:
                cur.rollback()
                raise
            cur.commit()

    def _migrate(self) -> None:
        """Apply the named migrations not yet recorded, each in its own transaction."""
        with self._cursor() as cur:
            cur.execute("CREATE TABLE IF NOT EXISTS migrations (name VARCHAR PRIMARY KEY, applied_at TIMESTAMP)")
            done = {row[0] for row in cur.execute("SELECT name FROM migrations").fetchall()}
        for name, sql in MIGRATIONS:
            if name in done:
                continue
            with self._transaction() as cur:
                for statement in filter(str.strip, sql.split(";")):
                    cur.execute(statement)
                cur.execute("INSERT INTO migrations VALUES (?, ?)", [name, datetime.now()])

    def applied_migrations(self) -> list[str]:
        with self._cursor() as cur:
            return [r[0] for r in cur.execute("SELECT name FROM migrations ORDER BY name").fetchall()]

    # -- prompts --------------------------------------------------------------------------------------
    def add_prompt(self, text: str, source: str = "typed") -> int:
        text = (text or "").strip()
        if not text:
            raise ValueError("Prompt is empty: type some text first.")
        with self._transaction() as cur:
            return self._insert_prompt(cur, text, source)

    def add_prompts(self, texts: Sequence[str], source: str) -> int:
        """Insert all prompts or none; returns how many were new."""
        cleaned = [(t or "").strip() for t in texts]
        for i, text in enumerate(cleaned, start=1):
            if not text:
                raise ValueError(f"Prompt {i} is empty; nothing was imported. Remove or fill it and try again.")
        with self._transaction() as cur:
            before = cur.execute("SELECT count(*) FROM prompts").fetchone()[0]
            for text in cleaned:
                self._insert_prompt(cur, text, source)
            return cur.execute("SELECT count(*) FROM prompts").fetchone()[0] - before

    @staticmethod
    def _insert_prompt(cur, text: str, source: str) -> int:
        row = cur.execute("SELECT id FROM prompts WHERE text = ?", [text]).fetchone()
        if row:
            return row[0]
        return cur.execute(
            "INSERT INTO prompts (text, source, created_at) VALUES (?, ?, ?) RETURNING id",
            [text, source, datetime.now()],
        ).fetchone()[0]

    def count_prompts(self) -> int:
        with self._cursor() as cur:
            return cur.execute("SELECT count(*) FROM prompts").fetchone()[0]

    def list_prompts(self, limit: int | None = None) -> list[Prompt]:
        with self._cursor() as cur:
            rows = cur.execute("SELECT id, text, source FROM prompts ORDER BY id LIMIT ?", [limit]).fetchall()
        return [Prompt(*r) for r in rows]

    def get_prompt(self, prompt_id: int) -> Prompt:
        with self._cursor() as cur:
            row = cur.execute("SELECT id, text, source FROM prompts WHERE id = ?", [prompt_id]).fetchone()
        if row is None:
            raise StoreError(f"No prompt with id {prompt_id}.")
        return Prompt(*row)

    def next_prompts(self, n: int, exclude_ids: Collection[int] = ()) -> list[Prompt]:
        """Prompts sampled least so far first (random among equals), skipping `exclude_ids`."""
        with self._cursor() as cur:
            rows = cur.execute(
                """SELECT p.id, p.text, p.source FROM prompts p
                   LEFT JOIN (SELECT prompt_id, count(*) AS n FROM generations GROUP BY prompt_id) g
                          ON g.prompt_id = p.id
                   WHERE NOT list_contains(?::BIGINT[], p.id)
                   ORDER BY coalesce(g.n, 0), random() LIMIT ?""",
                [list(exclude_ids), n],
            ).fetchall()
        return [Prompt(*r) for r in rows]

    # -- generations ----------------------------------------------------------------------------------
    def add_generation(self, prompt_id: int, version: str, text: str, settings: dict) -> int:
        with self._transaction() as cur:
            return cur.execute(
                "INSERT INTO generations (prompt_id, version, text, settings, created_at) VALUES (?, ?, ?, ?, ?) "
                "RETURNING id",
                [prompt_id, version, text, json.dumps(settings), datetime.now()],
            ).fetchone()[0]

    def get_generation(self, generation_id: int) -> Generation:
        with self._cursor() as cur:
            row = cur.execute(
                "SELECT id, prompt_id, version, text, settings FROM generations WHERE id = ?", [generation_id]
            ).fetchone()
        if row is None:
            raise StoreError(f"No generation with id {generation_id}.")
        return Generation(*row[:4], settings=json.loads(row[4]))

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
        """Record a vote on a pair as shown (left / right generation ids); committed before returning."""
        if choice not in CHOICES:
            raise ValueError(f"choice must be one of {', '.join(CHOICES)}; got {choice!r}")
        with self._transaction() as cur:
            owners = cur.execute(
                "SELECT count(*) FROM generations WHERE id IN (?, ?) AND prompt_id = ?",
                [left_generation_id, right_generation_id, prompt_id],
            ).fetchone()[0]
            if owners != 2 or left_generation_id == right_generation_id:
                raise StoreError(
                    f"Generations {left_generation_id} and {right_generation_id} are not two completions of prompt "
                    f"{prompt_id}; fetch a new pair and vote again."
                )
            return cur.execute(
                "INSERT INTO judgements (prompt_id, left_generation_id, right_generation_id, choice, labeler, "
                "policy_version, created_at) VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING id",
                [prompt_id, left_generation_id, right_generation_id, choice, labeler, policy_version, datetime.now()],
            ).fetchone()[0]

    def count_judgements(self, choice: str | None = None) -> int:
        with self._cursor() as cur:
            if choice is None:
                return cur.execute("SELECT count(*) FROM judgements").fetchone()[0]
            return cur.execute("SELECT count(*) FROM judgements WHERE choice = ?", [choice]).fetchone()[0]

    def list_judgements(self) -> list[Judgement]:
        with self._cursor() as cur:
            rows = cur.execute(
                "SELECT id, prompt_id, left_generation_id, right_generation_id, choice, labeler, policy_version, "
                "created_at FROM judgements ORDER BY id"
            ).fetchall()
        return [Judgement(*r) for r in rows]

    # -- preference pairs -----------------------------------------------------------------------------
    def preference_pairs(
        self, unused_only: bool = False, judgement_ids: Collection[int] | None = None
    ) -> list[PreferencePair]:
        """Left/right judgements as (prompt, chosen, rejected); ties, both-bad and skips never become pairs."""
        sql = """SELECT j.id, p.text,
                        CASE WHEN j.choice = 'left' THEN gl.text ELSE gr.text END AS chosen,
                        CASE WHEN j.choice = 'left' THEN gr.text ELSE gl.text END AS rejected
                 FROM judgements j
                 JOIN prompts p ON p.id = j.prompt_id
                 JOIN generations gl ON gl.id = j.left_generation_id
                 JOIN generations gr ON gr.id = j.right_generation_id
                 WHERE list_contains(?::VARCHAR[], j.choice)"""
        params: list = [list(PAIR_CHOICES)]
        if unused_only:
            sql += UNUSED_JUDGEMENT
        if judgement_ids is not None:
            sql += " AND list_contains(?::BIGINT[], j.id)"
            params.append(list(judgement_ids))
        with self._cursor() as cur:
            rows = cur.execute(sql + " ORDER BY j.id", params).fetchall()
        return [PreferencePair(*r) for r in rows]

    def unpaired_examples(self, unused_only: bool = False) -> list[UnpairedExample]:
        """ "Both bad" votes as two 👎 examples each (left then right), for unpaired losses such as KTO."""
        sql = """SELECT j.id, p.text, g.text FROM judgements j
                 JOIN prompts p ON p.id = j.prompt_id
                 JOIN generations g ON g.id IN (j.left_generation_id, j.right_generation_id)
                 WHERE list_contains(?::VARCHAR[], j.choice)"""
        sql += (UNUSED_JUDGEMENT if unused_only else "") + " ORDER BY j.id, g.id = j.right_generation_id"
        with self._cursor() as cur:
            rows = cur.execute(sql, [list(BOTH_BAD_CHOICES)]).fetchall()
        return [UnpairedExample(judgement_id, prompt, completion, False) for judgement_id, prompt, completion in rows]

    def export_pairs(self, path: str | os.PathLike, fmt: str = "jsonl") -> int:
        """Write the pairs in TRL's conversational format (jsonl, parquet or a datasets folder); atomic."""
        from datasets import Dataset

        if fmt not in ("jsonl", "parquet", "hf"):
            raise StoreError(f"Unknown export format {fmt!r}: use jsonl, parquet or hf.")
        pairs = self.preference_pairs()
        if not pairs:
            raise StoreError("No preference pairs to export yet: label some pairs (pick left or right) first.")
        rows = [
            {
                "prompt": [{"role": "user", "content": p.prompt}],
                "chosen": [{"role": "assistant", "content": p.chosen}],
                "rejected": [{"role": "assistant", "content": p.rejected}],
                "judgement_id": p.judgement_id,
            }
            for p in pairs
        ]
        dataset = Dataset.from_list(rows)
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.tmp")
        try:
            if fmt == "jsonl":
                dataset.to_json(str(tmp), lines=True, force_ascii=False)
            elif fmt == "parquet":
                dataset.to_parquet(str(tmp))
            else:
                dataset.save_to_disk(str(tmp))
                if target.exists():
                    shutil.rmtree(target)
            os.replace(tmp, target)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True) if tmp.is_dir() else tmp.unlink(missing_ok=True)
            raise
        return len(rows)

    # -- rounds ---------------------------------------------------------------------------------------
    def start_round(self, config: dict, parent_round: int | None, base_model: str) -> int:
        with self._transaction() as cur:
            return cur.execute(
                "INSERT INTO rounds (status, config, metrics, parent_round, base_model, n_pairs, started_at) "
                "VALUES ('running', ?, '{}', ?, ?, 0, ?) RETURNING id",
                [json.dumps(config), parent_round, base_model, datetime.now()],
            ).fetchone()[0]

    def finish_round(self, round_id: int, adapter_path: str, metrics: dict, judgement_ids: Collection[int]) -> None:
        """Mark the round done and record the judgements it trained on, in one transaction."""
        with self._transaction() as cur:
            cur.execute(
                "UPDATE rounds SET status = 'done', finished_at = ?, metrics = ?, adapter_path = ?, n_pairs = ? "
                "WHERE id = ?",
                [datetime.now(), json.dumps(metrics), adapter_path, len(judgement_ids), round_id],
            )
            if judgement_ids:
                cur.execute(
                    "INSERT INTO round_judgements SELECT ?, unnest(?::BIGINT[])", [round_id, list(judgement_ids)]
                )

    def fail_round(self, round_id: int, error: str, status: str = "failed") -> None:
        if status not in ("failed", "cancelled"):
            raise ValueError(f"status must be 'failed' or 'cancelled', got {status!r}")
        with self._transaction() as cur:
            cur.execute(
                "UPDATE rounds SET status = ?, error = ?, finished_at = ? WHERE id = ?",
                [status, error, datetime.now(), round_id],
            )

    def mark_interrupted_rounds(self) -> int:
        """Rounds left 'running' by a stopped app become 'failed'; returns how many."""
        with self._transaction() as cur:
            return (
                cur.execute(
                    "UPDATE rounds SET status = 'failed', error = 'interrupted: the app stopped during this round', "
                    "finished_at = ? WHERE status = 'running' RETURNING id",
                    [datetime.now()],
                )
                .fetchall()
                .__len__()
            )

    def list_rounds(self) -> list[Round]:
        with self._cursor() as cur:
            rows = cur.execute(f"SELECT {ROUND_COLUMNS} FROM rounds ORDER BY id").fetchall()
        return [_round(r) for r in rows]

    def get_round(self, round_id: int) -> Round:
        with self._cursor() as cur:
            row = cur.execute(f"SELECT {ROUND_COLUMNS} FROM rounds WHERE id = ?", [round_id]).fetchone()
        if row is None:
            raise StoreError(f"No round {round_id}; pick one from the round history.")
        return _round(row)

    def round_judgement_ids(self, round_id: int) -> list[int]:
        with self._cursor() as cur:
            rows = cur.execute(
                "SELECT judgement_id FROM round_judgements WHERE round_id = ? ORDER BY judgement_id", [round_id]
            ).fetchall()
        return [r[0] for r in rows]

    # -- serving version ------------------------------------------------------------------------------
    def set_serving(self, version: str) -> None:
        """Remember the serving version: 'base' or 'round_NNN' of a finished round."""
        if version != "base":
            try:
                round_id = int(version.removeprefix("round_"))
            except ValueError:
                raise StoreError(f"Unknown version {version!r}: use 'base' or 'round_NNN'.") from None
            if not version.startswith("round_") or self.get_round(round_id).status != "done":
                raise StoreError(f"{version} is not a finished round; pick base or a round whose status is done.")
        with self._transaction() as cur:
            cur.execute("INSERT OR REPLACE INTO settings VALUES ('serving_version', ?)", [version])

    def get_serving(self) -> str:
        with self._cursor() as cur:
            row = cur.execute("SELECT value FROM settings WHERE key = 'serving_version'").fetchone()
        return row[0] if row else "base"


def _round(row: tuple) -> Round:
    values = list(row)
    values[2], values[3] = json.loads(values[2]), json.loads(values[3] or "{}")
    return Round(*values)
