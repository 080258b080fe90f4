"""A plan: what `up` or `down` will do, as nodes with dependency edges. Pure data.

Each node is one step on one resource (`kind action target`, which is also its id): ensure a
network or volume, pull or build an image, create/recreate/start/restart/remove a container,
or wait for a service's condition. `after` lists the nodes that must succeed first; `soft`
lists those whose failure only warns (`depends_on: required: false`). `Plan.text()` is the
stable form `up --dry-run` prints and the unit tests compare.
"""

from __future__ import annotations

import heapq
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from compose.model import EMPTY

# Kinds and the order ties are broken in (resources first, then containers, then waits).
KIND_ORDER = ("network", "volume", "image", "container", "wait")


@dataclass(frozen=True, slots=True)
class PlanNode:
    """One step of a plan: one engine call (or a wait), after the nodes it depends on."""

    kind: str          # network | volume | image | container | wait
    action: str        # create | remove | pull | build | recreate | start | restart |
    #                    started | healthy | completed | running
    target: str        # the resource's engine name; a service name for waits
    service: str = ""
    number: int = 0
    reason: str = ""   # why (shown in the text form): "environment changed: A", "orphan", ...
    after: tuple[str, ...] = ()
    soft: tuple[str, ...] = ()
    old: str = ""      # the container id a recreate/remove acts on
    data: Mapping[str, str] = field(default=EMPTY, compare=False)  # e.g. anonymous volumes

    @property
    def id(self) -> str:
        return f"{self.kind} {self.action} {self.target}"

    def line(self) -> str:
        text = self.id
        if self.reason:
            text += f" ({self.reason})"
        deps = sorted(self.after) + [f"{d}?" for d in sorted(self.soft)]
        if deps:
            text += "  <- " + ", ".join(deps)
        return text


@dataclass(frozen=True, slots=True)
class Plan:
    """What `up`, `down`, ... will do, in a topological order of nodes."""

    project: str
    nodes: tuple[PlanNode, ...] = ()    # in a topological order
    warnings: tuple[str, ...] = ()

    @property
    def empty(self) -> bool:
        return not self.nodes

    def text(self) -> str:
        """One line per node, in execution order; "nothing to do" when empty."""
        lines = [n.line() for n in self.nodes] or [f"project {self.project}: nothing to do"]
        lines += [f"warning: {w}" for w in self.warnings]
        return "\n".join(lines) + "\n"

    def node(self, node_id: str) -> PlanNode:
        for n in self.nodes:
            if n.id == node_id:
                return n
        raise KeyError(node_id)


def _rank(node: PlanNode) -> tuple:
    return (KIND_ORDER.index(node.kind) if node.kind in KIND_ORDER else 9, node.target,
            node.action)


def ordered(project: str, nodes: list[PlanNode], warnings: list[str] | tuple[str, ...] = ()
            ) -> Plan:
    """A plan from unordered nodes: edges to unknown nodes dropped, duplicates (same id)
    merged, nodes topologically sorted with deterministic ties. Raises ValueError on a cycle
    (a reconciler bug, never a user's)."""
    by_id: dict[str, PlanNode] = {}
    for node in nodes:
        if node.id in by_id:
            prev = by_id[node.id]
            node = replace(prev, after=tuple(sorted({*prev.after, *node.after})),
                           soft=tuple(sorted({*prev.soft, *node.soft})))
        by_id[node.id] = node
    clean: dict[str, PlanNode] = {}
    for node_id, node in by_id.items():
        after = tuple(sorted({d for d in node.after if d in by_id and d != node_id}))
        soft = tuple(sorted({d for d in node.soft if d in by_id and d != node_id} - set(after)))
        clean[node_id] = replace(node, after=after, soft=soft)
    waiting = {i: len(n.after) + len(n.soft) for i, n in clean.items()}
    users: dict[str, list[str]] = {i: [] for i in clean}
    for i, n in clean.items():
        for d in (*n.after, *n.soft):
            users[d].append(i)
    ready = [(_rank(clean[i]), i) for i, c in waiting.items() if c == 0]
    heapq.heapify(ready)
    out: list[PlanNode] = []
    while ready:
        _, i = heapq.heappop(ready)
        out.append(clean[i])
        for u in users[i]:
            waiting[u] -= 1
            if waiting[u] == 0:
                heapq.heappush(ready, (_rank(clean[u]), u))
    if len(out) != len(clean):
        raise ValueError("plan has a cycle: " + ", ".join(sorted(set(clean) - {
            n.id for n in out})))
    return Plan(project, tuple(out), tuple(warnings))
