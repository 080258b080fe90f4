"""Engine metadata in SQLite: one database file per engine root, WAL mode, busy timeout.

Each engine module owns its tables and declares them with `Store.ensure_schema(ddl)`
(idempotent `CREATE TABLE IF NOT EXISTS ...`). Every change happens inside `with store.tx():`
so a crash leaves either the old or the new state, never half of it. Several processes (CLI
invocations, shims) may use the same database at once; SQLite serialises writers.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

BUSY_TIMEOUT_S = 30.0


class Store:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self._schemas: set[str] = set()

    @property
    def conn(self) -> sqlite3.Connection:
        """This thread's connection (sqlite3 connections are not shared across threads)."""
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None,
                                   check_same_thread=True)
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA foreign_keys=ON")
            self._local.conn = conn
        return conn

    def ensure_schema(self, ddl: str) -> None:
        """Runs `ddl` (CREATE ... IF NOT EXISTS statements) once per Store object."""
        if ddl in self._schemas:
            return
        with self.tx() as conn:
            _run_script(conn, ddl)
        self._schemas.add(ddl)

    @contextmanager
    def tx(self) -> Iterator[sqlite3.Connection]:
        """A write transaction (BEGIN IMMEDIATE): commits on success, rolls back on error.

        Nested use joins the outer transaction."""
        conn = self.conn
        if conn.in_transaction:
            yield conn
            return
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        else:
            conn.execute("COMMIT")

    def query(self, sql: str, params: tuple[Any, ...] | dict[str, Any] = ()) -> list[sqlite3.Row]:
        return self.conn.execute(sql, params).fetchall()

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None


def _run_script(conn: sqlite3.Connection, ddl: str) -> None:
    # executescript() would COMMIT our transaction first; run statement by statement instead.
    for statement in ddl.split(";"):
        if statement.strip():
            conn.execute(statement)


def dumps(value: Any) -> str:
    """JSON for a TEXT column: compact and stable."""
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


def loads(text: str | None, default: Any = None) -> Any:
    return default if text is None else json.loads(text)
