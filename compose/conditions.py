"""Waits for a `depends_on` condition (started, running, healthy, completed) on every
container of a service, polling each container's state file (cheap) on the event loop, not
in threads. A condition that cannot be met any more raises `DependencyFailed` at once."""

from __future__ import annotations

from typing import TYPE_CHECKING, NoReturn

import anyio

from engine.errors import Error

if TYPE_CHECKING:
    from engine import Engine
    from engine.containers import Container

POLL = 0.02  # seconds between state reads while waiting for a condition


class DependencyFailed(Error):
    """A `depends_on` condition was not met; names the dependency and shows its last logs."""


async def wait_service(engine: Engine, project_name: str, service: str, condition: str,
                       timeout: float | None, limiter: anyio.CapacityLimiter) -> None:
    """Returns once every container of `service` meets `condition`; raises DependencyFailed
    when it has none, when one cannot meet it, or after `timeout` seconds (None: no limit).
    The container listing runs in a worker thread under `limiter`."""
    from compose.observe import project_containers

    found = await anyio.to_thread.run_sync(project_containers, engine, project_name,
                                           [service], limiter=limiter)
    if not found:
        raise DependencyFailed(f'dependency "{service}" has no container')
    try:
        with anyio.fail_after(timeout):
            for c in found:
                await wait_container(engine, service, c.record, condition)
    except TimeoutError:
        raise DependencyFailed(f'service "{service}" did not become {condition} '
                               f"within {timeout:g}s") from None


async def wait_container(engine: Engine, service: str, container: Container,
                         condition: str) -> None:
    """Polls `container` (of `service`) until it meets `condition`."""
    state_of = engine.containers.state
    while True:
        state = state_of(container)
        if condition == "completed":
            if state.status in ("exited", "dead"):
                code = 255 if state.status == "dead" else state.exit_code
                if code == 0:
                    return
                fail(service, container, f"exited with code {code}")
        elif state.status in ("exited", "dead") and condition != "started":
            fail(service, container, f"exited with code {state.exit_code}"
                 if state.status == "exited" else "died")
        elif condition == "started":
            if state.status != "created":
                return
        elif condition == "running":
            if state.health is None or state.health.status == "healthy":
                if state.status == "running":
                    return
            elif state.health.status == "unhealthy":
                fail(service, container, "is unhealthy")
        elif condition == "healthy":
            if state.health is None:
                raise DependencyFailed(f'dependency "{service}" has no healthcheck: '
                                       "condition service_healthy cannot be met "
                                       f"(container {container.name})")
            if state.health.status == "healthy":
                return
            if state.health.status == "unhealthy":
                fail(service, container, "is unhealthy")
        await anyio.sleep(POLL)


def fail(service: str, container: Container, what: str) -> NoReturn:
    """Raises DependencyFailed saying what `container` did, with its last five log lines."""
    from engine.runtime import logs

    lines = [e.text.rstrip("\n") for e in logs.read(str(container.directory), tail=5)]
    tail = "".join(f"\n  {container.name}  | {line}" for line in lines)
    raise DependencyFailed(f'dependency failed: service "{service}" (container '
                           f"{container.name}) {what}{tail}")
