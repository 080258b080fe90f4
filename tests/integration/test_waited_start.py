"""A start whose caller will wait (`launch.start(..., waited=True)`): the start's own
connection to the shim becomes the wait, so the shim leaves the release to the caller
instead of running the exit hook, unless the caller left before the end. Real kernel,
busybox containers, leak-checked like tests/integration/test_runtime.py."""

from __future__ import annotations

import io
import os
import select
import time
from pathlib import Path

import pytest

from compose.cli import Context
from compose.commands.container import start_attached
from engine.runtime import launch, logs
from engine.spec import ContainerConfig, build_spec, shim_options
from tests.integration import test_container_cli
from tests.integration import test_runtime as base
from tests.integration.test_container_cli import Shipyard
from tests.integration.test_runtime import Runtime, wait_for
from tests.support import busybox

rootfs, rt = base.rootfs, base.rt  # the runtime tests' fixtures: bundles, leak checks
shipyard = test_container_cli.shipyard  # the CLI tests' engine root with busybox, leak-checked

pytestmark = pytest.mark.skipif(not busybox.available(), reason="busybox-static is missing")


def with_hook(runtime: Runtime, marker: Path, *cmd: str) -> Path:
    """A container whose exit hook touches `marker` (the shim appends the lock's fd)."""
    d = runtime.create(*cmd)
    config = ContainerConfig(id=d.name, cmd=cmd, cgroup_parent=runtime.parent)
    spec = build_spec(config, {}, str(runtime.rootfs),
                      (runtime.rootfs / "etc/passwd").read_text(),
                      (runtime.rootfs / "etc/group").read_text())
    launch.create(d, spec, {**shim_options(config),
                            "exit_hook": ["/bin/sh", "-c", f"touch {marker}", "hook"]})
    return d


def hook_stays_quiet(marker: Path, settle: float = 0.5) -> bool:
    time.sleep(settle)  # the hook, had it been started, is a fork and a touch away
    return not marker.exists()


def test_a_waited_start_hears_the_end_and_runs_no_exit_hook(rt: Runtime,
                                                            tmp_path: Path) -> None:
    marker = tmp_path / "hook-ran"
    d = with_hook(rt, marker, "sh", "-c", "exit 7")  # ends before any later wait could connect
    launch.start(d, waited=True)
    assert launch.end_fd(d) is not None
    assert launch.wait(d, timeout=10) == 7
    assert launch.end_fd(d) is None  # the held connection went with the wait
    assert hook_stays_quiet(marker)


def test_without_a_waiter_the_exit_hook_runs(rt: Runtime, tmp_path: Path) -> None:
    marker = tmp_path / "hook-ran"
    d = with_hook(rt, marker, "sh", "-c", "exit 0")
    launch.start(d)
    assert launch.end_fd(d) is None
    wait_for(marker.exists)


def test_a_waiter_that_left_before_the_end_leaves_the_release_to_the_hook(
        rt: Runtime, tmp_path: Path) -> None:
    marker = tmp_path / "hook-ran"
    d = with_hook(rt, marker, "sh", "-c", "sleep 0.3")
    launch.start(d, waited=True)
    launch._held_waits.pop(str(d)).close()  # as when the waiting command is killed
    wait_for(marker.exists)


def test_the_end_fd_wakes_the_log_follower_at_the_end(rt: Runtime) -> None:
    d = rt.create("sh", "-c", "echo one; sleep 0.4; echo two")
    launch.start(d, waited=True)
    end = launch.end_fd(d)
    assert end is not None and not select.select([end], [], [], 0)[0]
    t0 = time.monotonic()
    # A poll of 5 s: only the end's descriptor can end this follow within a second.
    texts = [e.text for e in logs.follow(d, poll=5.0, end_fd=end)]
    assert time.monotonic() - t0 < 2.0
    assert texts == ["one\n", "two\n"]
    assert launch.wait(d, timeout=5) == 0


def test_an_attached_run_that_fails_after_the_end_still_releases(shipyard: Shipyard) -> None:
    """`container run` (attached: a waited start) whose output breaks after the container
    ended, before its `wait` took the end: the shim heard a waiter, so it ran no exit hook;
    the command must release what it prepared itself on its way out."""
    from engine import Engine, prepare

    shipyard("container", "create", "--name", "short", "--network", "none", "busybox",
             "sh", "-c", "echo hi")
    engine = Engine(shipyard.root)
    container = engine.containers.get("short")

    class Broken(io.StringIO):
        def write(self, text: str) -> int:
            # The end first, so that the shim has answered the held connection.
            wait_for(lambda: not engine.containers.state(container).running)
            time.sleep(0.2)
            raise BrokenPipeError(32, "Broken pipe")

    ctx = Context(dict(os.environ), os.getcwd(), Broken(), io.StringIO())
    with pytest.raises(BrokenPipeError):
        start_attached(ctx, engine, container, detach=False, remove=False,
                       detached_output="")
    assert not prepare.holds_anything(engine, container)
    assert launch.end_fd(container.directory) is None  # nor is the connection kept


def test_a_stop_asked_by_a_command_that_left_runs_no_exit_hook(rt: Runtime,
                                                              tmp_path: Path) -> None:
    """`down` asks its containers to stop ahead and hangs up (compose/stopahead.py), then
    releases and removes them itself: the shim must not start an exit hook for each (20
    interpreters competing with `down` for the containers' locks)."""
    marker = tmp_path / "hook-ran"
    d = with_hook(rt, marker, "sleep", "30")
    launch.start(d)
    launch.request_stop(d, timeout=0)  # sent, and the connection closed at once
    wait_for(lambda: not launch.state(d).running)
    assert hook_stays_quiet(marker)
