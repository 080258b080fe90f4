"""Asking the containers a plan removes to stop ahead of their removal steps.

Stopping is the shims' and the kernel's work (stop signal, exit, namespaces and cgroups
taken down), not this process's, so it can run on the other CPUs while this one gets on
with its own: the walker asks every removal that may start at once before it hands any
step to a worker, and `down` asks the first of them even before that, once it knows which
containers go and in which order, so that they stop while it looks at the networks and
volumes and sets up the walk (`down -t 0` of 20: the containers were still stopping for
~60 ms of the walk).

A request here is the stop the step would make (stop signal, then SIGKILL after the
timeout); the step's own stop then only waits for it. Not for a service with pre_stop
hooks (they run first, in the step), and not under a parallel limit (it would ask them
all at once). Stdlib and engine.runtime only: `down` calls this before importing the walk.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from compose.model import Project
    from compose.plan import Plan, PlanNode
    from engine import Engine


def ask(engine: Engine, project: Project | None, nodes: Iterable[PlanNode],
        timeout: float | None, asked: set[str]) -> None:
    """Asks the container of each removal among `nodes` to stop, once per node: `asked`
    holds the ids of the nodes asked so far, these added."""
    from engine.runtime import launch

    for node in nodes:
        if (node.kind, node.action) != ("container", "remove") or not node.old \
                or node.id in asked:
            continue
        service = project.services.get(node.service) if project else None
        if service is not None and service.pre_stop:
            continue
        asked.add(node.id)
        launch.request_stop(engine.layout.container(node.old), timeout)


def ready(plan: Plan) -> list[PlanNode]:
    """The nodes of `plan` that wait for no other: those a walk starts first."""
    return [node for node in plan.nodes if not node.after and not node.soft]
