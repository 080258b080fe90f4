"""plan: node ids, merging, ordering and the stable text form."""

from __future__ import annotations

import pytest

from compose.plan import PlanNode, ordered


def test_order_is_topological_with_stable_ties() -> None:
    nodes = [
        PlanNode("container", "start", "p-b-1", after=("container create p-b-1",
                                                       "wait healthy a")),
        PlanNode("wait", "healthy", "a", after=("container start p-a-1",)),
        PlanNode("container", "create", "p-b-1", after=("network create p_default",)),
        PlanNode("container", "start", "p-a-1", after=("container create p-a-1",)),
        PlanNode("container", "create", "p-a-1", after=("network create p_default",)),
        PlanNode("network", "create", "p_default"),
    ]
    plan = ordered("p", nodes)
    assert [n.id for n in plan.nodes] == [
        "network create p_default", "container create p-a-1", "container start p-a-1",
        "container create p-b-1", "wait healthy a", "container start p-b-1"]
    assert ordered("p", list(reversed(nodes))).text() == plan.text()


def test_duplicates_merge_their_edges_and_unknown_edges_drop() -> None:
    plan = ordered("p", [
        PlanNode("wait", "healthy", "db", after=("x",)),
        PlanNode("wait", "healthy", "db", soft=("container start p-db-1",)),
        PlanNode("container", "start", "p-db-1", reason="was exited"),
    ])
    assert plan.text() == ("container start p-db-1 (was exited)\n"
                           "wait healthy db  <- container start p-db-1?\n")


def test_empty_plan_says_nothing_to_do_and_keeps_warnings() -> None:
    plan = ordered("blog", [], ["found orphan containers"])
    assert plan.empty
    assert plan.text() == "project blog: nothing to do\nwarning: found orphan containers\n"


def test_cycle_is_a_bug_reported_by_name() -> None:
    with pytest.raises(ValueError, match="cycle"):
        ordered("p", [PlanNode("container", "start", "a", after=("container start b",)),
                      PlanNode("container", "start", "b", after=("container start a",))])
