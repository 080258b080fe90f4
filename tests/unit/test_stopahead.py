"""compose/stopahead.py: which containers `down` asks to stop before its walk, and how."""

from __future__ import annotations

import textwrap
from pathlib import Path
from types import SimpleNamespace

import pytest

from compose import reconcile, stopahead
from compose.observe import Observed, ObservedNetwork
from engine.runtime import launch
from tests.unit.test_reconcile import STACK, project, running

HOOKED = STACK.replace("    depends_on: [web]\n",
                       "    depends_on: [web]\n    pre_stop: [{command: [\"true\"]}]\n")


def test_the_first_wave_from_the_containers_alone_is_the_full_plans(tmp_path: Path) -> None:
    # `down` orders its early stops from the containers before it looks at networks and
    # volumes: the removals that wait for nothing must be the same in both plans.
    p = project(tmp_path)
    containers = (running(p, "db"), running(p, "web"), running(p, "web", 2),
                  running(p, "worker"))
    full = Observed(p.name, containers,
                    networks={"blog_default": ObservedNetwork("blog_default", "n1")})
    options = reconcile.DownOptions(volumes=True)
    early = stopahead.ready(reconcile.down(p.name, Observed(p.name, containers), p, options))
    later = stopahead.ready(reconcile.down(p.name, full, p, options))
    assert [n.id for n in early] == [n.id for n in later] == ["container remove blog-worker-1"]


def test_without_a_project_every_labelled_container_goes_first(tmp_path: Path) -> None:
    p = project(tmp_path)
    containers = (running(p, "db"), running(p, "web"))
    plan = reconcile.down(p.name, Observed(p.name, containers), None)
    assert {n.target for n in stopahead.ready(plan)} == {"blog-db-1", "blog-web-1"}


@pytest.fixture
def asked_stops(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, float | None]]:
    calls: list[tuple[str, float | None]] = []
    monkeypatch.setattr(launch, "request_stop",
                        lambda directory, timeout=None: calls.append((str(directory), timeout)))
    return calls


def engine_at(root: Path) -> SimpleNamespace:
    return SimpleNamespace(layout=SimpleNamespace(container=lambda cid: root / cid))


def test_ask_stops_each_removal_once_and_never_before_pre_stop_hooks(
        tmp_path: Path, asked_stops: list[tuple[str, float | None]]) -> None:
    (tmp_path / "hooked").mkdir()
    p = project(tmp_path / "hooked", HOOKED)
    containers = (running(p, "db"), running(p, "web"), running(p, "worker"))
    plan = reconcile.down(p.name, Observed(p.name, containers), p)
    asked: set[str] = set()
    engine = engine_at(tmp_path)
    stopahead.ask(engine, p, plan.nodes, 0, asked)  # type: ignore[arg-type]
    stopahead.ask(engine, p, plan.nodes, 0, asked)  # type: ignore[arg-type]
    # worker has a pre_stop hook (its step runs it, then stops); the network is no container
    assert sorted(asked_stops) == [(str(tmp_path / "id-blog-db-1"), 0),
                                   (str(tmp_path / "id-blog-web-1"), 0)]
    assert asked == {"container remove blog-db-1", "container remove blog-web-1"}


def test_ask_passes_no_timeout_on_so_each_container_keeps_its_own(
        tmp_path: Path, asked_stops: list[tuple[str, float | None]]) -> None:
    p = project(tmp_path, textwrap.dedent("""
        services:
          app: {image: busybox, stop_grace_period: 30s}
        """))
    plan = reconcile.down(p.name, Observed(p.name, (running(p, "app"),)), p)
    stopahead.ask(engine_at(tmp_path), p, stopahead.ready(plan), None, set())  # type: ignore[arg-type]
    assert asked_stops == [(str(tmp_path / "id-blog-app-1"), None)]
