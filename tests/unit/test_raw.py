"""`load_merged` end to end: the merged tree, warnings, variables, --no-interpolate."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from compose.errors import ConfigError
from compose.loader.interpolate import Variable
from compose.loader.options import LoadOptions
from compose.loader.parse import Loc, YMap, YSeq
from compose.loader.raw import MergedConfig, load_merged

BASE = """\
name: shop
x-defaults: &defaults
  restart: unless-stopped
  environment:
    TZ: ${TZ:-UTC}
services:
  web:
    <<: *defaults
    image: nginx:${NGINX_TAG}
    ports: ["${WEB_PORT:-8080}:80"]
    command: echo $$HOME
    depends_on: [api]
  api:
    <<: *defaults
    build: ./api
    environment:
      - DB_URL=postgres://db/${DB_NAME:?set DB_NAME}
    deploy:
      replicas: ${REPLICAS:-2}
"""

OVERRIDE = """\
services:
  web:
    ports:
      - target: 80
        published: "9090"
    environment:
      DEBUG: "1"
  api:
    environment: !override
      ONLY: this
"""


def load(root: Path, files: dict[str, str], env: dict[str, str] | None = None,
         **options: Any) -> MergedConfig:
    for name, text in files.items():
        (root / name).write_text(text)
    return load_merged(LoadOptions(environment=env or {}, cwd=str(root), **options))


def test_a_project_end_to_end(tmp_path: Path) -> None:
    result = load(tmp_path, {"compose.yaml": BASE, "compose.override.yaml": OVERRIDE},
                  {"DB_NAME": "shop", "NGINX_TAG": "1.25"})
    assert result.name == "shop"
    assert result.working_dir == str(tmp_path)
    assert result.environment["COMPOSE_PROJECT_NAME"] == "shop"
    services = result.tree["services"]
    assert services["web"] == {
        "restart": "unless-stopped", "environment": {"TZ": "UTC", "DEBUG": "1"},
        "image": "nginx:1.25", "ports": ["8080:80", {"target": 80, "published": "9090"}],
        "command": "echo $HOME", "depends_on": ["api"]}
    assert services["api"] == {"restart": "unless-stopped", "environment": {"ONLY": "this"},
                               "build": "./api", "deploy": {"replicas": 2}}
    assert services["web"].key_locs["environment"] == Loc("compose.override.yaml", 6, 5)
    assert services["web"]["environment"].key_locs["TZ"] == Loc("compose.yaml", 5, 5)
    assert result.warnings == ()


def test_warnings_for_unset_variables_and_obsolete_version(tmp_path: Path) -> None:
    result = load(tmp_path, {"compose.yaml": "version: '3.8'\n" + BASE.replace("name: shop\n",
                                                                                 "")},
                  {"DB_NAME": "x"})
    assert result.warnings == (
        "compose.yaml:1: the attribute `version` is obsolete and ignored; remove it to avoid "
        "confusion",
        'The "NGINX_TAG" variable is not set. Defaulting to a blank string.',
    )


def test_variables_for_config_variables(tmp_path: Path) -> None:
    result = load(tmp_path, {"compose.yaml": BASE}, {"DB_NAME": "x", "NGINX_TAG": "1"})
    assert {name: (v.required, v.default) for name, v in result.variables.items()} == {
        "TZ": (False, "UTC"), "NGINX_TAG": (False, None), "WEB_PORT": (False, "8080"),
        "DB_NAME": (True, None), "REPLICAS": (False, "2")}
    assert result.variables["DB_NAME"] == Variable("DB_NAME", required=True,
                                                   loc=Loc("compose.yaml", 17, 9))


def test_no_interpolate_keeps_expressions_but_merges(tmp_path: Path) -> None:
    result = load(tmp_path, {"compose.yaml": BASE, "compose.override.yaml": OVERRIDE},
                  interpolate=False)
    web = result.tree["services"]["web"]
    assert web["image"] == "nginx:${NGINX_TAG}"
    assert web["command"] == "echo $$HOME"
    assert web["ports"] == ["${WEB_PORT:-8080}:80", {"target": 80, "published": "9090"}]
    assert result.tree["services"]["api"]["deploy"] == {"replicas": "${REPLICAS:-2}"}
    assert result.warnings == ()
    assert "DB_NAME" in result.variables  # no error: nothing is substituted


def test_the_tree_is_unshared(tmp_path: Path) -> None:
    result = load(tmp_path, {"compose.yaml": BASE + "  worker:\n    extends: api\n"},
                  {"DB_NAME": "x", "NGINX_TAG": "1"})
    seen: set[int] = set()

    def walk(node: Any) -> None:
        if isinstance(node, YMap | YSeq):
            assert id(node) not in seen
            seen.add(id(node))
            for child in node.values() if isinstance(node, YMap) else node:
                walk(child)
            if isinstance(node, YMap):
                assert not node.tags

    walk(result.tree)
    assert result.tree["services"]["worker"] == result.tree["services"]["api"]


def test_required_variable_error_points_at_the_value(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, {"compose.yaml": BASE}, {"NGINX_TAG": "1"})
    assert str(caught.value) == ("compose.yaml:17: services.api.environment[0]: required "
                                 "variable DB_NAME is missing a value: set DB_NAME")


def test_errors_in_the_override_file_name_it(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, {"compose.yaml": BASE,
                        "compose.override.yaml": "services:\n  web:\n    image: ${oops\n"},
             {"DB_NAME": "x"})
    assert str(caught.value).startswith(
        'compose.override.yaml:3: services.web.image: invalid interpolation format in "${oops"')
