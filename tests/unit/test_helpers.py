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
    links = [SimpleNamespace(name="h1"), SimpleNamespace(name="h2")]
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
