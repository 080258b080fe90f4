"""Every example stack loads with `shipyard config`, and what it builds is there: each build
context has its Dockerfile, every COPY source exists in the context, every script the
images run is executable and parses. Fast: nothing is built or run."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import pytest

from compose.cli import main

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
COMPOSE_FILES = sorted(EXAMPLES.glob("*/compose.yaml"))
STACKS = [path.parent.name for path in COMPOSE_FILES]


def shipyard(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main(list(argv))
    return code, out.getvalue(), err.getvalue()


def canonical(stack: str) -> dict:
    code, out, err = shipyard("-f", str(EXAMPLES / stack / "compose.yaml"), "config",
                              "--format", "json")
    assert code == 0, err
    return json.loads(out)


def dockerfile_instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for line in path.read_text().splitlines():
        if line.lstrip().startswith("#") or (not pending and not line.strip()):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        op, _, rest = (pending + line).strip().partition(" ")
        out.append((op.upper(), rest.strip()))
        pending = ""
    return out


def test_there_are_examples() -> None:
    assert {"wordpress", "wordpress-local", "wordpress-links"} <= set(STACKS)
    assert len(STACKS) >= 5


@pytest.mark.parametrize("stack", STACKS)
def test_loads_quietly(stack: str) -> None:
    code, out, err = shipyard("-f", str(EXAMPLES / stack / "compose.yaml"), "config", "-q")
    assert (code, out, err) == (0, "", "")


@pytest.mark.parametrize("stack", STACKS)
def test_build_contexts_resolve(stack: str) -> None:
    for name, service in canonical(stack)["services"].items():
        build = service.get("build")
        if build is None:
            continue
        # a built image is tagged, so that other stacks (and reruns) find it by name
        assert service.get("image"), f"{stack}/{name}: build without image:"
        context = Path(build["context"])
        assert context.is_dir(), f"{stack}/{name}: no context {context}"
        dockerfile = context / build.get("dockerfile", "Dockerfile")
        assert dockerfile.is_file(), f"{stack}/{name}: no {dockerfile}"
        instructions = dockerfile_instructions(dockerfile)
        assert instructions[0][0] == "FROM", f"{dockerfile}: does not start with FROM"
        for op, rest in instructions:
            if op not in ("COPY", "ADD"):
                continue
            words = [w for w in rest.split() if not w.startswith("--")]
            for source in words[:-1]:
                assert (context / source).exists(), f"{dockerfile}: COPY {source}: missing"


@pytest.mark.parametrize("stack", STACKS)
def test_scripts_are_executable_and_parse(stack: str) -> None:
    for path in sorted((EXAMPLES / stack).rglob("*")):
        if not path.is_file():
            continue
        first = path.read_bytes()[:64]
        if path.suffix == ".py":
            compile(path.read_text(), str(path), "exec")  # a SyntaxError fails the test
        if first.startswith(b"#!"):
            assert os.access(path, os.X_OK), f"{path}: has a #! line but is not executable"
            shell = first.split(b"\n")[0].decode()
            if re.search(r"\b(ba)?sh\b", shell):
                result = subprocess.run(["bash", "-n", str(path)], capture_output=True,
                                        text=True)
                assert result.returncode == 0, f"{path}: {result.stderr}"


def test_base_and_flagship_scripts_parse() -> None:
    for path in (EXAMPLES / "base" / "make-debian-image", EXAMPLES / "run-flagship"):
        assert os.access(path, os.X_OK), f"{path} is not executable"
        result = subprocess.run(["bash", "-n", str(path)], capture_output=True, text=True)
        assert result.returncode == 0, f"{path}: {result.stderr}"


def _shape(project: dict) -> dict:
    """What a user of the stack relies on: services, their variables (names), volumes,
    ports, dependencies and healthchecks."""
    services = {}
    for name, service in project["services"].items():
        services[name] = {
            "environment": sorted(service.get("environment") or {}),
            # the targets may differ: Debian keeps WordPress's content elsewhere
            "volumes": sorted(v.get("source") for v in service.get("volumes", [])),
            "ports": sorted((p.get("published"), p["target"]) for p in service.get("ports", [])),
            "depends_on": {k: v.get("condition") for k, v in
                           (service.get("depends_on") or {}).items()},
            "healthcheck": bool(service.get("healthcheck")),
        }
    return {"services": services, "volumes": sorted(project.get("volumes") or {})}


def test_wordpress_local_has_the_shape_of_wordpress() -> None:
    """Same service names, variables, volumes, ports and dependencies as the Docker Hub
    stack: only where the images come from differs."""
    official, local = canonical("wordpress"), canonical("wordpress-local")
    assert _shape(local) == _shape(official)
    for project in (official, local):
        assert project["services"]["wordpress"]["depends_on"]["db"]["condition"] == \
            "service_healthy"
        assert project["services"]["db"]["healthcheck"]["test"][0] in ("CMD", "CMD-SHELL")


def test_links_variant_reaches_the_database_as_mysql() -> None:
    project = canonical("wordpress-links")
    wordpress = project["services"]["wordpress"]
    assert "db:mysql" in wordpress["links"]
    assert wordpress["environment"]["WORDPRESS_DB_HOST"] == "mysql"
    local = canonical("wordpress-local")
    for name in ("db", "wordpress"):
        assert project["services"][name]["build"]["context"] == \
            local["services"][name]["build"]["context"]
        assert project["services"][name]["image"] == local["services"][name]["image"]
