"""compose/helpers.py without containers: a failure's trip back (class, message, exit code),
and real forked helpers serving a fake walk: answers matched to requests, removals
overlapping, a helper that dies failing what it had, and the choice of who runs what."""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Iterator
from types import SimpleNamespace

import pytest

from compose import helpers
from engine.errors import Conflict, Error
from engine.ports import PortInUse
from engine.runtime.launch import StartError


def round_trip(error: BaseException) -> BaseException:
    with pytest.raises(BaseException) as raised:
        helpers.raise_failure({"id": 1, **helpers.failure(error)}, pid=42)
    return raised.value


@pytest.mark.parametrize("error", [Conflict("container x is running"),
                                   PortInUse("port 8080 is held"),
                                   StartError("exec: no such file")])
def test_an_engine_error_comes_back_as_its_class_message_and_exit_code(error: Error) -> None:
    back = round_trip(error)
    assert type(back) is type(error)
    assert str(back) == str(error)
    assert back.exit_code == error.exit_code  # type: ignore[attr-defined]


def test_an_unknown_error_class_comes_back_as_a_plain_error() -> None:
    with pytest.raises(Error) as raised:
        helpers.raise_failure({"error": ["nowhere.to.be:Found", "gone"]}, pid=1)
    assert type(raised.value) is Error and str(raised.value) == "gone"


def test_an_oserror_comes_back_with_its_errno_and_file() -> None:
    back = round_trip(FileNotFoundError(2, "No such file or directory", b"/x/y"))
    assert isinstance(back, FileNotFoundError)
    assert (back.errno, back.filename) == (2, "/x/y")


def test_a_bug_comes_back_with_the_helpers_traceback() -> None:
    try:
        {}["missing"]
    except KeyError as error:
        back = round_trip(error)
    assert isinstance(back, RuntimeError)
    assert "pid 42" in str(back) and "KeyError: 'missing'" in str(back)


def test_a_success_raises_nothing() -> None:
    helpers.raise_failure({"id": 3}, pid=1)


class FakeWalk:
    """Removals that sleep, fail, or end the helper, by their node id."""

    def __init__(self, marker: str) -> None:
        self.marker = marker  # a file the helper writes when its scope ends
        self.stopped = []  # news the walker got (here, in the parent)

    @contextlib.contextmanager
    def as_helper(self, notify) -> Iterator[None]:
        self.notify = notify
        yield
        with open(self.marker, "w") as f:
            f.write(str(os.getpid()))

    stopped: list[tuple[str, str | None]]

    def container_stopped(self, node_id: str, container_id: str | None) -> None:
        self.stopped.append((node_id, container_id))

    def run_removal(self, node_id: str) -> None:
        kind, _, arg = node_id.partition(":")
        if kind == "sleep":
            self.notify({"stopped": node_id, "container": "c-" + arg})
            time.sleep(float(arg))
        elif kind == "conflict":
            raise Conflict(arg)
        elif kind == "die":
            os._exit(9)
        elif kind == "locks":  # the file locks a connection opened here holds on `arg`
            from engine.store import Store

            Store(arg).query("SELECT count(*) FROM t")
            self.notify({"stopped": node_id, "container": str(locks_on(arg, os.getpid()))})


def locks_on(path: str, pid: int) -> int:
    """How many POSIX locks `pid` holds on the file at `path` (/proc/locks)."""
    inode = os.stat(path).st_ino
    count = 0
    with open("/proc/locks") as f:
        for line in f:
            fields = line.split()
            if fields[1] == "->":  # a waiter
                continue
            if fields[4] == str(pid) and fields[5].rsplit(":", 1)[1] == str(inode):
                count += 1
    return count


def node(node_id: str) -> SimpleNamespace:
    return SimpleNamespace(id=node_id)


@pytest.fixture
def link(tmp_path) -> Iterator[helpers.Link]:
    made = helpers.Link.fork(FakeWalk(str(tmp_path / "ended")))
    yield made
    made.close()


def test_requests_run_side_by_side_and_answers_find_their_callers(link: helpers.Link,
                                                                  tmp_path) -> None:
    results: dict[str, object] = {}

    def call(node_id: str) -> None:
        try:
            link.run(node(node_id))  # type: ignore[arg-type]
            results[node_id] = "ok"
        except Error as error:
            results[node_id] = error

    started = time.monotonic()
    threads = [threading.Thread(target=call, args=(n,))
               for n in ("sleep:0.4", "sleep:0.4", "conflict:x is busy", "sleep:0.4")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert time.monotonic() - started < 1.0  # three 0.4 s removals overlapped
    assert [results[n] for n in ("sleep:0.4",)] == ["ok"]
    failed = results["conflict:x is busy"]
    assert isinstance(failed, Conflict) and str(failed) == "x is busy"
    assert link.done == 4
    assert sorted(link.walk.stopped) == [("sleep:0.4", "c-0.4")] * 3  # type: ignore[attr-defined]
    link.close()
    # the helper's scope ended (its deferred work done) before it exited, and it did exit
    assert (tmp_path / "ended").read_text() == str(link.pid)
    with pytest.raises(ChildProcessError):
        os.waitpid(link.pid, os.WNOHANG)


def test_a_helper_that_dies_fails_what_it_had(link: helpers.Link) -> None:
    errors: list[BaseException] = []

    def call(node_id: str) -> None:
        try:
            link.run(node(node_id))  # type: ignore[arg-type]
        except Error as error:
            errors.append(error)

    slow = threading.Thread(target=call, args=("sleep:5",))
    slow.start()
    time.sleep(0.2)
    call("die:")
    slow.join(timeout=3)
    assert not slow.is_alive()  # not left waiting for an answer that cannot come
    assert len(errors) == 2
    assert all("ended before it finished a removal" in str(e) for e in errors)
    with pytest.raises(Error):
        link.run(node("sleep:0"))  # type: ignore[arg-type]


def test_turns_go_round_the_walker_and_its_helpers() -> None:
    links = [SimpleNamespace(name="h1", ended=False), SimpleNamespace(name="h2", ended=False)]
    group = helpers.Helpers(links)  # type: ignore[arg-type]
    chosen = [group.take(node(str(i))) for i in range(6)]  # type: ignore[arg-type]
    assert [getattr(c, "name", None) for c in chosen] == [None, "h1", "h2"] * 2


def test_no_helper_for_few_removals_a_parallel_limit_of_one_or_another_thread() -> None:
    walk = FakeWalk("/nonexistent")
    assert helpers.Helpers.fork(walk, helpers.MIN_REMOVALS - 1, 0) is None
    assert helpers.Helpers.fork(walk, 20, 1) is None
    stop = threading.Event()
    other = threading.Thread(target=stop.wait)
    other.start()
    try:
        assert helpers.Helpers.fork(walk, 20, 0) is None
    finally:
        stop.set()
        other.join()


def test_a_helper_that_has_ended_gets_no_more_turns(link: helpers.Link) -> None:
    group = helpers.Helpers([link])
    assert [group.take(node(str(i))) for i in range(2)] == [None, link]  # type: ignore[arg-type]
    with pytest.raises(Error):
        link.run(node("die:"))  # type: ignore[arg-type]
    assert [group.take(node(str(i))) for i in range(4)] == [None] * 4  # type: ignore[arg-type]


def test_a_helpers_own_database_connection_holds_its_own_locks(tmp_path) -> None:
    from engine.store import Store

    db = str(tmp_path / "db")
    store = Store(db)  # the walker's connection, open across the fork
    store.ensure_schema("CREATE TABLE IF NOT EXISTS t (x INTEGER)")
    assert locks_on(db, os.getpid()) > 0  # (WAL: a connection holds a shared lock)
    walk = FakeWalk(str(tmp_path / "ended"))
    made = helpers.Link.fork(walk)
    try:
        made.run(node("locks:" + db))  # type: ignore[arg-type]
    finally:
        made.close()
    # Not 0: with the inherited connection open, SQLite would count on its locks (which
    # the kernel holds for this process only), and the parent's exit could checkpoint the
    # WAL away under the helper.
    [(_, held)] = walk.stopped
    assert int(held) > 0


def test_a_writer_killed_in_a_transaction_leaves_its_helpers_free_to_write(tmp_path) -> None:
    """The writer lock's flock belongs to an open file description, which a forked helper
    shares: the parent's lock must not outlive the parent in the helper (it waited for
    it for ever, and so did every later writer)."""
    import select
    import signal

    from engine.store import Store

    db = str(tmp_path / "db")
    start_r, start_w = os.pipe()
    done_r, done_w = os.pipe()
    helper_pid = -1
    cli = os.fork()
    if cli == 0:  # the CLI: forks its helper, then is killed while it writes
        try:
            store = Store(db)
            store.ensure_schema("CREATE TABLE IF NOT EXISTS t (x INTEGER)")
            pid = os.fork()
            if pid == 0:  # the helper: writes once the CLI is gone
                os.read(start_r, 1)
                with Store(db).tx() as conn:
                    conn.execute("INSERT INTO t VALUES (2)")
                os.write(done_w, b"w")
                os._exit(0)
            os.write(done_w, str(pid).encode().rjust(10))
            with store.tx() as conn:
                conn.execute("INSERT INTO t VALUES (1)")
                os.write(start_w, b"x")
                os.kill(os.getpid(), signal.SIGKILL)
        finally:
            os._exit(1)
    try:
        assert os.waitpid(cli, 0)[1] == signal.SIGKILL
        helper_pid = int(os.read(done_r, 10))
        ready, _, _ = select.select([done_r], [], [], 5.0)
        assert ready and os.read(done_r, 1) == b"w"
        assert Store(db).query("SELECT x FROM t")[0][0] == 2  # the CLI's write rolled back
    finally:
        if helper_pid > 0:
            with contextlib.suppress(ProcessLookupError):
                os.kill(helper_pid, signal.SIGKILL)
        for fd in (start_r, start_w, done_r, done_w):
            os.close(fd)
