"""Engine metadata in SQLite: one database file per engine root, WAL mode, busy timeout.

Each engine module owns its tables and declares them with `Store.ensure_schema(ddl)`
(idempotent `CREATE TABLE IF NOT EXISTS ...`). Every change happens inside `with store.tx():`
so a crash leaves either the old or the new state, never half of it. Several processes (CLI
invocations, shims) may use the same database at once; SQLite serialises writers.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import threading
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

try:
    # The C module. `sqlite3` adds the DB-API's date and time adapters to it, and their
    # `datetime` (the pure-Python module, then replaced by the C one) cost every command
    # ~3-5 ms of its start; the engine stores text and numbers only.
    import _sqlite3 as sqlite3
except ImportError:  # not CPython's layout
    import sqlite3  # type: ignore[no-redef]

OperationalError = sqlite3.OperationalError  # (a table that does not exist yet, say)

BUSY_TIMEOUT_S = 30.0
_CREATED = re.compile(r"CREATE\s+(?:UNIQUE\s+)?(?:TABLE|INDEX)\s+IF\s+NOT\s+EXISTS\s+(\w+)",
                      re.IGNORECASE)

# Writers queue on a lock per database file, in two layers: threads of this process on an
# RLock, processes on an flock of `<database>.writer` held around each transaction. SQLite's
# own busy handler sleeps in coarse steps (1, 2, 5, 10, ... 25, 50, 100 ms) while another
# connection writes: 20 containers removed by two processes at once (`down` with a forked
# helper) slept ~250 ms in it. A queued writer here goes on the moment the lock is free.
# The busy timeout remains for writers that hold SQLite's lock without these.
class _WriterLock:
    """Re-entrant in a thread; across processes through one open file description per
    database file in this process (an flock on a second description of the same file would
    wait for our own)."""

    def __init__(self, path: Path) -> None:
        self.path = path.with_name(path.name + ".writer")
        self.thread_lock = threading.RLock()
        self.depth = 0
        self.owner: int | None = None  # the thread inside `held`
        self.fd: int | None = None

    @contextmanager
    def held(self) -> Iterator[None]:
        with self.thread_lock:
            if self.depth == 0:
                self._lock_file()
                self.owner = threading.get_ident()
            self.depth += 1
            try:
                yield
            finally:
                self.depth -= 1
                if self.depth == 0:
                    self.owner = None
                    if self.fd is not None:
                        fcntl.flock(self.fd, fcntl.LOCK_UN)

    def _lock_file(self) -> None:
        if self.fd is None:
            try:
                self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            except OSError:
                return  # (a read-only root): SQLite's busy timeout alone, as before
        fcntl.flock(self.fd, fcntl.LOCK_EX)

    def after_fork(self) -> None:
        """In a forked child. The parent's description is not ours to keep: an flock is
        the description's, so one the parent holds when it dies would stay held as long
        as a child keeps it open, and this child's own next write, through a description
        of its own, would wait for it for ever. Closing our copy leaves the parent's lock
        alone; the next write here opens a description of this process's own. A thread
        lock another thread held is a fresh one here (that thread is gone), unless the
        forking thread itself is inside `held`: it leaves as usual (nothing to unlock)."""
        if self.fd is not None:
            try:
                os.close(self.fd)
            except OSError:
                pass
            self.fd = None
        if self.owner != threading.get_ident():
            self.thread_lock = threading.RLock()
            self.depth = 0
            self.owner = None


_WRITERS: dict[str, _WriterLock] = {}
_WRITERS_GUARD = threading.Lock()


def _writer_lock(path: Path) -> _WriterLock:
    key = str(path.resolve())
    with _WRITERS_GUARD:
        found = _WRITERS.get(key)
        if found is None:
            found = _WRITERS[key] = _WriterLock(Path(key))
        return found


def _writer_locks_after_fork() -> None:
    """In a forked child: see `_WriterLock.after_fork` (a guard another thread held is
    a fresh one too)."""
    global _WRITERS_GUARD
    _WRITERS_GUARD = threading.Lock()
    for lock in _WRITERS.values():
        lock.after_fork()


os.register_at_fork(after_in_child=_writer_locks_after_fork)

_STORES: weakref.WeakSet[Store] = weakref.WeakSet()


def close_inherited() -> None:
    """In a process forked from one that used stores, before it opens connections of its
    own: closes the connections this thread inherited (the forking thread's; the other
    threads' went with them). SQLite keeps its file locks' state per process: while an
    inherited connection is open, a new one to the same file counts on the locks that
    connection holds, which the kernel holds for the parent only, and takes none itself;
    the parent's exit could then checkpoint the WAL away under it. Never while a
    transaction of this thread is open."""
    for store in list(_STORES):
        store.close()


class Store:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self._schemas: set[str] = set()
        self._writer = _writer_lock(self.path)
        _STORES.add(self)

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
        with self._writer.held():
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
