"""The dependency graph: orders, levels, closures, cycles."""

from __future__ import annotations

import pytest

from compose.errors import DependencyError
from compose.graph import build, find_cycle, from_edges
from compose.loader.bind import bind_project

EDGES = {"web": ["api", "cache"], "api": ["db"], "cache": [], "db": [], "worker": ["db"],
         "admin": []}


def test_topological_order_is_stable() -> None:
    g = from_edges(EDGES)
    assert g.order() == ("admin", "cache", "db", "api", "web", "worker")
    assert g.reverse_order() == ("worker", "web", "api", "db", "cache", "admin")


def test_levels_for_parallel_start() -> None:
    assert from_edges(EDGES).levels() == (("admin", "cache", "db"), ("api", "worker"),
                                          ("web",))


def test_closures() -> None:
    g = from_edges(EDGES)
    assert g.dependencies_of(["web"]) == {"web", "api", "cache", "db"}
    assert g.dependents_of(["db"]) == {"db", "api", "web", "worker"}
    with pytest.raises(DependencyError, match='no such service: "nope"'):
        g.dependencies_of(["nope"])
    assert g.subgraph(["web", "api"]).edges == {"api": (), "web": ("api",)}


def test_cycles_are_named() -> None:
    assert find_cycle({"a": ["b"], "b": ["c"], "c": ["a"], "d": []}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": ["a"]}) == ["a", "a"]
    assert find_cycle(EDGES) is None
    with pytest.raises(DependencyError, match="dependency cycle: api -> web -> api"):
        from_edges({"web": ["api"], "api": ["web"]})


def test_edges_from_every_kind_of_reference() -> None:
    project = bind_project({"name": "p", "services": {
        "a": {"image": "x", "depends_on": {"b": {"condition": "service_started"}}},
        "b": {"image": "x", "links": ["c:see"]},
        "c": {"image": "x", "volumes_from": ["d:ro", "container:outside"]},
        "d": {"image": "x", "network_mode": "service:e"},
        "e": {"image": "x", "ipc": "service:f"},
        "f": {"image": "x", "pid": "service:g"},
        "g": {"image": "x"}}}, working_dir="/w")
    assert build(project).order() == ("g", "f", "e", "d", "c", "b", "a")
