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


def _locks_after_fork() -> None:
    """In a forked child: see `_WriterLock.after_fork` (a guard another thread held is
    a fresh one too), and each store's pool (its guard, the connections lent)."""
    global _WRITERS_GUARD
    _WRITERS_GUARD = threading.Lock()
    for lock in _WRITERS.values():
        lock.after_fork()
    for store in list(_STORES):
        store.after_fork()


_STORES: weakref.WeakSet[Store] = weakref.WeakSet()
os.register_at_fork(after_in_child=_locks_after_fork)


def close_inherited() -> None:
    """In a process forked from one that used stores, before it opens connections of its
    own: closes the connections this thread inherited (the forking thread's; the other
    threads' went with them). SQLite keeps its file locks' state per process: while an
    inherited connection is open, a new one to the same file counts on the locks that
    connection holds, which the kernel holds for the parent only, and takes none itself;
    the parent's exit could then checkpoint the WAL away under it. Never while a
    transaction of this thread is open; and fork only while no other thread has a
    connection lent (a query or a transaction under way): that one cannot be closed in the
    child, and stands for locks it does not hold (tests/unit/test_store_pool.py)."""
    for store in list(_STORES):
        store.close()


# Connections per Store in one process. A query holds one only while SQLite runs it, and
# a write transaction (one at a time: the writer lock) for its length, so a few serve any
# number of threads; `up` of 20 otherwise opened 20.
POOL_SIZE = 4


class Store:
    """The engine's database. Connections are pooled: a query or a transaction borrows one
    for its duration (the thread keeps it while a transaction is open, so what runs inside
    sees its writes) and gives it back, so a command's many worker threads share a few
    connections and their prepared statements instead of opening one each (~0.5 ms of CPU
    apiece: the file, the pragmas, the schema parsed again)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()  # .conn: the connection of this thread's open tx
        self._idle: list[sqlite3.Connection] = []
        self._lent: set[sqlite3.Connection] = set()
        self._opened = 0  # connections of this process, idle or lent
        self._pool = threading.Condition(threading.Lock())
        self._inherited = False  # forked since: the idle connections are the parent's
        self._schemas: set[str] = set()
        self._writer = _writer_lock(self.path)
        _STORES.add(self)

    def _open(self) -> sqlite3.Connection:
        # check_same_thread off: a pooled connection serves one thread at a time, in turn.
        conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None,
                               check_same_thread=False)
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA foreign_keys=ON")
        return conn

    def after_fork(self) -> None:
        """In a forked child: the pool's guard may have been held by a thread that is gone,
        and what was lent is not coming back. The parent's idle connections are closed
        before the first borrow (see close_inherited), not here."""
        self._pool = threading.Condition(threading.Lock())
        self._lent = set()
        self._inherited = True

    def _borrow(self) -> sqlite3.Connection:
        with self._pool:
            if self._inherited:
                # Forked: the parent's connections are not ours to use (see close_inherited).
                self._drop_idle()
                self._opened = 0
                self._inherited = False
            while not self._idle and self._opened >= POOL_SIZE:
                self._pool.wait()
            if self._idle:
                conn = self._idle.pop()
                self._lent.add(conn)
                return conn
            self._opened += 1
        try:
            conn = self._open()
        except BaseException:
            with self._pool:
                self._opened -= 1
                self._pool.notify()
            raise
        with self._pool:
            self._lent.add(conn)
        return conn

    def _give_back(self, conn: sqlite3.Connection) -> None:
        with self._pool:
            if conn not in self._lent:  # lent before a fork, given back in the child
                conn.close()
                return
            self._lent.discard(conn)
            if conn.in_transaction:  # a COMMIT or ROLLBACK that failed: not fit to share
                conn.close()
                self._opened -= 1
            else:
                self._idle.append(conn)
            self._pool.notify()

    def _drop_idle(self) -> None:
        self._opened -= len(self._idle)
        for conn in self._idle:
            conn.close()
        self._idle.clear()

    def ensure_schema(self, ddl: str) -> None:
        """Runs `ddl` (CREATE TABLE/INDEX ... IF NOT EXISTS statements only: migrations do not
        belong here) once per Store object, and only when something it names is missing (a
        read: no write lock on every command)."""
        if ddl in self._schemas:
            return
        names = set(_CREATED.findall(ddl))
        present = {row[0] for row in self.query("SELECT name FROM sqlite_master")}
        if not names or not names <= present:
            with self.tx() as conn:
                _run_script(conn, ddl)
        self._schemas.add(ddl)

    @contextmanager
    def tx(self) -> Iterator[sqlite3.Connection]:
        """A write transaction (BEGIN IMMEDIATE): commits on success, rolls back on error.

        Nested use joins the outer transaction."""
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            yield conn
            return
        with self._writer.held():  # first: a writer waiting here holds no connection
            conn = self._borrow()
            self._local.conn = conn
            try:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    yield conn
                except BaseException:
                    # SQLite may have rolled back already (SQLITE_FULL, IOERR, ...): a
                    # ROLLBACK then fails, and its "no transaction" would hide the cause.
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                    raise
                else:
                    conn.execute("COMMIT")
            finally:
                self._local.conn = None
                self._give_back(conn)

    def query(self, sql: str, params: tuple[Any, ...] | dict[str, Any] = ()) -> list[sqlite3.Row]:
        conn = getattr(self._local, "conn", None)
        if conn is not None:  # inside this thread's transaction: read what it wrote
            return conn.execute(sql, params).fetchall()
        conn = self._borrow()
        try:
            return conn.execute(sql, params).fetchall()
        finally:
            self._give_back(conn)

    def close(self) -> None:
        """Closes the idle connections (those in use close when given back after a fork)."""
        with self._pool:
            self._drop_idle()


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
