"""The validated cache of loaded projects (compose/loader/cache.py): a second load with the
same inputs is a hit that runs no loader; every change to what the load read (files,
probes, environment, options) makes it a miss whose project shows the change; failed loads
are not cached; a damaged or unusable cache is no cache."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from compose.errors import ConfigError
from compose.loader import cache
from compose.loader.options import LoadOptions
from compose.model import Project

REPO = Path(__file__).resolve().parents[2]


class Loads:
    """Loads of projects under `tmp_path` through the cache of one temporary engine root."""

    def __init__(self, tmp_path: Path) -> None:
        self.root = tmp_path / "engine"
        self.root.mkdir()
        self.env = {"SHIPYARD_ROOT": str(self.root), "HOME": str(tmp_path / "home"),
                    "PATH": "/usr/bin:/bin"}
        self.dir = cache.cache_dir(self.env)
        assert self.dir == str(self.root / "cache" / "projects")

    def options(self, cwd: Path, env: dict[str, str] | None = None,
                **given: Any) -> LoadOptions:
        return LoadOptions(environment={**self.env, **(env or {})}, cwd=str(cwd), **given)

    def load(self, cwd: Path, services: tuple[str, ...] = (),
             env: dict[str, str] | None = None, **given: Any) -> Project:
        return cache.load(self.options(cwd, env, **given), services, directory=self.dir)

    def valid(self, cwd: Path, env: dict[str, str] | None = None, **given: Any) -> bool:
        """Whether the cache holds an entry that a load of these inputs would be handed."""
        name = cache.cached_name(self.options(cwd, env, **given), directory=self.dir)
        return name is not None

    def entries(self) -> list[Path]:
        directory = Path(self.dir or "")
        return sorted(p for p in directory.iterdir() if not p.name.startswith(".")) \
            if directory.is_dir() else []


@pytest.fixture
def loads(tmp_path: Path) -> Loads:
    return Loads(tmp_path)


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def rewrite_keeping_stat(path: Path, text: str) -> None:
    """New content of the same size and the same mtime: only the bytes tell."""
    before = path.stat()
    assert len(text.encode()) == before.st_size
    path.write_text(text)
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert path.stat().st_mtime_ns == before.st_mtime_ns


def image(project: Project, service: str = "web") -> str | None:
    return project.services[service].image


def changed(loads: Loads, project_dir: Path, change: Any, **given: Any) -> Project:
    """Loads (a miss, then a valid entry), applies `change`, checks that the entry is no
    longer valid, and returns the next load (which must store a valid entry again)."""
    loads.load(project_dir, **given)
    assert loads.valid(project_dir, **given)
    change()
    assert not loads.valid(project_dir, **given)
    project = loads.load(project_dir, **given)
    assert loads.valid(project_dir, **given)
    return project


# ---- a hit runs no loader ------------------------------------------------------------------

PROGRAM = """
import os, sys
from compose.cli import Context, build_parser
from compose.project import load_project, project_name
args = build_parser("up").parse_args(["up", *sys.argv[2:]])
ctx = Context(dict(os.environ), os.getcwd())
if sys.argv[1] == "name":
    print(project_name(args, ctx))
else:
    project = load_project(args, ctx)
    print(project.name, sorted(project.services), project.canonical == {} )
print("parsed" if "compose.loader.parse" in sys.modules else "not parsed",
      "yaml" if "yaml" in sys.modules else "no yaml")
"""


def run_cli_load(project_dir: Path, root: Path, *args: str, what: str = "load"
                 ) -> subprocess.CompletedProcess[str]:
    env = {"PATH": "/usr/bin:/bin", "HOME": str(root.parent), "SHIPYARD_ROOT": str(root),
           "PYTHONPATH": str(REPO), "PYTHONDONTWRITEBYTECODE": "1"}
    return subprocess.run([sys.executable, "-c", PROGRAM, what, *args], cwd=project_dir, env=env,
                          capture_output=True, text=True, check=True)


def test_a_second_load_in_a_new_process_is_a_hit_that_parses_nothing(tmp_path: Path) -> None:
    root = tmp_path / "engine"
    root.mkdir()
    project_dir = tmp_path / "blog"
    write(project_dir / "compose.yaml",
          "version: '3'\nservices:\n  web:\n    image: nginx\n  db:\n    image: mysql\n")
    first = run_cli_load(project_dir, root)
    second = run_cli_load(project_dir, root)
    assert first.stdout == "blog ['db', 'web'] False\nparsed yaml\n"
    assert second.stdout == "blog ['db', 'web'] False\nnot parsed no yaml\n"
    # The warnings come with the project and are printed again.
    assert "`version` is obsolete" in first.stderr
    assert second.stderr == first.stderr
    entry, = (root / "cache" / "projects").iterdir()
    assert entry.stat().st_mode & 0o777 == 0o600
    assert (root / "cache" / "projects").stat().st_mode & 0o777 == 0o700
    # Edited: the next process loads again and sees it.
    write(project_dir / "compose.yaml", "services:\n  api:\n    image: nginx\n")
    third = run_cli_load(project_dir, root)
    assert third.stdout == "blog ['api'] False\nparsed yaml\n"
    assert third.stderr == ""


def test_the_project_name_comes_from_a_valid_entry_without_parsing(tmp_path: Path) -> None:
    root = tmp_path / "engine"
    root.mkdir()
    project_dir = tmp_path / "shop"
    write(project_dir / "compose.yaml", "services:\n  web:\n    image: nginx\n")
    write(project_dir / ".env", "COMPOSE_PROJECT_NAME=fromdotenv\n")
    assert run_cli_load(project_dir, root, what="name").stdout == "fromdotenv\nparsed yaml\n"
    run_cli_load(project_dir, root)  # a whole load leaves an entry
    assert run_cli_load(project_dir, root, what="name").stdout == \
        "fromdotenv\nnot parsed no yaml\n"
    write(project_dir / ".env", "COMPOSE_PROJECT_NAME=renamed\n")
    assert run_cli_load(project_dir, root, what="name").stdout == "renamed\nparsed yaml\n"


def test_a_hit_equals_the_loaded_project(loads: Loads, tmp_path: Path) -> None:
    write(tmp_path / "p" / "compose.yaml", "services:\n  web:\n    image: nginx\n"
          "    ports: ['8080:80']\n    environment: [A=1]\nvolumes:\n  data: {}\n")
    write(tmp_path / "p" / ".env", "FROM_DOTENV=yes\nSHADOWED=by-file\n")
    env = {"SECRET_TOKEN": "s3cr3t-value", "SHADOWED": "by-shell"}
    first = loads.load(tmp_path / "p", env=env)
    second = loads.load(tmp_path / "p", env=env)
    assert loads.valid(tmp_path / "p", env=env)
    assert second == first and second is not first
    assert second.canonical == first.canonical
    assert list(second.environment.items()) == list(first.environment.items())
    assert second.environment["FROM_DOTENV"] == "yes"
    assert second.environment["SHADOWED"] == "by-shell"
    assert second.environment["COMPOSE_PROJECT_NAME"] == "p"
    # The shell's variables (secrets, often) are not written to the cache.
    entry, = loads.entries()
    assert b"s3cr3t-value" not in entry.read_bytes()


def test_the_loader_code_is_all_in_the_fingerprint(tmp_path: Path) -> None:
    """Every module of this tree that a load imports is a file the key stats."""
    write(tmp_path / "compose.yaml", "services:\n  web:\n    image: nginx\n    build: .\n")
    code = f"""
import sys
from compose.loader.options import LoadOptions
before = set(sys.modules)
from compose.loader import load
load(LoadOptions(environment={{}}, cwd={str(tmp_path)!r}))
for name in sorted(set(sys.modules) - before):
    print(getattr(sys.modules[name], "__file__", None) or "")
"""
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                         text=True, check=True).stdout.split()
    ours = {str(Path(f).resolve()) for f in out
            if f.startswith(str(REPO)) and "site-packages" not in f}
    assert ours and ours <= {str(Path(f).resolve()) for f in cache.code_files()}
    assert any(f.endswith("compose-spec.json") for f in cache.code_files())
    assert any(f.endswith("yaml/__init__.py") for f in cache.code_files())


def test_the_default_root_is_the_engines() -> None:
    from engine.layout import DEFAULT_ROOT

    assert cache.DEFAULT_ROOT == DEFAULT_ROOT


# ---- every input the load read makes a miss when it changes -------------------------------

def test_editing_the_compose_file_same_size_same_mtime(loads: Loads, tmp_path: Path) -> None:
    path = write(tmp_path / "p" / "compose.yaml", "services:\n  web:\n    image: aaaa\n")
    project = changed(loads, tmp_path / "p", lambda: rewrite_keeping_stat(
        path, "services:\n  web:\n    image: bbbb\n"))
    assert image(project) == "bbbb"


def test_editing_an_included_file(loads: Loads, tmp_path: Path) -> None:
    write(tmp_path / "p" / "compose.yaml",
          "include: [lib/db.yaml]\nservices:\n  web:\n    image: nginx\n")
    lib = write(tmp_path / "p" / "lib" / "db.yaml", "services:\n  db:\n    image: mysql1\n")
    project = changed(loads, tmp_path / "p", lambda: rewrite_keeping_stat(
        lib, "services:\n  db:\n    image: mysql2\n"))
    assert image(project, "db") == "mysql2"


def test_editing_a_file_named_by_extends(loads: Loads, tmp_path: Path) -> None:
    write(tmp_path / "p" / "compose.yaml",
          "services:\n  web:\n    extends: {file: ../base.yaml, service: app}\n")
    base = write(tmp_path / "base.yaml", "services:\n  app:\n    image: old\n")
    project = changed(loads, tmp_path / "p", lambda: base.write_text(
        "services:\n  app:\n    image: new\n    user: nobody\n"))
    assert image(project) == "new" and project.services["web"].user == "nobody"


def test_editing_an_env_file(loads: Loads, tmp_path: Path) -> None:
    write(tmp_path / "p" / "compose.yaml",
          "services:\n  web:\n    image: nginx\n    env_file: [web.env]\n")
    env_file = write(tmp_path / "p" / "web.env", "MODE=one\n")
    project = changed(loads, tmp_path / "p", lambda: rewrite_keeping_stat(
        env_file, "MODE=two\n"))
    assert project.services["web"].environment["MODE"] == "two"


def test_creating_an_optional_env_file(loads: Loads, tmp_path: Path) -> None:
    write(tmp_path / "p" / "compose.yaml", "services:\n  web:\n    image: nginx\n"
          "    env_file: [{path: extra.env, required: false}]\n")
    project = changed(loads, tmp_path / "p", lambda: write(
        tmp_path / "p" / "extra.env", "LATE=yes\n"))
    assert project.services["web"].environment["LATE"] == "yes"


def test_editing_dot_env(loads: Loads, tmp_path: Path) -> None:
    write(tmp_path / "p" / "compose.yaml", "services:\n  web:\n    image: nginx:${TAG}\n")
    dotenv = write(tmp_path / "p" / ".env", "TAG=1.0\n")
    project = changed(loads, tmp_path / "p", lambda: rewrite_keeping_stat(dotenv, "TAG=2.0\n"))
    assert image(project) == "nginx:2.0"


def test_creating_dot_env(loads: Loads, tmp_path: Path) -> None:
    write(tmp_path / "p" / "compose.yaml", "services:\n  web:\n    image: nginx:${TAG:-0}\n")
    project = changed(loads, tmp_path / "p", lambda: write(tmp_path / "p" / ".env", "TAG=3\n"))
    assert image(project) == "nginx:3"


def test_creating_an_override_file_beside_the_compose_file(loads: Loads,
                                                           tmp_path: Path) -> None:
    write(tmp_path / "p" / "compose.yaml", "services:\n  web:\n    image: nginx\n")
    project = changed(loads, tmp_path / "p", lambda: write(
        tmp_path / "p" / "compose.override.yaml", "services:\n  web:\n    image: caddy\n"))
    assert image(project) == "caddy"
    assert project.config_files[-1].endswith("compose.override.yaml")


def test_a_compose_file_appearing_nearer_than_the_one_found_upwards(loads: Loads,
                                                                    tmp_path: Path) -> None:
    write(tmp_path / "p" / "compose.yaml", "services:\n  web:\n    image: outer\n")
    inner = tmp_path / "p" / "sub"
    inner.mkdir()
    loads.load(inner)
    assert loads.valid(inner)
    write(inner / "compose.yml", "services:\n  web:\n    image: inner\n")
    assert not loads.valid(inner)
    assert image(loads.load(inner)) == "inner"


def test_changing_a_variable_used_in_interpolation(loads: Loads, tmp_path: Path) -> None:
    write(tmp_path / "p" / "compose.yaml", "services:\n  web:\n    image: nginx:${TAG}\n")
    assert image(loads.load(tmp_path / "p", env={"TAG": "a"})) == "nginx:a"
    assert loads.valid(tmp_path / "p", env={"TAG": "a"})
    assert not loads.valid(tmp_path / "p", env={"TAG": "b"})
    assert image(loads.load(tmp_path / "p", env={"TAG": "b"})) == "nginx:b"
    assert image(loads.load(tmp_path / "p", env={"TAG": "a"})) == "nginx:a"  # both kept


def test_per_command_variables_do_not_split_the_cache_unless_a_file_reads_them(
        loads: Loads, tmp_path: Path) -> None:
    # `sudo shipyard up -d` and `sudo shipyard down` differ in SUDO_COMMAND only.
    p = tmp_path / "p"
    path = write(p / "compose.yaml", "services:\n  web:\n    image: nginx\n")
    up = {"SUDO_COMMAND": "/usr/bin/shipyard up -d", "_": "/usr/bin/shipyard"}
    down = {"SUDO_COMMAND": "/usr/bin/shipyard down", "_": "/usr/bin/shipyard"}
    loads.load(p, env=up)
    assert loads.valid(p, env=down)
    hit = loads.load(p, env=down)
    assert hit.environment["SUDO_COMMAND"] == "/usr/bin/shipyard down"
    assert not loads.valid(p, env={"_": "/usr/bin/shipyard"})  # which ones are set: keyed
    # A file that names one: its value is part of the entry.
    path.write_text("services:\n  web:\n    image: nginx\n"
                    "    labels: {by: '${SUDO_COMMAND:-nobody}'}\n")
    assert loads.load(p, env=up).services["web"].labels["by"] == "/usr/bin/shipyard up -d"
    assert loads.valid(p, env=up) and not loads.valid(p, env=down)
    assert loads.load(p, env=down).services["web"].labels["by"] == "/usr/bin/shipyard down"
    # So is one named in an env file.
    write(p / ".env", "WHO=${SUDO_COMMAND}\n")
    path.write_text("services:\n  web:\n    image: nginx\n    labels: {by: '${WHO}'}\n")
    assert loads.load(p, env=up).services["web"].labels["by"] == "/usr/bin/shipyard up -d"
    assert loads.load(p, env=down).services["web"].labels["by"] == "/usr/bin/shipyard down"


@pytest.mark.parametrize("spelled", [
    r"${SUDO_COMM\x41ND:-nobody}", r"${SUDO_COMM\u0041ND:-nobody}",
    r"${SUDO_COMM\U00000041ND:-nobody}", "${SUDO_\\\n      COMMAND:-nobody}"])
def test_a_per_command_variable_spelled_with_yaml_escapes_is_read(
        loads: Loads, tmp_path: Path, spelled: str) -> None:
    # A double-quoted scalar's escapes spell the name without its bytes in the file.
    p = tmp_path / "p"
    write(p / "compose.yaml", f'services:\n  web:\n    image: nginx\n'
          f'    labels: {{by: "{spelled}"}}\n')
    up = {"SUDO_COMMAND": "/usr/bin/shipyard up -d"}
    down = {"SUDO_COMMAND": "/usr/bin/shipyard down"}
    assert loads.load(p, env=up).services["web"].labels["by"] == "/usr/bin/shipyard up -d"
    assert not loads.valid(p, env=down)
    assert loads.load(p, env=down).services["web"].labels["by"] == "/usr/bin/shipyard down"


def test_the_loader_code_reads_no_per_command_variable() -> None:
    for file in cache.code_files():
        if file.endswith(".py") and not file.endswith("cache.py"):
            text = Path(file).read_text()
            for name in cache.VOLATILE:
                assert f'"{name}"' not in text and f"'{name}'" not in text, (file, name)


def test_home_in_a_tilde_path_is_read_from_the_process(loads: Loads, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    # `-f ~/...` is expanded with the process's own HOME, not the load's environment.
    for name in ("a", "b"):
        write(tmp_path / name / "compose.yaml", f"services:\n  web:\n    image: {name}\n")
    monkeypatch.setenv("HOME", str(tmp_path / "a"))
    assert image(loads.load(tmp_path, files=("~/compose.yaml",))) == "a"
    assert loads.valid(tmp_path, files=("~/compose.yaml",))
    monkeypatch.setenv("HOME", str(tmp_path / "b"))
    assert not loads.valid(tmp_path, files=("~/compose.yaml",))
    assert image(loads.load(tmp_path, files=("~/compose.yaml",))) == "b"


def test_options_are_part_of_the_key(loads: Loads, tmp_path: Path) -> None:
    p = tmp_path / "p"
    write(p / "compose.yaml", "services:\n  web:\n    image: nginx:${TAG:-none}\n"
          "  debug:\n    image: busybox\n    profiles: [dev]\n")
    write(p / "a.env", "TAG=from-a\n")
    plain = loads.load(p)
    assert sorted(plain.services) == ["web"] and plain.name == "p"
    assert sorted(loads.load(p, profiles=("dev",)).services) == ["debug", "web"]
    assert loads.load(p, project_name="other").name == "other"
    assert image(loads.load(p, env_files=(str(p / "a.env"),))) == "nginx:from-a"
    assert sorted(loads.load(p, ("debug",)).services) == ["debug", "web"]
    # And each again, from the cache, still distinct.
    assert sorted(loads.load(p).services) == ["web"]
    assert sorted(loads.load(p, profiles=("dev",)).services) == ["debug", "web"]
    assert loads.load(p, project_name="other").name == "other"
    assert loads.load(p).name == "p"
    assert len(loads.entries()) == 5


def feed_fifo(path: Path, text: str) -> threading.Thread:
    """A thread that writes `text` once into the FIFO at `path` (when a reader opens it)."""
    def write_once() -> None:
        with open(path, "w") as fifo:
            fifo.write(text)
    thread = threading.Thread(target=write_once, daemon=True)
    thread.start()
    return thread


def test_a_compose_file_replaced_by_a_fifo_is_not_read_by_the_check(loads: Loads,
                                                                    tmp_path: Path) -> None:
    # Reading a pipe to compare it would take what the load is to read (and could block).
    p = tmp_path / "p"
    text = "services:\n  web:\n    image: nginx\n"
    path = write(p / "compose.yaml", text)
    named = (str(path),)  # found by -f: the search for a default name takes regular files
    loads.load(p, files=named)
    path.unlink()
    os.mkfifo(path)
    writer = feed_fifo(path, text)
    assert not loads.valid(p, files=named)
    assert image(loads.load(p, files=named)) == "nginx"  # the load got the bytes
    writer.join(5)
    assert not writer.is_alive()


# ---- what is never cached, and a cache that cannot be used ---------------------------------

def test_a_failed_load_is_not_cached(loads: Loads, tmp_path: Path) -> None:
    path = write(tmp_path / "p" / "compose.yaml", "services:\n  web:\n    imagee: nginx\n")
    for _ in range(2):
        with pytest.raises(ConfigError, match=r"compose.yaml:3: services.web"):
            loads.load(tmp_path / "p")
    assert loads.entries() == []
    path.write_text("services:\n  web:\n    image: nginx\n")
    assert image(loads.load(tmp_path / "p")) == "nginx"
    # Broken again after a good load: the error, not the old project.
    path.write_text("services:\n  web:\n    ports: ['x:y:z:w']\n")
    with pytest.raises(ConfigError, match=r"compose.yaml:3"):
        loads.load(tmp_path / "p")


def test_reading_stdin_is_not_cached(loads: Loads, tmp_path: Path) -> None:
    text = "services:\n  web:\n    image: nginx\n"
    assert image(loads.load(tmp_path, files=("-",), stdin=text)) == "nginx"
    assert loads.entries() == []


def test_a_load_that_reads_a_pipe_is_not_cached(loads: Loads, tmp_path: Path) -> None:
    # `-f <(...)`, `-f /dev/stdin`: the next command's pipe is another one.
    fifo = tmp_path / "compose.yaml"
    os.mkfifo(fifo)
    writer = feed_fifo(fifo, "services:\n  web:\n    image: nginx\n")
    assert image(loads.load(tmp_path, files=(str(fifo),))) == "nginx"
    writer.join(5)
    assert loads.entries() == []


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty", "other key"])
def test_a_damaged_entry_is_ignored(loads: Loads, tmp_path: Path, damage: str) -> None:
    write(tmp_path / "p" / "compose.yaml", "services:\n  web:\n    image: nginx\n")
    write(tmp_path / "q" / "compose.yaml", "services:\n  api:\n    image: caddy\n")
    loads.load(tmp_path / "p")
    entry, = loads.entries()
    data = entry.read_bytes()
    if damage == "truncate":
        entry.write_bytes(data[:len(data) - 20])
    elif damage == "garbage":
        entry.write_bytes(data[:6] + os.urandom(len(data) - 6))
    elif damage == "empty":
        entry.write_bytes(b"")
    else:  # a valid entry of another load, under this load's name
        loads.load(tmp_path / "q")
        other = next(e for e in loads.entries() if e != entry)
        entry.write_bytes(other.read_bytes())
    assert not loads.valid(tmp_path / "p")
    assert sorted(loads.load(tmp_path / "p").services) == ["web"]
    assert loads.valid(tmp_path / "p")  # and rewritten whole


def test_an_unwritable_cache_directory_is_ignored(loads: Loads, tmp_path: Path) -> None:
    write(tmp_path / "p" / "compose.yaml", "services:\n  web:\n    image: nginx\n")
    (loads.root / "cache").write_text("not a directory")
    for _ in range(2):
        assert image(loads.load(tmp_path / "p")) == "nginx"
    assert not loads.valid(tmp_path / "p")


def test_no_engine_root_means_no_cache(tmp_path: Path) -> None:
    env = {"SHIPYARD_ROOT": str(tmp_path / "missing")}
    assert cache.cache_dir(env) is None
    write(tmp_path / "compose.yaml", "services:\n  web:\n    image: nginx\n")
    options = LoadOptions(environment=env, cwd=str(tmp_path))
    assert image(cache.load(options, directory=None)) == "nginx"
    assert not (tmp_path / "missing").exists()


def test_entries_in_a_directory_others_may_write_are_not_trusted(loads: Loads,
                                                                 tmp_path: Path) -> None:
    write(tmp_path / "p" / "compose.yaml", "services:\n  web:\n    image: nginx\n")
    loads.load(tmp_path / "p")
    assert loads.valid(tmp_path / "p")
    os.chmod(loads.dir or "", 0o777)
    assert not loads.valid(tmp_path / "p")
    assert image(loads.load(tmp_path / "p")) == "nginx"


def test_the_number_of_entries_is_bounded(loads: Loads, tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cache, "MAX_ENTRIES", 3)
    write(tmp_path / "p" / "compose.yaml", "services:\n  web:\n    image: nginx:${N}\n")
    for n in range(6):
        for entry in loads.entries():  # older than the next one, whatever the clock's grain
            old = entry.stat().st_mtime - 10
            os.utime(entry, (old, old))
        assert image(loads.load(tmp_path / "p", env={"N": str(n)})) == f"nginx:{n}"
    assert len(loads.entries()) == 3
    assert [n for n in range(6) if loads.valid(tmp_path / "p", env={"N": str(n)})] == [3, 4, 5]


def test_old_entries_are_dropped(loads: Loads, tmp_path: Path) -> None:
    write(tmp_path / "p" / "compose.yaml", "services:\n  web:\n    image: nginx:${N}\n")
    loads.load(tmp_path / "p", env={"N": "1"})
    entry, = loads.entries()
    month_ago = entry.stat().st_mtime - 30 * 24 * 3600
    os.utime(entry, (month_ago, month_ago))
    loads.load(tmp_path / "p", env={"N": "2"})
    assert entry not in loads.entries() and len(loads.entries()) == 1


def test_the_recorded_functions_are_restored_after_a_load_that_fails(loads: Loads,
                                                                    tmp_path: Path) -> None:
    import builtins
    import io
    import pathlib

    before = (builtins.open, io.open, os.open, os.stat, os.lstat, os.listdir, os.scandir,
              os.getcwd, os.path.isfile, os.path.exists, os.path.realpath,
              os.path.expanduser, pathlib.Path.exists, pathlib.Path.is_file)
    write(tmp_path / "p" / "compose.yaml", "services:\n  web:\n    image: [nginx]\n")
    with pytest.raises(ConfigError):
        loads.load(tmp_path / "p")
    write(tmp_path / "p" / "compose.yaml", "services:\n  web:\n    image: nginx\n")
    loads.load(tmp_path / "p")
    after = (builtins.open, io.open, os.open, os.stat, os.lstat, os.listdir, os.scandir,
             os.getcwd, os.path.isfile, os.path.exists, os.path.realpath,
             os.path.expanduser, pathlib.Path.exists, pathlib.Path.is_file)
    assert after == before
