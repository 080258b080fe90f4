"""Shims forked by the fork server (launch.forkserver) on the real kernel: the runtime's
behaviour is the same as with a fresh interpreter per shim, the shims outlive the server and
inherit nothing of each other, and an idle or killed server falls back to fresh shims."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from engine.runtime import launch
from tests.integration import test_runtime as base
from tests.integration.test_runtime import Runtime, wait_for
from tests.support import busybox

rootfs, rt = base.rootfs, base.rt  # the runtime tests' fixtures: bundles, leak checks

pytestmark = pytest.mark.skipif(not busybox.available(), reason="busybox-static is missing")

CASES = [base.test_echo_exit_code_and_json_file_log, base.test_exec_failure_is_one_clear_message,
         base.test_stop_within_grace_period_then_sigkill, base.test_restart_on_failure_twice,
         base.test_healthcheck_healthy_then_unhealthy_and_exec, base.test_memory_limit_in_cgroup,
         base.test_dead_shim_is_reported_and_cleaned, base.test_tty_output_is_logged,
         base.test_init_reaper_forwards_signals]


@pytest.mark.parametrize("case", CASES, ids=lambda f: f.__name__.removeprefix("test_"))
def test_runtime_behaves_the_same_through_the_fork_server(rt: Runtime, case) -> None:
    with launch.forkserver():
        assert launch._forkserver is not None
        case(rt)


def _fd_targets(pid: int) -> list[str]:
    out = []
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            out.append(os.readlink(f"/proc/{pid}/fd/{fd}"))
        except OSError:
            pass
    return out


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_shims_outlive_the_server_and_hold_nothing_of_each_other(rt: Runtime) -> None:
    dirs = [rt.create("sleep", "60") for _ in range(3)]
    with launch.forkserver():
        server = launch._forkserver._proc.pid  # type: ignore[union-attr]
        states = [launch.start(d) for d in dirs]
    assert not _alive(server)  # the scope's end ends it
    for d, state in zip(dirs, states, strict=True):
        assert launch.state(d).status == "running"
        assert _alive(state.shim_pid)
        stat = Path(f"/proc/{state.shim_pid}/stat").read_text().rsplit(")", 1)[1].split()
        assert int(stat[1]) != server  # reparented: not the server's child any more
        assert os.getsid(state.shim_pid) != os.getsid(0)  # a session of its own
        targets = _fd_targets(state.shim_pid)
        others = [str(o) for o in dirs if o != d]
        assert not [t for t in targets if any(o in t for o in others)], targets
        assert str(d) in " ".join(targets)  # its own log and shim.log
        assert "shim.py" in Path(f"/proc/{state.shim_pid}/cmdline").read_text()
    fresh_dir = rt.create("sleep", "60")
    fresh = launch.start(fresh_dir)
    # as many fds as a shim started as a fresh interpreter (once it closed its status fd)
    wait_for(lambda: len(_fd_targets(fresh.shim_pid)) == len(_fd_targets(states[0].shim_pid)),
             timeout=5)


def test_idle_server_refuses_and_starts_fall_back(rt: Runtime) -> None:
    first, later = rt.create("sleep", "60"), rt.create("sleep", "60")
    with launch.forkserver(idle=0.3):
        server = launch._forkserver._proc.pid  # type: ignore[union-attr]
        launch.start(first)
        wait_for(lambda: not _alive(server), timeout=5)
        assert launch.start(later).status == "running"  # a fresh shim instead
    assert launch._forkserver is None


def test_killed_server_falls_back(rt: Runtime) -> None:
    d = rt.create("sh", "-c", "exit 4")
    with launch.forkserver():
        server = launch._forkserver._proc.pid  # type: ignore[union-attr]
        os.kill(server, signal.SIGKILL)
        wait_for(lambda: not _alive(server), timeout=5)
        time.sleep(0.05)
        launch.start(d)
        assert launch.wait(d, timeout=10) == 4


def test_shims_that_end_while_the_server_lives_leave_no_zombie(rt: Runtime) -> None:
    """The server forks each shim directly and never waits for it: the kernel reaps them."""
    d = rt.create("true")
    with launch.forkserver():
        server = launch._forkserver._proc.pid  # type: ignore[union-attr]
        shim = launch.start(d).shim_pid
        assert launch.wait(d, timeout=10) == 0
        wait_for(lambda: not Path(f"/proc/{shim}").exists(), timeout=5)  # not even a zombie
        assert _alive(server)
        children = Path(f"/proc/{server}/task/{server}/children").read_text().split()
        assert str(shim) not in children
