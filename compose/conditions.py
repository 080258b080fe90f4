"""Waits for a `depends_on` condition (started, running, healthy, completed) on every
container of a service, polling each container's state file (cheap). A condition that
cannot be met any more raises `DependencyFailed` at once."""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, NoReturn

from engine.errors import Error

if TYPE_CHECKING:
    from engine import Engine
    from engine.containers import Container

POLL = 0.02  # seconds between state reads while waiting for a condition


class DependencyFailed(Error):
    """A `depends_on` condition was not met; names the dependency and shows its last logs."""


def wait_service(engine: Engine, project_name: str, service: str, condition: str,
                 timeout: float | None, slots: threading.Semaphore,
                 stopping: threading.Event) -> None:
    """Returns once every container of `service` meets `condition`; raises DependencyFailed
    when it has none, when one cannot meet it, after `timeout` seconds (None: no limit), or
    when `stopping` is set (Ctrl-C). The container listing takes one of `slots`."""
    from compose.observe import project_containers

    with slots:
        found = project_containers(engine, project_name, [service])
    if not found:
        raise DependencyFailed(f'dependency "{service}" has no container')
    deadline = None if timeout is None else time.monotonic() + timeout
    for c in found:
        if not wait_container(engine, service, c.record, condition, deadline, stopping):
            raise DependencyFailed(f'service "{service}" did not become {condition} '
                                   f"within {timeout:g}s")


def wait_container(engine: Engine, service: str, container: Container, condition: str,
                   deadline: float | None = None,
                   stopping: threading.Event | None = None) -> bool:
    """Polls `container` (of `service`) until it meets `condition` (True), or the monotonic
    clock passes `deadline` (False); raises DependencyFailed when it cannot meet it any more
    or `stopping` is set."""
    state_of = engine.containers.state
    stopping = stopping or threading.Event()
    while True:
        state = state_of(container)
        if condition == "completed":
            if state.status in ("exited", "dead"):
                code = 255 if state.status == "dead" else state.exit_code
                if code == 0:
                    return True
                fail(service, container, f"exited with code {code}")
        elif state.status in ("exited", "dead") and condition != "started":
            fail(service, container, f"exited with code {state.exit_code}"
                 if state.status == "exited" else "died")
        elif condition == "started":
            if state.status != "created":
                return True
        elif condition == "running":
            if state.health is None or state.health.status == "healthy":
                if state.status == "running":
                    return True
            elif state.health.status == "unhealthy":
                fail(service, container, "is unhealthy")
        elif condition == "healthy":
            if state.health is None:
                raise DependencyFailed(f'dependency "{service}" has no healthcheck: '
                                       "condition service_healthy cannot be met "
                                       f"(container {container.name})")
            if state.health.status == "healthy":
                return True
            if state.health.status == "unhealthy":
                fail(service, container, "is unhealthy")
        pause = POLL if deadline is None else min(POLL, deadline - time.monotonic())
        if pause <= 0:
            return False
        if stopping.wait(pause):
            raise DependencyFailed(f'stopped waiting for service "{service}" (interrupted)')


def fail(service: str, container: Container, what: str) -> NoReturn:
    """Raises DependencyFailed saying what `container` did, with its last five log lines."""
    from engine.runtime import logs

    lines = [e.text.rstrip("\n") for e in logs.read(str(container.directory), tail=5)]
    tail = "".join(f"\n  {container.name}  | {line}" for line in lines)
    raise DependencyFailed(f'dependency failed: service "{service}" (container '
                           f"{container.name}) {what}{tail}")
