"""compose/retirement.py: a network removal's outside parts go once the last container it
waits for has stopped, not before, once, and only for removals that wait for containers'
removals alone."""

from __future__ import annotations

import threading

from compose.plan import Plan, PlanNode
from compose.retirement import Retirements


def removal(name: str) -> PlanNode:
    return PlanNode("container", "remove", name, old=name + "-id")


def plan_of(*nodes: PlanNode) -> Plan:
    return Plan("p", nodes=tuple(nodes))


class Calls:
    def __init__(self, fail: bool = False) -> None:
        self.calls: list[tuple[str, frozenset[str]]] = []
        self.fail = fail
        self.lock = threading.Lock()

    def __call__(self, name: str, stopped: frozenset[str]) -> bool:
        with self.lock:
            self.calls.append((name, stopped))
        if self.fail:
            raise OSError("the bridge would not go")
        return True


def test_the_network_goes_when_its_last_container_has_stopped() -> None:
    a, b = removal("a"), removal("b")
    net = PlanNode("network", "remove", "p_default", after=(a.id, b.id))
    calls = Calls()
    retirements = Retirements(plan_of(a, b, net), calls)
    retirements.container_stopped(a.id, "a-id")
    retirements.wait(net.id)
    assert calls.calls == []  # b still runs
    retirements.container_stopped(b.id, None)  # (b had no container left)
    retirements.wait(net.id)
    assert calls.calls == [("p_default", frozenset({"a-id"}))]
    retirements.container_stopped(b.id, "b-id")  # told again: nothing more happens
    retirements.wait(net.id)
    assert len(calls.calls) == 1


def test_a_removal_waiting_for_more_than_containers_is_left_to_its_step() -> None:
    a = removal("a")
    other = PlanNode("volume", "remove", "v")
    net = PlanNode("network", "remove", "p_default", after=(a.id, other.id))
    lone = PlanNode("network", "remove", "p_lone")  # waits for nothing: its step does it
    calls = Calls()
    retirements = Retirements(plan_of(a, other, net, lone), calls)
    retirements.container_stopped(a.id, "a-id")
    retirements.wait(net.id)
    retirements.wait(lone.id)
    assert calls.calls == []


def test_a_failing_take_down_is_left_to_the_removal_step() -> None:
    a = removal("a")
    net = PlanNode("network", "remove", "p_default", after=(a.id,))
    calls = Calls(fail=True)
    retirements = Retirements(plan_of(a, net), calls)
    retirements.container_stopped(a.id, "a-id")
    retirements.wait(net.id)  # does not raise
    assert calls.calls == [("p_default", frozenset({"a-id"}))]


def test_a_removal_with_a_soft_dependency_is_left_to_its_step() -> None:
    a, other = removal("a"), removal("b")
    net = PlanNode("network", "remove", "p_default", after=(a.id,), soft=(other.id,))
    calls = Calls()
    retirements = Retirements(plan_of(a, other, net), calls)
    retirements.container_stopped(a.id, "a-id")
    retirements.wait(net.id)
    assert calls.calls == []


def test_wait_all_waits_for_a_take_down_whose_removal_never_came() -> None:
    a = removal("a")
    net = PlanNode("network", "remove", "p_default", after=(a.id,))
    release = threading.Event()
    done: list[str] = []

    def slow(name: str, stopped: frozenset[str]) -> None:
        release.wait(5)
        done.append(name)

    retirements = Retirements(plan_of(a, net), slow)
    retirements.container_stopped(a.id, "a-id")
    threading.Timer(0.2, release.set).start()
    retirements.wait_all()  # (the removal step was skipped: a's removal failed after)
    assert done == ["p_default"]
