"""`extends` (same file, other files, chains, cycles) and `include` (short and long syntax,
environment, nesting, cycles, conflicts), through `load_merged`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from compose.errors import ConfigError
from compose.loader.options import LoadOptions
from compose.loader.parse import Loc
from compose.loader.raw import MergedConfig, load_merged


def write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def load(root: Path, files: dict[str, str], env: dict[str, str] | None = None,
         **options: Any) -> MergedConfig:
    write(root, files)
    return load_merged(LoadOptions(environment=env or {}, cwd=str(root), **options))


def error(root: Path, files: dict[str, str], env: dict[str, str] | None = None) -> str:
    with pytest.raises(ConfigError) as caught:
        load(root, files, env)
    return str(caught.value)


# --- extends ------------------------------------------------------------------------------

def test_extends_in_the_same_file_merges_like_override_files(tmp_path: Path) -> None:
    tree = load(tmp_path, {"compose.yaml": """\
services:
  common:
    image: busybox
    environment: {TZ: utc, PORT: 80}
    volumes: ['common-volume:/var/lib/backup/data:rw']
    security_opt: ['label:role:ROLE']
    command: [a]
  cli:
    extends:
      service: common
    environment: [PORT=8080]
    volumes: ['cli-volume:/var/lib/backup/data:ro']
    security_opt: ['label:user:USER', 'label:role:ROLE']
    command: [b]
  short:
    extends: cli
    ports: !reset []
    command: !reset null
"""}).tree
    services = tree["services"]
    assert services["cli"] == {
        "image": "busybox", "environment": {"TZ": "utc", "PORT": "8080"},
        "volumes": ["cli-volume:/var/lib/backup/data:ro"],
        "security_opt": ["label:role:ROLE", "label:user:USER"], "command": ["b"]}
    assert services["short"] == {key: value for key, value in services["cli"].items()
                                 if key != "command"}
    assert services["common"]["command"] == ["a"]
    # No node is shared between services: later stages may change one safely.
    assert services["short"]["environment"] is not services["cli"]["environment"]
    assert services["cli"].key_locs["image"] == Loc("compose.yaml", 3, 5)
    assert services["cli"].key_locs["command"] == Loc("compose.yaml", 14, 5)


def test_extends_chain_across_files_rebases_relative_paths(tmp_path: Path) -> None:
    tree = load(tmp_path, {
        "compose.yaml": "services:\n  web:\n    extends: {file: lib/common.yml, service: app}\n"
                        "    env_file: local.env\n    volumes: [./here:/here]\n",
        "lib/common.yml": "services:\n  app:\n"
                          "    extends: {file: ../base/base.yml, service: base}\n"
                          "    build: ./src\n    env_file: [app.env]\n"
                          "    volumes: ['./data:/data', 'named:/named', '../up:/up:ro']\n",
        "base/base.yml": "services:\n  base:\n    image: ${IMAGE:-busybox}\n    user: root\n"
                         "    volumes: [{type: bind, source: ./cfg, target: /cfg}]\n",
    }, {"IMAGE": "alpine"}).tree
    assert tree["services"] == {"web": {
        "image": "alpine", "user": "root",
        "volumes": [{"type": "bind", "source": str(tmp_path / "base/cfg"), "target": "/cfg"},
                    f"{tmp_path}/lib/data:/data", "named:/named", f"{tmp_path}/up:/up:ro",
                    "./here:/here"],
        "build": str(tmp_path / "lib/src"),
        "env_file": [str(tmp_path / "lib/app.env"), "local.env"]}}
    web = tree["services"]["web"]
    assert web.key_locs["user"] == Loc(str(Path("base/base.yml")), 4, 5)
    assert web.key_locs["build"] == Loc("lib/common.yml", 4, 5)


def test_extends_with_file_naming_the_same_file(tmp_path: Path) -> None:
    tree = load(tmp_path, {"compose.yaml": "services:\n  a:\n    image: x\n    build: ./b\n"
                                           "  b:\n    extends: {file: compose.yaml, service: a}\n"
                                           }).tree
    assert tree["services"]["b"] == {"image": "x", "build": "./b"}


@pytest.mark.parametrize(("files", "prefix", "fragment"), [
    ({"compose.yaml": "services:\n  web:\n    extends:\n      service: nope\n"},
     "compose.yaml:4: services.web.extends.service: ", 'service "nope" not found in compose.yaml'),
    ({"compose.yaml": "services:\n  web:\n    extends: {file: other.yml, service: x}\n"},
     "compose.yaml:3: services.web.extends.file: ", "Compose file other.yml not found"),
    ({"compose.yaml": "services:\n  web:\n    extends: {file: o.yml, service: x}\n",
      "o.yml": "services:\n  y: {image: a}\n"},
     "compose.yaml:3: services.web.extends.service: ", 'service "x" not found in o.yml'),
    ({"compose.yaml": "services:\n  a:\n    extends: b\n  b:\n    extends: c\n"
                      "  c:\n    extends: a\n"},
     "compose.yaml:7: services.c.extends: ", "extends cycle: a -> b -> c -> a"),
    ({"compose.yaml": "services:\n  a:\n    extends: a\n"},
     "compose.yaml:3: services.a.extends: ", "extends cycle: a -> a"),
    ({"compose.yaml": "services:\n  a:\n    extends: {file: o.yml, service: b}\n",
      "o.yml": "services:\n  b:\n    extends: {file: compose.yaml, service: a}\n"},
     "o.yml:3: services.b.extends: ", "extends cycle: a -> b (o.yml) -> a"),
    ({"compose.yaml": "services:\n  a:\n    extends: [b]\n"},
     "compose.yaml:3: services.a.extends: ", "extends must be a service name, or a mapping"),
    ({"compose.yaml": "services:\n  a:\n    extends: {file: x.yml}\n"},
     "compose.yaml:3: services.a.extends: ", "extends needs `service`"),
    ({"compose.yaml": "services:\n  a:\n    extends:\n      service: b\n      file: 3\n"
                      "  b: {}\n"},
     "compose.yaml:5: services.a.extends.file: ", "extends.file must be the path"),
    ({"compose.yaml": "services:\n  a:\n    extends: {file: bad.yml, service: b}\n",
      "bad.yml": "services:\n  b:\n    image: ${X\n"},
     "bad.yml:3: services.b.image: ", "invalid interpolation format"),
])
def test_broken_extends(tmp_path: Path, files: dict[str, str], prefix: str,
                        fragment: str) -> None:
    message = error(tmp_path, files)
    assert message.startswith(prefix), message
    assert fragment in message


# --- include ------------------------------------------------------------------------------

def test_include_short_syntax_copies_resources_and_rebases_paths(tmp_path: Path) -> None:
    root = tmp_path / "app"
    write(tmp_path, {
        "commons/compose.yaml": "name: ignored\nservices:\n  included-service:\n"
                                "    image: db:${DB_TAG}\n    build: ./db\n"
                                "    volumes: [./init:/init, data:/var/lib]\n"
                                "volumes:\n  data: {}\nsecrets:\n  s:\n    file: ./s.txt\n",
        "commons/.env": "DB_TAG=from-include-env\n",
    })
    result = load(root, {"compose.yaml": "include:\n  - ../commons/compose.yaml\nservices:\n"
                                         "  webapp:\n    build: .\n"})
    tree = result.tree
    assert "include" not in tree
    assert "name" not in tree  # an included project's name is not ours
    assert set(tree["services"]) == {"webapp", "included-service"}
    included = tree["services"]["included-service"]
    assert included == {"image": "db:from-include-env", "build": str(tmp_path / "commons/db"),
                        "volumes": [f"{tmp_path}/commons/init:/init", "data:/var/lib"]}
    assert tree["services"]["webapp"] == {"build": "."}
    assert tree["volumes"] == {"data": {}}
    assert tree["secrets"] == {"s": {"file": str(tmp_path / "commons/s.txt")}}
    assert result.name == "app"
    assert tree["services"].key_locs["included-service"].file == str(
        tmp_path / "commons/compose.yaml")


def test_including_project_environment_wins_over_included_env_files(tmp_path: Path) -> None:
    result = load(tmp_path, {
        "compose.yaml": "include:\n  - path: [inc/a.yaml, inc/b.yaml]\n"
                        "    project_directory: inc/proj\n    env_file: [inc/1.env, inc/2.env]\n",
        ".env": "SHARED=from-main-dotenv\n",
        "inc/1.env": "ONE=1\nSHARED=from-include\nTWO=one\n",
        "inc/2.env": "TWO=2-${ONE}\n",
        "inc/a.yaml": "services:\n  a:\n    image: ${SHARED}\n    env_file: x.env\n",
        "inc/b.yaml": "services:\n  a:\n    environment: ['T=${TWO}', 'S=${SHELL_VAR}']\n",
    }, {"SHELL_VAR": "sh"})
    assert result.tree["services"]["a"] == {
        "image": "from-main-dotenv", "env_file": str(tmp_path / "inc/proj/x.env"),
        "environment": ["T=2-1", "S=sh"]}
    assert "ONE" not in result.environment  # include env files stay with the included project


def test_nested_includes_and_identical_definitions(tmp_path: Path) -> None:
    tree = load(tmp_path, {
        "compose.yaml": "include: [a/compose.yaml, b/compose.yaml]\nservices:\n  top: {image: t}\n",
        "a/compose.yaml": "include: [../shared/compose.yaml]\nservices:\n  a: {image: a}\n",
        "b/compose.yaml": "include: [../shared/compose.yaml]\nservices:\n  b: {image: b}\n",
        "shared/compose.yaml": "services:\n  db: {image: pg, volumes: [./d:/d]}\n",
    }).tree
    assert list(tree["services"]) == ["top", "a", "db", "b"]
    assert tree["services"]["db"]["volumes"] == [f"{tmp_path}/shared/d:/d"]


def test_an_override_file_can_change_an_included_service(tmp_path: Path) -> None:
    tree = load(tmp_path, {
        "compose.yaml": "include: [inc.yaml]\n",
        "compose.override.yaml": "services:\n  db:\n    environment: {A: '1'}\n",
        "inc.yaml": "services:\n  db: {image: pg}\n",
    }).tree
    assert tree["services"]["db"] == {"image": "pg", "environment": {"A": "1"}}


def test_a_service_can_extend_an_included_one(tmp_path: Path) -> None:
    tree = load(tmp_path, {
        "compose.yaml": "include: [inc.yaml]\nservices:\n  web:\n    extends: base\n"
                        "    tty: true\n",
        "inc.yaml": "services:\n  base: {image: pg}\n",
    }).tree
    assert tree["services"]["web"] == {"image": "pg", "tty": True}


@pytest.mark.parametrize(("files", "prefix", "fragment"), [
    ({"compose.yaml": "include: [a.yaml]\n", "a.yaml": "include: [b.yaml]\n",
      "b.yaml": "include:\n  - compose.yaml\n"},
     "b.yaml:2: include[0]: ", "include cycle: compose.yaml -> a.yaml -> b.yaml -> compose.yaml"),
    ({"compose.yaml": "include: [compose.yaml]\n"},
     "compose.yaml:1: include[0]: ", "include cycle: compose.yaml -> compose.yaml"),
    ({"compose.yaml": "include: [inc.yaml]\nservices:\n  db:\n    image: mine\n",
      "inc.yaml": "services:\n  db:\n    image: theirs\n"},
     "compose.yaml:3: services.db: ",
     'service "db" is also defined by the included project at inc.yaml:2 (include[0])'),
    ({"compose.yaml": "include: [a.yaml, b.yaml]\n",
      "a.yaml": "networks:\n  n: {}\n", "b.yaml": "networks:\n  n: {internal: true}\n"},
     "a.yaml:2: networks.n: ", 'network "n" is also defined by the included project at b.yaml:2'),
    ({"compose.yaml": "include:\n  - missing.yaml\n"},
     "compose.yaml:2: include[0]: ", "Compose file missing.yaml not found"),
    ({"compose.yaml": "include: a.yaml\n"},
     "compose.yaml:1: include: ", "include must be a list"),
    ({"compose.yaml": "include:\n  - project_directory: x\n"},
     "compose.yaml:2: include[0]: ", "include needs `path`"),
    ({"compose.yaml": "include:\n  - path: a.yaml\n    envfile: x\n"},
     "compose.yaml:3: include[0]: ", "unknown include attribute 'envfile'"),
    ({"compose.yaml": "include:\n  - path: [a.yaml, 3]\n"},
     "compose.yaml:2: include[0].path: ", "path must be a path or a list of paths"),
    ({"compose.yaml": "include:\n  - path: a.yaml\n    env_file: gone.env\n",
      "a.yaml": "services: {}\n"},
     "compose.yaml:2: include[0].env_file: ", "env file gone.env not found"),
    ({"compose.yaml": "include:\n  - inc.yaml\n", "inc.yaml": "services:\n  x:\n"
                                                                "    image: ${NEED:?set NEED}\n"},
     "inc.yaml:3: services.x.image: ", "required variable NEED is missing a value: set NEED"),
    ({"compose.yaml": "include: [inc/c.yaml]\n", "inc/c.yaml": "services: {}\n",
      "inc/.env": "BROKEN='\n"},
     "inc/.env:1: BROKEN: ", "unterminated"),
])
def test_broken_includes(tmp_path: Path, files: dict[str, str], prefix: str,
                         fragment: str) -> None:
    message = error(tmp_path, files)
    assert message.startswith(prefix), message
    assert fragment in message
