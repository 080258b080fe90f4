"""`up` warms the shim fork server while it observes and plans (launch.warm_forkserver):
even one container's shim is forked by the server, a failing `up` leaves no server behind,
and `--dry-run` starts none. The CLI runs as a separate process with
SHIPYARD_RUNTIME_TRACE set (engine/runtime/tracing.py): the server marks "server:request"
and "server:forked" for each shim it forks, and the shim it forked marks "shim:forked";
a shim started as a fresh interpreter marks neither."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from engine.layout import Layout
from tests.integration.test_up_down import Shipyard, with_busybox
from tests.support import busybox, leaks
from tests.support.cli import wait_for

pytestmark = pytest.mark.skipif(not busybox.available(), reason="busybox-static is missing")

ONE = textwrap.dedent("""
    services:
      one:
        image: busybox
        command: ["sh", "-c", 'trap "exit 0" TERM; while true; do sleep 0.1; done']
""")

MISSING = textwrap.dedent("""
    services:
      gone:
        image: shipyard-test-not-here:1
        pull_policy: never
""")


class Warm(Shipyard):
    """test_up_down's CLI (in-process, remembering the ids it made), plus `process`: the
    CLI as a separate process with the runtime trace on, as a user runs it."""

    def __init__(self, root: Path, project: Path, trace: Path) -> None:
        super().__init__(root, project)
        self.trace = trace

    def process(self, *argv: str, timeout: float = 60) -> tuple[int, str, str]:
        env = dict(os.environ, SHIPYARD_ROOT=str(self.root),
                   SHIPYARD_RUNTIME_TRACE=str(self.trace))
        done = subprocess.run([sys.executable, "-m", "compose.cli", *self.prefix, *argv],
                              capture_output=True, text=True, timeout=timeout, env=env)
        self.ids.record()
        return done.returncode, done.stdout, done.stderr

    def marks(self) -> list[tuple[int, str]]:
        """(pid, label) of every trace line so far."""
        try:
            lines = self.trace.read_text().splitlines()
        except FileNotFoundError:
            return []
        return [(int(line.split()[0]), line.split()[1]) for line in lines]

    def processes(self) -> list[str]:
        """Live processes started with this root in their environment or command line:
        the CLI's children (the fork server, shims) inherit its environment. Others on the
        machine (suites running alongside) are not this test's."""
        me = os.getpid()
        root = str(self.root).encode()
        found = []
        for name in os.listdir("/proc"):
            if not name.isdigit() or int(name) == me:
                continue
            try:
                environ = Path(f"/proc/{name}/environ").read_bytes().split(b"\0")
                cmdline = Path(f"/proc/{name}/cmdline").read_bytes()
                stat = Path(f"/proc/{name}/stat").read_text()
            except OSError:
                continue
            if stat.rsplit(")", 1)[1].split()[0] == "Z":
                continue
            if b"SHIPYARD_ROOT=" + root in environ or root in cmdline:
                command = cmdline.replace(b"\0", b" ").decode(errors="replace").strip()
                found.append(f"{name} {command}")
        return found

    def fork_servers(self) -> list[str]:
        return [p for p in self.processes() if "--forkserver" in p]


@pytest.fixture
def warm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Warm]:
    before = leaks.snapshot()
    cli = with_busybox(tmp_path, monkeypatch, "warm",
                       lambda root, project: Warm(root, project, tmp_path / "trace"))
    yield cli
    cli.tear_down(before)
    # A server left by an `up` that went well ends on its own once booted (it read EOF).
    wait_for(lambda: cli.processes() == [], timeout=10)


def _servers(marks: list[tuple[int, str]]) -> set[int]:
    return {pid for pid, label in marks if label.startswith("server:")}


def test_one_container_up_is_forked_by_the_warm_server(warm: Warm) -> None:
    warm.write(ONE)
    code, _, err = warm.process("up", "-d")
    assert code == 0, err
    assert "Container warm-one-1  Started" in err
    marks = warm.marks()
    labels = [label for _, label in marks]
    assert labels.count("server:request") == 1, marks
    assert labels.count("server:forked") == 1, marks
    server = _servers(marks)
    assert len(server) == 1
    forked = [pid for pid, label in marks if label == "shim:forked"]
    assert len(forked) == 1 and forked[0] not in server
    # That forked shim is the container's shim.
    container = warm.inspect()["warm-one-1"]
    assert container["State"]["Status"] == "running"
    state = json.loads((Layout.at(warm.root).container(container["Id"]) / "state.json")
                       .read_text())
    assert state["shim_pid"] == forked[0]

    code, _, err = warm.process("down", "-t", "0")
    assert code == 0, err
    assert warm.inspect() == {}


def test_failed_up_leaves_no_fork_server(warm: Warm) -> None:
    warm.write(MISSING)
    before = leaks.snapshot()
    code, out, err = warm.process("up", "-d")
    # right away: a failed `up` waited for its server to end
    leaked = leaks.diff(before, leaks.snapshot())
    servers = warm.fork_servers()
    assert code != 0
    assert err.strip().splitlines() == [
        'service "gone": image "shipyard-test-not-here:1" is not present and pull_policy is '
        'never (pull or build it first)'], err
    assert "Traceback" not in err + out
    # The server did start (it opens the trace file when it imports the shim: the CLI
    # itself does not, see the --dry-run test) and had nothing to fork.
    assert warm.trace.exists()
    assert warm.marks() == []
    assert servers == []
    forkservers = [p for p in leaked.get("processes", []) if "--forkserver" in p]
    ours = [p for p in forkservers if str(warm.root) in _environ_of(p)]
    assert ours == [], leaked


# Runs argv as a child subreaper (prctl(2) PR_SET_CHILD_SUBREAPER): whatever the command
# leaves behind unreaped (a process still running, or one that ended that it never waited
# for) is handed to this wrapper when the command exits, and the wrapper lists it. So a
# server the command did not wait for shows up however fast it ended, with no race
# against the leak snapshot. The wrapper then waits for what it was handed (killing it
# after 10 s) and prints one JSON document.
ORPHANS = """
import ctypes, json, os, signal, subprocess, sys, time
if ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0) != 0:
    raise OSError(ctypes.get_errno(), "PR_SET_CHILD_SUBREAPER")
done = subprocess.run(sys.argv[1:], capture_output=True, text=True)
me, left = os.getpid(), []
for pid in filter(str.isdigit, os.listdir("/proc")):
    try:
        stat = open(f"/proc/{pid}/stat").read()
        cmd = open(f"/proc/{pid}/cmdline", "rb").read().replace(b"\\0", b" ")
    except OSError:
        continue
    head, tail = stat.rsplit(")", 1)
    if int(tail.split()[1]) == me:
        left.append({"pid": int(pid), "comm": head.split("(", 1)[1],
                     "state": tail.split()[0], "cmd": cmd.decode(errors="replace")})
deadline = time.monotonic() + 10
for child in left:
    while os.waitpid(child["pid"], os.WNOHANG) == (0, 0):
        if time.monotonic() > deadline:
            os.kill(child["pid"], signal.SIGKILL)
        time.sleep(0.01)
print(json.dumps({"code": done.returncode, "stderr": done.stderr, "left": left}))
"""


def test_failed_up_waits_for_its_server(warm: Warm) -> None:
    """The deterministic form of the test above: `up` reaps the server itself before it
    exits, so nothing of it (alive or ended) is handed to a subreaper above `up`."""
    warm.write(MISSING)
    env = dict(os.environ, SHIPYARD_ROOT=str(warm.root), SHIPYARD_RUNTIME_TRACE=str(warm.trace))
    wrapped = subprocess.run(
        [sys.executable, "-c", ORPHANS, sys.executable, "-m", "compose.cli", *warm.prefix,
         "up", "-d"], capture_output=True, text=True, timeout=60, env=env)
    assert wrapped.returncode == 0, wrapped.stderr
    report = json.loads(wrapped.stdout)
    assert report["code"] != 0
    assert "is not present and pull_policy is never" in report["stderr"]
    assert warm.trace.exists()  # the server booted
    assert report["left"] == []


def _environ_of(process: str) -> str:
    try:
        return Path(f"/proc/{process.split()[0]}/environ").read_bytes().decode(errors="replace")
    except OSError:
        return ""


def test_dry_run_starts_no_fork_server(warm: Warm) -> None:
    warm.write(ONE)
    code, out, err = warm.process("up", "-d", "--dry-run")
    assert code == 0, err
    assert "container start warm-one-1" in out
    assert warm.marks() == []
    assert not warm.trace.exists()  # no server booted (nor anything of the runtime)
    assert warm.fork_servers() == []
    assert warm.inspect() == {}


def test_no_start_starts_no_fork_server(warm: Warm) -> None:
    warm.write(ONE)
    code, _, err = warm.process("up", "--no-start")
    assert code == 0, err
    assert warm.inspect()["warm-one-1"]["State"]["Status"] == "created"
    assert not warm.trace.exists()
    assert warm.fork_servers() == []


def test_a_child_forked_in_the_scope_does_not_keep_the_server() -> None:
    """A process forked inside the scope (compose/helpers.py's removal helpers, forked by
    `up`'s execute) gets a copy of the server's socket. Were it kept, the server would hear
    no EOF while the child lives, and a scope leaving on an error would wait for it (up to
    5 s, then kill the server)."""
    import time

    from engine.runtime import launch

    before = leaks.snapshot()
    child = 0
    with pytest.raises(RuntimeError), launch.warm_forkserver():
        child = os.fork()
        if child == 0:  # lives on past the scope, as a helper still removing
            time.sleep(2.5)
            os._exit(0)
        t0 = time.monotonic()
        raise RuntimeError("a failed up")
    elapsed = time.monotonic() - t0
    os.waitpid(child, 0)
    assert elapsed < 1.5
    assert launch._forkserver is None
    assert leaks.diff(before, leaks.snapshot()) == {}
