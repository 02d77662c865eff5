"""One DuckDB connection shared by the store's parts: a cursor per call, writes in retried transactions.

    db = Database("data/prefloop.duckdb")   # or Database(":memory:")
    db.write(lambda cur: cur.execute("INSERT ...").fetchone())
    db.read("SELECT ...", [params])

Gradio runs handlers on many threads. DuckDB wants a cursor per thread, so every call takes its own cursor
of the one connection. Every write runs in an explicit transaction that commits before the call returns
(a vote acknowledged in the UI is on disk), and is retried when a concurrent write conflicts with it.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

import duckdb

from storage.errors import StoreError
from storage.migrations import rollback_quietly

T = TypeVar("T")
Cursor = duckdb.DuckDBPyConnection
WRITE_ATTEMPTS = 8  # a write that conflicts with a concurrent one is retried this many times in all


class Database:
    """The connection to one database file (or ":memory:"); see the module docstring."""

    def __init__(self, path: str | os.PathLike = ":memory:") -> None:
        self.path = str(path)
        self._con = _connect(self.path)

    def close(self) -> None:
        self._con.close()

    # -- plumbing -------------------------------------------------------------------------------------
    @contextmanager
    def cursor(self) -> Iterator[Cursor]:
        """A cursor of its own for this call (DuckDB cursors must not be shared between threads)."""
        try:
            cur = self._con.cursor()
        except duckdb.ConnectionException as err:
            raise StoreError(f"The store {self.path} is closed; open it again with Store(path).") from err
        try:
            yield cur
        finally:
            cur.close()

    def write(self, work: Callable[[Cursor], T]) -> T:
        """Run `work(cursor)` in one transaction and commit; roll back on error, retry on write conflicts."""
        for attempt in range(1, WRITE_ATTEMPTS + 1):
            with self.cursor() as cur:
                cur.begin()
                try:
                    result = work(cur)
                    cur.commit()
                    return result
                except duckdb.Error as err:
                    rollback_quietly(cur)
                    if _is_io_failure(err):
                        raise StoreError(
                            f"Could not save to {self.path}: the disk is full or the file cannot grow "
                            f"({str(err).splitlines()[0]}). Nothing was saved: free some disk space, then try again."
                        ) from err
                    if attempt == WRITE_ATTEMPTS or not _is_write_conflict(err):
                        raise
                except BaseException:
                    rollback_quietly(cur)
                    raise
            time.sleep(0.002 * 2**attempt)
        raise AssertionError("unreachable")

    def read(self, sql: str, params: Sequence | None = None) -> list[tuple]:
        """All rows of one query."""
        with self.cursor() as cur:
            return cur.execute(sql, params).fetchall()

    def value(self, sql: str, params: Sequence | None = None):
        """The first column of the first row of one query, or None if there is no row."""
        rows = self.read(sql, params)
        return rows[0][0] if rows else None


def _connect(path: str) -> duckdb.DuckDBPyConnection:
    """Open the database file (creating its folder), turning DuckDB's errors into what to do about them."""
    try:
        if path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            if os.path.getsize(path) if os.path.exists(path) else 0:
                _read_everything(path)
        return duckdb.connect(path)
    except StoreError:
        raise
    except duckdb.IOException as err:
        message = str(err).lower()
        if "lock" in message:
            raise StoreError(
                f"{path} is in use by another running prefloop app (or another DuckDB client). "
                "Stop that app, or start this one with --db pointing at another file."
            ) from err
        if "not a valid duckdb database" in message:
            raise StoreError(
                f"{path} is not a DuckDB database. Start the app with --db pointing at a new file name "
                "(it will be created), or move that file away."
            ) from err
        raise StoreError(f"Cannot open {path}: {err}. Check the path, or pass --db with a new file name.") from err
    except (duckdb.Error, OSError) as err:
        raise StoreError(f"Cannot open {path}: {err}. Check the path, or pass --db with a new file name.") from err


def _read_everything(path: str) -> None:
    """Read every table of an existing file once, read-only, so that a damaged file (truncated, overwritten) is
    refused before anything writes to it rather than failing at the first query that reaches the damage."""
    try:
        con = duckdb.connect(path, read_only=True)
    except duckdb.ConnectionException:  # this process has it open already: it was read then
        return
    except duckdb.IOException as err:
        if "lock" in str(err).lower() or "not a valid duckdb database" in str(err).lower():
            raise  # said by _connect
        raise _damaged(path, err) from err
    try:
        tables = con.execute(
            "SELECT schema_name, table_name FROM duckdb_tables() WHERE database_name = current_database()"
        ).fetchall()
        for schema, table in tables:  # hashing each whole row reads every column's data
            con.execute(f'SELECT max(hash(t)) FROM "{schema}"."{table}" AS t').fetchall()
    except duckdb.Error as err:
        raise _damaged(path, err) from err
    finally:
        con.close()


def _damaged(path: str, err: Exception) -> StoreError:
    return StoreError(
        f"{path} is damaged and cannot be read ({str(err).splitlines()[0]}); nothing was written to it. "
        "Restore it from a backup, or start the app with --db pointing at a new file name."
    )


IO_FAILURES = ("could not write", "no space left", "file too large", "disk full", "read-only file system")


def _is_io_failure(err: duckdb.Error) -> bool:
    """The file could not be written (a full disk, a size limit), as opposed to a conflict or a bad statement."""
    return isinstance(err, duckdb.IOException) or any(text in str(err).lower() for text in IO_FAILURES)


def _is_write_conflict(err: duckdb.Error) -> bool:
    """A concurrent transaction touched the same row (retrying is safe: ours was rolled back)."""
    return isinstance(err, duckdb.TransactionException) or (
        isinstance(err, duckdb.ConstraintException) and "duplicate key" in str(err).lower()
    )
