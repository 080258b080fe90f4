"""The dependency graph of a project's services. Pure: no I/O, no engine.

A service depends on another through `depends_on`, `links`, `volumes_from: X` (not
`container:X`), and `network_mode`/`ipc`/`pid: service:X`. Dependencies start first and stop
last. Every order here is deterministic: ties are broken by service name.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from compose.errors import DependencyError

if TYPE_CHECKING:
    from compose.model import Project, Service
    from engine.errors import InvalidArgument


def find_cycle(edges: Mapping[str, Iterable[str]]) -> list[str] | None:
    """A dependency cycle as `[a, b, ..., a]`, or None. Edges to unknown nodes are ignored."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    stack: list[str] = []
    graph = {node: sorted(set(targets) & set(edges)) for node, targets in edges.items()}

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for target in graph[node]:
            if state.get(target) == 1:
                return [*stack[stack.index(target):], target]
            if target not in state:
                found = visit(target)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def service_dependencies(service: Service) -> frozenset[str]:
    """The names of the services `service` needs (whether or not they exist)."""
    names = set(service.depends_on)
    names.update(link.split(":", 1)[0] for link in service.links)
    names.update(source.split(":", 1)[0] for source in service.volumes_from
                 if not source.startswith("container:"))
    for mode in (service.network_mode, service.ipc, service.pid):
        if mode and mode.startswith("service:"):
            names.add(mode.removeprefix("service:"))
    names.discard(service.name)
    return frozenset(names)


@dataclass(frozen=True, slots=True)
class Graph:
    """Services and what each depends on (only edges between known services)."""

    edges: Mapping[str, tuple[str, ...]]

    @property
    def nodes(self) -> tuple[str, ...]:
        return tuple(sorted(self.edges))

    def dependents(self) -> dict[str, tuple[str, ...]]:
        """Service -> the services that depend on it directly."""
        out: dict[str, list[str]] = {node: [] for node in self.edges}
        for node, targets in self.edges.items():
            for target in targets:
                out[target].append(node)
        return {node: tuple(sorted(users)) for node, users in out.items()}

    def order(self) -> tuple[str, ...]:
        """Topological order: every service after its dependencies; ties by name."""
        waiting = {node: len(targets) for node, targets in self.edges.items()}
        users = self.dependents()
        ready = [node for node, count in waiting.items() if count == 0]
        heapq.heapify(ready)
        out: list[str] = []
        while ready:
            node = heapq.heappop(ready)
            out.append(node)
            for user in users[node]:
                waiting[user] -= 1
                if waiting[user] == 0:
                    heapq.heappush(ready, user)
        if len(out) != len(self.edges):  # only reachable if built without from_edges' check
            raise DependencyError("dependency cycle: " + " -> ".join(find_cycle(self.edges) or []))
        return tuple(out)

    def reverse_order(self) -> tuple[str, ...]:
        """The order to stop in: dependents before their dependencies."""
        return tuple(reversed(self.order()))

    def levels(self) -> tuple[tuple[str, ...], ...]:
        """Groups that can start in parallel: level n depends only on levels < n."""
        level: dict[str, int] = {}
        for node in self.order():
            level[node] = 1 + max((level[t] for t in self.edges[node]), default=-1)
        groups: dict[int, list[str]] = {}
        for node, index in level.items():
            groups.setdefault(index, []).append(node)
        return tuple(tuple(sorted(groups[i])) for i in sorted(groups))

    def dependencies_of(self, names: Iterable[str]) -> frozenset[str]:
        """`names` and everything they need, transitively."""
        return closure(names, self.edges)

    def dependents_of(self, names: Iterable[str]) -> frozenset[str]:
        """`names` and everything that needs them, transitively."""
        return closure(names, self.dependents())

    def subgraph(self, names: Iterable[str]) -> Graph:
        keep = set(names)
        return Graph({n: tuple(t for t in self.edges[n] if t in keep)
                      for n in sorted(keep) if n in self.edges})


def closure(names: Iterable[str], step: Mapping[str, Iterable[str]],
            error: type[InvalidArgument] = DependencyError) -> frozenset[str]:
    """`names` and every node reachable from them through `step`; a name that is not a
    node of `step` raises `error` ('no such service: "x"')."""
    seen: set[str] = set()
    todo = list(names)
    while todo:
        node = todo.pop()
        if node in seen:
            continue
        if node not in step:
            raise error(f'no such service: "{node}"')
        seen.add(node)
        todo.extend(step[node])
    return frozenset(seen)


def from_edges(edges: Mapping[str, Iterable[str]]) -> Graph:
    """A graph from name -> dependency names; raises DependencyError naming any cycle."""
    known = set(edges)
    graph = Graph({node: tuple(sorted(set(targets) & known - {node}))
                   for node, targets in sorted(edges.items())})
    cycle = find_cycle(graph.edges)
    if cycle:
        raise DependencyError("dependency cycle: " + " -> ".join(cycle))
    return graph


def build(project: Project) -> Graph:
    """The graph of `project`'s services; raises DependencyError naming any cycle."""
    return from_edges({name: service_dependencies(service)
                       for name, service in project.services.items()})
