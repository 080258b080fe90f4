"""Which files are read, the project directory, the environment, project name and profiles."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from compose.errors import ConfigError
from compose.loader.options import LoadOptions
from compose.loader.raw import MergedConfig, load_merged, normalize_name

SERVICE = "services:\n  web:\n    image: busybox\n"


def write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def load(cwd: Path, env: dict[str, str] | None = None, **options: Any) -> MergedConfig:
    return load_merged(LoadOptions(environment=env or {}, cwd=str(cwd), **options))


def error(cwd: Path, env: dict[str, str] | None = None, **options: Any) -> str:
    with pytest.raises(ConfigError) as caught:
        load(cwd, env, **options)
    return str(caught.value)


def test_default_file_and_override_in_the_working_directory(tmp_path: Path) -> None:
    write(tmp_path, {"compose.yaml": SERVICE,
                     "compose.override.yaml": "services:\n  web:\n    tty: true\n"})
    result = load(tmp_path)
    assert result.config_files == (str(tmp_path / "compose.yaml"),
                                   str(tmp_path / "compose.override.yaml"))
    assert result.working_dir == str(tmp_path)
    assert result.tree["services"]["web"] == {"image": "busybox", "tty": True}
    assert result.warnings == ()


def test_default_file_is_searched_in_parent_directories(tmp_path: Path) -> None:
    write(tmp_path, {"docker-compose.yml": SERVICE, "docker-compose.override.yml":
                     "services:\n  web:\n    init: true\n", ".env": "TAG=from-parent\n",
                     "a/b/.keep": ""})
    result = load(tmp_path / "a" / "b")
    assert result.config_files == (str(tmp_path / "docker-compose.yml"),
                                   str(tmp_path / "docker-compose.override.yml"))
    assert result.working_dir == str(tmp_path)
    assert result.environment["TAG"] == "from-parent"
    assert result.name == normalize_name(tmp_path.name)


def test_several_default_names_warn_and_the_first_wins(tmp_path: Path) -> None:
    write(tmp_path, {"compose.yaml": SERVICE, "docker-compose.yaml": "services: {}\n"})
    result = load(tmp_path)
    assert result.config_files == (str(tmp_path / "compose.yaml"),)
    assert len(result.warnings) == 1
    assert "Found multiple config files" in result.warnings[0]
    assert f"using {tmp_path / 'compose.yaml'}" in result.warnings[0]


def test_files_given_with_f_in_order_and_stdin(tmp_path: Path) -> None:
    write(tmp_path, {"sub/base.yaml": SERVICE, "sub/more.yaml":
                     "services:\n  web:\n    image: alpine\n"})
    result = load(tmp_path, files=("sub/base.yaml", "-", "sub/more.yaml"),
                  stdin="services:\n  web:\n    tty: true\n")
    assert result.config_files == (str(tmp_path / "sub/base.yaml"), "-",
                                   str(tmp_path / "sub/more.yaml"))
    assert result.working_dir == str(tmp_path / "sub")
    assert result.tree["services"]["web"] == {"image": "alpine", "tty": True}
    assert result.tree["services"]["web"].key_locs["tty"].file == "<stdin>"
    only_stdin = load(tmp_path, files=("-",), stdin=SERVICE)
    assert only_stdin.working_dir == str(tmp_path)


def test_compose_file_variable_from_shell_and_from_dotenv(tmp_path: Path) -> None:
    write(tmp_path, {"a.yaml": SERVICE, "b.yaml": "services:\n  web:\n    tty: true\n",
                     "c.yaml": "services:\n  web:\n    init: true\n"})
    result = load(tmp_path, {"COMPOSE_FILE": "a.yaml" + os.pathsep + "b.yaml"})
    assert [Path(f).name for f in result.config_files] == ["a.yaml", "b.yaml"]
    result = load(tmp_path, {"COMPOSE_FILE": "a.yaml,c.yaml", "COMPOSE_PATH_SEPARATOR": ","})
    assert result.tree["services"]["web"] == {"image": "busybox", "init": True}
    write(tmp_path, {".env": "COMPOSE_FILE=a.yaml:b.yaml\n"})
    result = load(tmp_path)
    assert result.tree["services"]["web"] == {"image": "busybox", "tty": True}
    # -f wins over COMPOSE_FILE.
    assert load(tmp_path, files=("c.yaml",)).config_files == (str(tmp_path / "c.yaml"),)


def test_project_directory_option(tmp_path: Path) -> None:
    write(tmp_path, {"proj/compose.yaml": SERVICE, "proj/.env": "A=proj\n", ".env": "A=cwd\n"})
    result = load(tmp_path, project_directory="proj")
    assert result.working_dir == str(tmp_path / "proj")
    assert result.config_files == (str(tmp_path / "proj/compose.yaml"),)
    assert result.environment["A"] == "proj"
    assert result.name == "proj"


def test_environment_precedence(tmp_path: Path) -> None:
    write(tmp_path, {"compose.yaml": "services:\n  web:\n    image: ${IMAGE}:${TAG}\n",
                     ".env": "IMAGE=from-dotenv\nTAG=dotenv\n",
                     "one.env": "IMAGE=one\nTAG=one\nX=${TAG}-x\n",
                     "two.env": "TAG=two\nY=${X}\n"})
    assert load(tmp_path).tree["services"]["web"]["image"] == "from-dotenv:dotenv"
    assert load(tmp_path, {"TAG": "shell"}).tree["services"]["web"]["image"] == \
        "from-dotenv:shell"
    result = load(tmp_path, {"TAG": "shell"}, env_files=("one.env", "two.env"))
    assert result.tree["services"]["web"]["image"] == "one:shell"
    assert result.environment["X"] == "shell-x"   # the shell wins inside env files too
    assert result.environment["Y"] == "shell-x"   # values of earlier --env-file files
    assert "IMAGE" in result.environment and result.environment["IMAGE"] == "one"


def test_project_name_precedence(tmp_path: Path) -> None:
    write(tmp_path, {"My Project_dir/a.yaml": "name: first\n" + SERVICE,
                     "My Project_dir/b.yaml": "name: ${SUFFIX:-second}\n",
                     "My Project_dir/c.yaml": SERVICE})
    root = tmp_path / "My Project_dir"
    assert load(root, files=("c.yaml",)).name == "myproject_dir"
    assert load(root, files=("a.yaml", "b.yaml")).name == "second"
    assert load(root, {"SUFFIX": "third"}, files=("a.yaml", "b.yaml")).name == "third"
    assert load(root, files=("b.yaml", "a.yaml")).name == "first"
    assert load(root, {"COMPOSE_PROJECT_NAME": "env-name"}, files=("a.yaml",)).name == \
        "env-name"
    result = load(root, {"COMPOSE_PROJECT_NAME": "env-name"}, files=("a.yaml",),
                  project_name="flag_name")
    assert result.name == "flag_name"
    assert result.environment["COMPOSE_PROJECT_NAME"] == "flag_name"


def test_project_name_is_available_to_interpolation(tmp_path: Path) -> None:
    write(tmp_path, {"compose.yaml": "name: demo\nservices:\n  web:\n"
                                     "    container_name: ${COMPOSE_PROJECT_NAME}-web\n"})
    assert load(tmp_path).tree["services"]["web"]["container_name"] == "demo-web"


@pytest.mark.parametrize(("raw", "normal"), [
    ("MyApp", "myapp"), ("my app.v2", "myappv2"), ("__x-Y", "x-y"), ("-._9", "9"),
])
def test_normalize_name(raw: str, normal: str) -> None:
    assert normalize_name(raw) == normal


def test_profiles(tmp_path: Path) -> None:
    write(tmp_path, {"compose.yaml": SERVICE})
    assert load(tmp_path).profiles == ()
    assert load(tmp_path, {"COMPOSE_PROFILES": "a, b,,a"}).profiles == ("a", "b")
    assert load(tmp_path, {"COMPOSE_PROFILES": "a"}, profiles=("x", "y", "x")).profiles == \
        ("x", "y")
    write(tmp_path, {".env": "COMPOSE_PROFILES=debug\n"})
    assert load(tmp_path).profiles == ("debug",)


# --- broken inputs --------------------------------------------------------------------------

def test_no_compose_file_anywhere(tmp_path: Path) -> None:
    message = error(tmp_path)
    assert message.startswith("no configuration file provided: none of compose.yaml")
    assert "use -f" in message


@pytest.mark.parametrize(("files", "options", "expected"), [
    ({}, {"files": ("missing.yaml",)}, "Compose file missing.yaml not found"),
    ({"d/x": ""}, {"files": ("d",)}, "d is a directory, not a Compose file"),
    ({"compose.yaml": ""}, {}, "compose.yaml: the Compose file is empty"),
    ({"compose.yaml": "# only a comment\n"}, {}, "compose.yaml: the Compose file is empty"),
    ({"compose.yaml": "- a\n- b\n"}, {},
     "compose.yaml:1: the top level of a Compose file must be a mapping, found a list"),
    ({"compose.yaml": "just text\n"}, {},
     "compose.yaml:1: the top level of a Compose file must be a mapping, found the scalar"),
    ({"compose.yaml": "services:\n  a: 1\n  a: 2\n"}, {},
     "compose.yaml:3: invalid YAML: found duplicate key 'a'"),
    ({"compose.yaml": SERVICE}, {"files": ("-",)}, "-f - reads the Compose file from standard"),
    ({"compose.yaml": SERVICE}, {"env_files": ("nope.env",)},
     "env file nope.env not found (given with --env-file)"),
    ({"compose.yaml": SERVICE, ".env": "A='open\n"}, {}, ".env:1: A: unterminated"),
    ({"compose.yaml": SERVICE, ".env": "=x\n"}, {}, '.env:1: invalid line "=x"'),
])
def test_broken_files(tmp_path: Path, files: dict[str, str], options: dict[str, Any],
                      expected: str) -> None:
    write(tmp_path, files)
    message = error(tmp_path, **options)
    assert message.startswith(expected), message


def test_unreadable_encoding(tmp_path: Path) -> None:
    (tmp_path / "compose.yaml").write_bytes(b"services:\n  web:\n    image: \xff\n")
    assert error(tmp_path) == "compose.yaml: the Compose file is not valid UTF-8 text"


@pytest.mark.parametrize(("env", "options", "compose", "expected"), [
    ({}, {"project_name": "Bad"}, SERVICE,
     'invalid project name "Bad" (given with -p): it must contain only lowercase letters'),
    ({}, {"project_name": "_x"}, SERVICE, 'invalid project name "_x" (given with -p)'),
    ({"COMPOSE_PROJECT_NAME": "a.b"}, {}, SERVICE,
     'invalid project name "a.b" (from COMPOSE_PROJECT_NAME)'),
    ({}, {}, "services: {}\nname: My App\n",
     'compose.yaml:2: name: invalid project name "My App": it must contain only'),
    ({"N": "UP"}, {}, "name: ${N}\n", 'compose.yaml:1: name: invalid project name "UP"'),
    ({}, {}, "name: ${N:?name the project}\n",
     "compose.yaml:1: name: required variable N is missing a value: name the project"),
    ({}, {}, "name: [a]\n", "compose.yaml:1: name: name must be a string"),
])
def test_invalid_project_names(tmp_path: Path, env: dict[str, str], options: dict[str, Any],
                               compose: str, expected: str) -> None:
    write(tmp_path, {"compose.yaml": compose})
    message = error(tmp_path, env, **options)
    assert message.startswith(expected), message


def test_directory_name_that_cannot_become_a_project_name(tmp_path: Path) -> None:
    write(tmp_path, {"___/compose.yaml": SERVICE})
    message = error(tmp_path / "___")
    assert message.startswith('cannot derive a project name from the directory name "___"')
    assert load(tmp_path / "___", project_name="ok").name == "ok"
