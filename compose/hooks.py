"""A service's lifecycle hooks (`post_start`, `pre_stop`), run inside its container by the
engine's exec. Blocking: callers run these in worker threads."""

from __future__ import annotations

from typing import TYPE_CHECKING

from compose import translate as t
from engine.errors import Conflict, Error

if TYPE_CHECKING:
    from compose.model import Project
    from engine import Engine
    from engine.containers import Container


def run_hooks(project: Project | None, container: Container, which: str) -> None:
    """Runs the `which` hooks ("post_start" or "pre_stop") of the container's service in
    order; a failing post_start hook raises Conflict, a failing pre_stop hook is ignored.
    Without a project, or for a container of no service in it, there is nothing to run."""
    if project is None:
        return
    svc = project.services.get(container.labels.get(t.SERVICE, ""))
    if svc is None:
        return
    from engine.runtime import launch

    for hook in getattr(svc, which):
        env = [f"{k}={v}" for k, v in hook.environment.items() if v is not None]
        code, output = launch.exec_output(str(container.directory), list(hook.command),
                                          env=env, user=hook.user,
                                          workdir=hook.working_dir)
        if code != 0 and which == "post_start":
            raise Conflict(f"container {container.name}: post_start hook "
                           f"{' '.join(hook.command)!r} exited with {code}: "
                           f"{output.strip()[-200:]}")


def post_start(project: Project | None, container: Container) -> None:
    """Runs the post_start hooks of a container just started; raises if one fails."""
    run_hooks(project, container, "post_start")


def pre_stop(engine: Engine, project: Project | None, container: Container) -> None:
    """Runs the pre_stop hooks of a container about to be stopped, if it runs; never
    raises an engine error."""
    if project is None or not engine.containers.state(container).running:
        return
    try:
        run_hooks(project, container, "pre_stop")
    except Error:
        pass  # a failing pre_stop hook must not keep the container from stopping
