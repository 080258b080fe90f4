"""Engine metadata in SQLite: one database file per engine root, WAL mode, busy timeout.

Each engine module owns its tables and declares them with `Store.ensure_schema(ddl)`
(idempotent `CREATE TABLE IF NOT EXISTS ...`). Every change happens inside `with store.tx():`
so a crash leaves either the old or the new state, never half of it. Several processes (CLI
invocations, shims) may use the same database at once; SQLite serialises writers.
"""

from __future__ import annotations

import json
import re
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

BUSY_TIMEOUT_S = 30.0
_CREATED = re.compile(r"CREATE\s+(?:UNIQUE\s+)?(?:TABLE|INDEX)\s+IF\s+NOT\s+EXISTS\s+(\w+)",
                      re.IGNORECASE)

# One writer lock per database file in this process. SQLite's own busy handler sleeps in
# coarse steps (up to 100 ms) while another connection writes; threads of one process (the
# parallel starts of `up`) queue on this lock instead and go on the moment it is free. The
# busy timeout remains for writers in other processes.
_WRITERS: dict[str, threading.RLock] = {}
_WRITERS_GUARD = threading.Lock()


def _writer_lock(path: Path) -> threading.RLock:
    key = str(path.resolve())
    with _WRITERS_GUARD:
        # Re-entrant: a transaction of another Store on the same file, nested in this
        # thread, meets SQLite's busy timeout (an error) rather than waiting for itself.
        return _WRITERS.setdefault(key, threading.RLock())


class Store:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self._schemas: set[str] = set()
        self._writer = _writer_lock(self.path)

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
        """Runs `ddl` (CREATE TABLE/INDEX ... IF NOT EXISTS statements only: migrations do not
        belong here) once per Store object, and only when something it names is missing (a
        read: no write lock on every command)."""
        if ddl in self._schemas:
            return
        names = set(_CREATED.findall(ddl))
        present = {row[0] for row in self.conn.execute("SELECT name FROM sqlite_master")}
        if not names or not names <= present:
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
        with self._writer:
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
