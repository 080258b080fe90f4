"""reconcile: inline Compose YAML + an observed state in, the plan's text out."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from compose import reconcile, translate
from compose.loader import load
from compose.loader.options import LoadOptions
from compose.model import Project
from compose.observe import Observed, ObservedContainer, ObservedNetwork, ObservedVolume
from engine.containers import Container
from engine.errors import InvalidArgument, NotFound

STACK = """
services:
  db:
    image: busybox
    environment: {A: "1"}
    healthcheck: {test: ["CMD", "true"], interval: 1s}
    volumes: [data:/data, /anon]
  web:
    image: busybox
    depends_on:
      db: {condition: service_healthy, restart: true}
  worker:
    image: busybox
    depends_on: [web]
volumes:
  data: {}
"""


def project(tmp_path: Path, text: str = STACK, env: dict[str, str] | None = None) -> Project:
    (tmp_path / "compose.yaml").write_text(textwrap.dedent(text))
    return load(LoadOptions(environment=env or {}, cwd=str(tmp_path), project_name="blog"))


def running(p: Project, service: str, number: int = 1, *, status: str = "running",
            anon: dict[str, str] | None = None, hash_: str | None = None) -> ObservedContainer:
    """What observe reports for a container made from the service as `p` describes it."""
    request = translate.service_request(p, service, number, anonymous_volumes=anon)
    name = request.name or ""
    record = Container(id=f"id-{name}", name=name, image="busybox", image_id="img1",
                       created=float(number), labels=request.labels, request=request,
                       volumes=tuple(m.source for m in request.mounts),
                       directory=Path("/nonexistent"))
    return ObservedContainer(
        id=record.id, name=name, service=service, number=number,
        config_hash=hash_ or translate.config_hash(p, service), image="busybox",
        image_id="img1", status=status, labels=request.labels,
        anonymous_volumes=anon or {}, volumes=tuple(v for v in record.volumes if v),
        record=record)


def everything(p: Project, *containers: ObservedContainer) -> Observed:
    return Observed(project=p.name, containers=containers,
                    networks={"blog_default": ObservedNetwork("blog_default", "n1")},
                    volumes={"blog_data": ObservedVolume("blog_data")},
                    images={"busybox": "img1"})


def test_first_up_plans_everything_in_dependency_order(tmp_path: Path) -> None:
    p = project(tmp_path)
    plan = reconcile.up(p, Observed(project="blog"))
    net = "network create blog_default"
    assert plan.text() == textwrap.dedent(f"""\
        network create blog_default
        volume create blog_data
        image pull busybox (missing)
        container create blog-db-1  <- image pull busybox, volume create blog_data
        container start blog-db-1  <- container create blog-db-1, {net}
        container create blog-web-1  <- image pull busybox
        container create blog-worker-1  <- image pull busybox
        wait healthy db  <- container start blog-db-1
        container start blog-web-1  <- container create blog-web-1, {net}, wait healthy db
        wait started web  <- container start blog-web-1
        container start blog-worker-1  <- container create blog-worker-1, {net}, wait started web
        """)


def test_up_to_date_plans_nothing_and_says_so(tmp_path: Path) -> None:
    p = project(tmp_path)
    obs = everything(p, running(p, "db", anon={"/anon": "a" * 64}), running(p, "web"),
                     running(p, "worker"))
    plan = reconcile.up(p, obs)
    assert plan.empty
    assert plan.text() == "project blog: nothing to do\n"


def test_changed_env_recreates_that_service_and_restarts_restart_true_dependents(
        tmp_path: Path) -> None:
    old = project(tmp_path)
    obs = everything(old, running(old, "db", anon={"/anon": "a" * 64}), running(old, "web"),
                     running(old, "worker"))
    new = project(tmp_path, STACK.replace('A: "1"', 'A: "2", B: "x"'))
    plan = reconcile.up(new, obs)
    assert plan.text() == textwrap.dedent("""\
        container recreate blog-db-1 (config changed: environment (A, B))
        container start blog-db-1  <- container recreate blog-db-1
        wait healthy db  <- container start blog-db-1
        container restart blog-web-1 (db restarted)  <- container start blog-db-1, wait healthy db
        """)
    # the anonymous volume is handed to the new container
    assert dict(plan.node("container recreate blog-db-1").data) == {"/anon": "a" * 64}
    renewed = reconcile.up(new, obs, reconcile.UpOptions(renew_anon_volumes=True))
    assert dict(renewed.node("container recreate blog-db-1").data) == {}


def test_no_recreate_and_force_recreate(tmp_path: Path) -> None:
    old = project(tmp_path)
    obs = everything(old, running(old, "db"), running(old, "web"), running(old, "worker"))
    new = project(tmp_path, STACK.replace('A: "1"', 'A: "2"'))
    assert reconcile.up(new, obs, reconcile.UpOptions(no_recreate=True)).empty
    forced = reconcile.up(old, obs, reconcile.UpOptions(force_recreate=True, no_start=True))
    assert [n.id for n in forced.nodes] == [
        "container recreate blog-db-1", "container recreate blog-web-1",
        "container recreate blog-worker-1"]
    assert {n.reason for n in forced.nodes} == {"forced"}


def test_stopped_containers_are_started(tmp_path: Path) -> None:
    p = project(tmp_path)
    obs = everything(p, running(p, "db"), running(p, "web", status="exited"),
                     running(p, "worker"))
    assert reconcile.up(p, obs).text() == textwrap.dedent("""\
        wait healthy db
        container start blog-web-1 (was exited)  <- wait healthy db
        """)


def test_scale_adds_and_removes_the_highest_numbers(tmp_path: Path) -> None:
    p = project(tmp_path)
    base = [running(p, "db"), running(p, "worker")]
    obs = everything(p, *base, running(p, "web", 1))
    up3 = reconcile.up(p, obs, reconcile.UpOptions(scale={"web": 3}, services=("web",),
                                                   no_deps=True))
    assert [n.id for n in up3.nodes] == [
        "container create blog-web-2", "container start blog-web-2",
        "container create blog-web-3", "container start blog-web-3"]
    obs3 = everything(p, *base, *(running(p, "web", n) for n in (1, 2, 3)))
    down1 = reconcile.up(p, obs3)
    assert down1.text() == textwrap.dedent("""\
        container remove blog-web-2 (scale 3 -> 1)
        container remove blog-web-3 (scale 3 -> 1)
        """)


def test_services_as_arguments_bring_their_dependencies(tmp_path: Path) -> None:
    p = project(tmp_path)
    plan = reconcile.up(p, everything(p), reconcile.UpOptions(services=("web",)))
    targets = {n.target for n in plan.nodes if n.kind == "container"}
    assert targets == {"blog-db-1", "blog-web-1"}
    alone = reconcile.up(p, everything(p), reconcile.UpOptions(services=("web",),
                                                                no_deps=True))
    assert [n.id for n in alone.nodes] == ["container create blog-web-1",
                                           "container start blog-web-1"]
    with pytest.raises(NotFound, match='no such service: "nope"'):
        reconcile.up(p, everything(p), reconcile.UpOptions(services=("nope",)))


def test_orphans_warn_or_are_removed(tmp_path: Path) -> None:
    p = project(tmp_path)
    bigger = project(tmp_path, STACK.replace("volumes:\n  data",
                                             "  extra: {image: busybox}\nvolumes:\n  data"))
    orphan = running(bigger, "extra")
    obs = everything(p, running(p, "db"), running(p, "web"), running(p, "worker"), orphan)
    plan = reconcile.up(p, obs)
    assert plan.empty and "blog-extra-1" in plan.warnings[0]
    removing = reconcile.up(p, obs, reconcile.UpOptions(remove_orphans=True))
    assert removing.text() == "container remove blog-extra-1 (orphan)\n"


def test_required_false_dependency_is_a_soft_edge(tmp_path: Path) -> None:
    p = project(tmp_path, """
        services:
          app:
            image: busybox
            depends_on:
              cache: {condition: service_started, required: false}
          cache: {image: busybox}
        """)
    plan = reconcile.up(p, Observed("blog", images={"busybox": "i"}))
    assert ("container start blog-app-1  <- container create blog-app-1, network create "
            "blog_default, wait started cache?") in plan.text()


def test_namespace_parent_recreated_recreates_the_child(tmp_path: Path) -> None:
    text = """
        services:
          net: {image: busybox, environment: {V: "1"}}
          side: {image: busybox, network_mode: "service:net"}
        """
    old = project(tmp_path, text)
    obs = Observed("blog", (running(old, "net"), running(old, "side")),
                   images={"busybox": "img1"})
    new = project(tmp_path, text.replace('V: "1"', 'V: "2"'))
    plan = reconcile.up(new, obs)
    assert plan.node("container recreate blog-side-1").reason == "net recreated"


def test_external_resources_must_exist(tmp_path: Path) -> None:
    p = project(tmp_path, """
        services:
          a: {image: busybox, networks: [outside]}
        networks:
          outside: {external: true, name: shared}
        """)
    with pytest.raises(NotFound, match='network "shared" is declared as external'):
        reconcile.up(p, Observed("blog", images={"busybox": "i"}))


def test_pull_policies(tmp_path: Path) -> None:
    p = project(tmp_path, "services:\n  a: {image: busybox}\n")
    present = Observed("blog", images={"busybox": "i"},
                       networks={"blog_default": ObservedNetwork("blog_default", "n")})
    assert "image pull" not in reconcile.up(p, present).text()
    assert "image pull busybox\n" in reconcile.up(
        p, present, reconcile.UpOptions(pull="always")).text()
    with pytest.raises(NotFound, match="pull_policy is never"):
        reconcile.up(p, Observed("blog"), reconcile.UpOptions(pull="never"))
    with pytest.raises(InvalidArgument, match="must be 0 or more"):
        reconcile.up(p, present, reconcile.UpOptions(scale={"a": -1}))


def test_pull_build_builds_what_has_a_build_section(tmp_path: Path) -> None:
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "Dockerfile").write_text("FROM busybox\n")
    p = project(tmp_path, "services:\n  app: {build: ./app}\n  db: {image: busybox}\n")
    present = Observed("blog", images={"busybox": "i", "blog-app": "j"},
                       networks={"blog_default": ObservedNetwork("blog_default", "n")})
    text = reconcile.up(p, present, reconcile.UpOptions(pull="build")).text()
    assert "image build blog-app" in text and "(--pull build)" in text
    assert "image pull" not in text  # db's image is present: its own policy (missing)
    text = reconcile.up(p, Observed("blog", images={"blog-app": "j"}),
                        reconcile.UpOptions(pull="build")).text()
    assert "image pull busybox" in text


def test_down_removes_dependents_first_then_networks_and_volumes(tmp_path: Path) -> None:
    p = project(tmp_path)
    obs = Observed("blog", (running(p, "db", anon={"/anon": "a" * 64}), running(p, "web"),
                            running(p, "worker")),
                   networks={"blog_default": ObservedNetwork(
                       "blog_default", "n", {translate.PROJECT: "blog"}),
                       "other": ObservedNetwork("other", "o")},
                   volumes={"blog_data": ObservedVolume("blog_data"),
                            "a" * 64: ObservedVolume("a" * 64, anonymous=True)})
    plan = reconcile.down("blog", obs, p, reconcile.DownOptions(volumes=True))
    removes = ("container remove blog-db-1, container remove blog-web-1, "
               "container remove blog-worker-1")
    assert plan.text() == textwrap.dedent(f"""\
        container remove blog-worker-1
        container remove blog-web-1  <- container remove blog-worker-1
        container remove blog-db-1  <- container remove blog-web-1
        network remove blog_default  <- {removes}
        volume remove {"a" * 64}  <- {removes}
        volume remove blog_data  <- {removes}
        """)
    without_file = reconcile.down("blog", obs)
    assert [n.id for n in without_file.nodes][-1] == "network remove blog_default"
