"""Builds and pulls in the plan (`reconcile.up`, `imageplan.build_plan`) and the builder's
arguments from a `build:` section (`imaging.build_spec`): inline YAML in, plan text or spec
out."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from compose import imageplan, imaging, reconcile, translate
from compose.loader import load
from compose.loader.options import LoadOptions
from compose.model import Project
from compose.observe import Observed, ObservedContainer, ObservedNetwork
from engine.errors import NotFound, Unavailable

STACK = """
services:
  app:
    build: ./app
  worker:
    image: blog-app
    depends_on: [app]
"""
NET = {"blog_default": ObservedNetwork("blog_default", "n")}


def project(tmp_path: Path, text: str = STACK) -> Project:
    (tmp_path / "compose.yaml").write_text(textwrap.dedent(text))
    return load(LoadOptions(environment={"HOME": "/root"}, cwd=str(tmp_path),
                            project_name="blog"))


def container(p: Project, service: str, image_id: str = "img1",
              status: str = "running") -> ObservedContainer:
    name = translate.container_name(p, service, 1)
    return ObservedContainer(
        id=f"id-{name}", name=name, service=service, number=1,
        config_hash=translate.config_hash(p, service),
        image=translate.default_image(p, p.services[service]), image_id=image_id,
        status=status)


def test_a_missing_built_image_is_built_once_for_every_service_using_it(
        tmp_path: Path) -> None:
    p = project(tmp_path)
    plan = reconcile.up(p, Observed("blog", networks=NET))
    assert plan.text() == textwrap.dedent("""\
        image build blog-app (missing)
        container create blog-app-1  <- image build blog-app
        container start blog-app-1  <- container create blog-app-1
        container create blog-worker-1  <- image build blog-app
        wait started app  <- container start blog-app-1
        container start blog-worker-1  <- container create blog-worker-1, wait started app
        """)


def test_present_image_no_build_and_build_flags(tmp_path: Path) -> None:
    p = project(tmp_path)
    up = Observed("blog", (container(p, "app"), container(p, "worker")), NET,
                  images={"blog-app": "img1"})
    assert reconcile.up(p, up).empty
    plan = reconcile.up(p, up, reconcile.UpOptions(build=True))
    assert plan.text() == textwrap.dedent("""\
        image build blog-app (--build)
        container refresh blog-app-1 (recreated if the image changed)  <- image build blog-app
        wait started app  <- container refresh blog-app-1
        container refresh blog-worker-1 (recreated if the image changed)  \
<- image build blog-app, wait started app
        """)
    assert plan.node("container refresh blog-app-1").old == "id-blog-app-1"
    assert reconcile.up(p, up, reconcile.UpOptions(no_build=True)).empty
    with pytest.raises(NotFound, match=r'service "app": image "blog-app" is not present and '
                       r"--no-build was given \(build it first: shipyard build app\)"):
        reconcile.up(p, Observed("blog", networks=NET), reconcile.UpOptions(no_build=True))
    # --no-recreate wins: nothing is compared, the build still runs.
    plan = reconcile.up(p, up, reconcile.UpOptions(build=True, no_recreate=True))
    assert plan.text() == "image build blog-app (--build)\n"


def test_a_stopped_container_is_refreshed_then_started(tmp_path: Path) -> None:
    p = project(tmp_path, "services:\n  app:\n    build: ./app\n")
    obs = Observed("blog", (container(p, "app", status="exited"),), NET,
                   images={"blog-app": "img1"})
    plan = reconcile.up(p, obs, reconcile.UpOptions(build=True))
    assert plan.text().splitlines()[1:] == [
        "container refresh blog-app-1 (recreated if the image changed)  <- image build blog-app",
        "container start blog-app-1 (was exited)  <- container refresh blog-app-1, "
        "image build blog-app"]


def test_a_new_image_built_elsewhere_recreates(tmp_path: Path) -> None:
    p = project(tmp_path, "services:\n  app:\n    build: ./app\n")
    obs = Observed("blog", (container(p, "app", image_id="old"),), NET,
                   images={"blog-app": "new"})
    assert reconcile.up(p, obs).text().splitlines()[0] == \
        "container recreate blog-app-1 (image changed)"


def test_pull_policies_with_build(tmp_path: Path) -> None:
    p = project(tmp_path, """
        services:
          always_built: {build: ./a, pull_policy: build}
          named: {build: ./b, image: "registry.test/b:1", pull_policy: always}
          derived: {build: ./c}
        """)
    present = {"blog-always_built": "i1", "registry.test/b:1": "i2", "blog-derived": "i3"}
    text = reconcile.up(p, Observed("blog", networks=NET, images=present)).text()
    assert "image build blog-always_built (pull_policy build)\n" in text
    assert "image pull registry.test/b:1\n" in text           # image + always: pulled
    assert "image pull blog-derived" not in text               # present, never pulled
    assert "image build blog-derived" not in text
    text = reconcile.up(p, Observed("blog", networks=NET, images=present),
                        reconcile.UpOptions(pull="always")).text()
    assert "image pull registry.test/b:1\n" in text and "image pull blog-derived" not in text


def test_image_services_pull_per_policy(tmp_path: Path) -> None:
    p = project(tmp_path, """
        services:
          a: {image: "registry.test/a:1", pull_policy: never}
          b: {image: "registry.test/b:1", pull_policy: if_not_present}
        """)
    with pytest.raises(NotFound, match=r'"registry\.test/a:1" is not present and '
                       r"pull_policy is never"):
        reconcile.up(p, Observed("blog", networks=NET))
    obs = Observed("blog", (container(p, "a"), container(p, "b")), NET,
                   images={"registry.test/a:1": "img1"})
    assert reconcile.up(p, obs).text() == textwrap.dedent("""\
        image pull registry.test/b:1 (missing)
        container refresh blog-b-1 (recreated if the image changed)  <- image pull registry.test/b:1
        """)


def test_build_plan_lists_buildable_services_only(tmp_path: Path) -> None:
    p = project(tmp_path)
    assert imageplan.build_plan(p).text() == "image build blog-app\n"
    assert imageplan.build_plan(p, ("worker",)).empty


def test_build_spec_from_a_build_section(tmp_path: Path) -> None:
    p = project(tmp_path, """
        services:
          web:
            image: example/web:dev
            build:
              context: ./web
              dockerfile: docker/Dockerfile.dev
              args: {A: "1", B: null}
              target: prod
              labels: {team: blue}
              network: host
              extra_hosts: ["db:10.0.0.2"]
              shm_size: 64m
              tags: ["example/web:extra"]
              no_cache: true
          api:
            build: {context: ./api, dockerfile_inline: "FROM busybox\\n"}
        """)
    spec = imaging.build_spec(p, "web", build_args={"B": "2"}, pull=True)
    assert spec.image == "example/web:dev"
    assert spec.context == str(tmp_path / "web")
    assert spec.dockerfile == str(tmp_path / "web" / "docker" / "Dockerfile.dev")
    assert spec.tags == ("example/web:dev", "example/web:extra")
    assert dict(spec.build_args) == {"A": "1", "B": "2"}
    assert dict(spec.labels) == {"team": "blue", "com.docker.compose.project": "blog",
                                 "com.docker.compose.service": "web"}
    assert (spec.target, spec.network, spec.extra_hosts, spec.shm_size) == (
        "prod", "host", (("db", "10.0.0.2"),), 64 * 1024 * 1024)
    assert spec.no_cache and spec.pull
    api = imaging.build_spec(p, "api")
    assert (api.image, api.tags, api.dockerfile_inline) == (
        "blog-api", ("blog-api",), "FROM busybox\n")
    assert not api.no_cache and not api.pull


def test_build_spec_refuses_what_the_builder_lacks(tmp_path: Path) -> None:
    p = project(tmp_path, """
        services:
          remote: {build: "https://github.com/example/app.git"}
          secret:
            build: {context: ., secrets: [token]}
        secrets:
          token: {file: ./token}
        """)
    with pytest.raises(Unavailable, match="remote build contexts are not supported"):
        imaging.build_spec(p, "remote")
    with pytest.raises(Unavailable, match=r'service "secret": build.secrets is not supported'):
        imaging.build_spec(p, "secret")
