"""What keeps a command's start cheap, checked in real processes: the dataclass code cache
(compose.codecache), the imports each step may and may not pull in, PyYAML's deferred
regular expressions, the schema compiled on demand, and the time stamps `ps` reads."""

from __future__ import annotations

import dataclasses
import marshal
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from compose import codecache
from compose.commands.humanize import _epoch
from compose.loader import validate
from tests.support.imports import loaded_after

REPO = Path(__file__).resolve().parents[2]

CLASS = '''
import dataclasses
from dataclasses import dataclass, field

@dataclass(frozen=True, slots=True)
class Point:
    """A point."""
    x: int
    y: int = 0
    tags: tuple = field(default=(), compare=False)
'''


def run_python(code: str, tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """`code` in a new interpreter from this tree, bytecode cached under tmp_path/pyc."""
    environ = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    environ.update(PYTHONPYCACHEPREFIX=str(tmp_path / "pyc"), PYTHONPATH=str(REPO), **env)
    return subprocess.run([sys.executable, "-c", code], cwd=REPO, env=environ,
                          capture_output=True, text=True, check=True)


def cache_file(tmp_path: Path) -> Path:
    compose_dir = Path(str(tmp_path / "pyc") + str(REPO / "compose"))
    return compose_dir / f"dataclasses.{sys.implementation.cache_tag}.marshal"


def make_point(namespace: dict) -> type:
    exec(compile(CLASS, "<test>", "exec"), namespace)
    return namespace["Point"]


# ---- the dataclass code cache ----------------------------------------------------------------

def test_classes_made_through_the_cache_behave_like_plain_dataclasses(tmp_path: Path) -> None:
    plain = make_point({})
    path = str(tmp_path / "cache.marshal")
    codecache.install(path)
    try:
        for _ in range(2):  # a miss (compiled), then a hit in the same process
            cached = make_point({})
            a, b = cached(1, 2, tags=("x",)), cached(1, 2)
            assert a == b and hash(a) == hash(b) and a != cached(2, 2)
            assert repr(a) == repr(plain(1, 2, tags=("x",))) == "Point(x=1, y=2, tags=('x',))"
            assert [f.name for f in dataclasses.fields(cached)] == ["x", "y", "tags"]
            assert dataclasses.replace(a, y=5) == cached(1, 5)
            with pytest.raises(dataclasses.FrozenInstanceError):
                a.x = 3  # type: ignore[misc]
            with pytest.raises(TypeError):
                cached()  # x is required
            assert cached.__slots__ == ("x", "y", "tags")
    finally:
        codecache.uninstall()
    assert "exec" not in vars(dataclasses)


def test_the_cache_is_written_at_exit_and_used_by_the_next_process(tmp_path: Path) -> None:
    program = (f"from compose import codecache\ncodecache.install()\n{CLASS}\n"
               "print(repr(Point(1, 2)))")
    assert run_python(program, tmp_path).stdout == "Point(x=1, y=2, tags=())\n"
    path = cache_file(tmp_path)
    data = path.read_bytes()
    entries = marshal.loads(data[len(codecache._magic()):])
    assert len(entries) >= 5  # __init__, __repr__, __eq__, __hash__, __setattr__, ...
    # Plant other code under the key of Point's __repr__: the next process must run it,
    # which shows that it took the code from the file instead of compiling the text.
    namespace: dict = {}
    texts: list[str] = []
    original = codecache._exec

    def spy(source, globals=None, locals=None, /):  # type: ignore[no-untyped-def]
        texts.append(source)
        original(source, globals, locals)

    codecache.install(str(tmp_path / "other.marshal"))
    dataclasses.exec = spy  # type: ignore[attr-defined]
    try:
        make_point(namespace)
    finally:
        codecache.uninstall()
    repr_text = next(t for t in texts if "def __repr__" in t)
    planted = repr_text.replace("return ", "return 'from the cache: ' + ", 1)
    entries[codecache._key(repr_text)] = marshal.dumps(compile(planted, "<string>", "exec",
                                                               dont_inherit=True))
    path.write_bytes(codecache._magic() + marshal.dumps(entries))
    assert run_python(program, tmp_path).stdout.startswith("from the cache: ")


def test_a_damaged_or_foreign_cache_is_ignored(tmp_path: Path) -> None:
    program = (f"from compose import codecache\ncodecache.install()\n{CLASS}\n"
               "print(Point(3) == Point(3, 0), repr(Point(3)))")
    run_python(program, tmp_path)
    path = cache_file(tmp_path)
    for damaged in (b"garbage", b"\x00\x00\x00\x00" + path.read_bytes()[4:],
                    codecache._magic() + b"\xff\xfe"):
        path.write_bytes(damaged)
        assert run_python(program, tmp_path).stdout == "True Point(x=3, y=0, tags=())\n"
    assert path.read_bytes().startswith(codecache._magic())  # rewritten whole


def test_nothing_is_written_when_bytecode_writing_is_off(tmp_path: Path) -> None:
    program = f"from compose import codecache\ncodecache.install()\n{CLASS}\nPoint(1)"
    run_python(program, tmp_path, PYTHONDONTWRITEBYTECODE="1")
    assert not cache_file(tmp_path).exists()


def test_an_unwritable_cache_directory_is_no_failure(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    codecache.install(str(blocker / "sub" / "cache.marshal"))  # its parent is a file
    try:
        make_point({})(1)
        codecache._write()
    finally:
        codecache.uninstall()


def test_installed_before_dataclasses_is_imported_it_patches_it_on_import(
        tmp_path: Path) -> None:
    program = ("import sys\nfrom compose import codecache\ncodecache.install()\n"
               "print('dataclasses' in sys.modules)\nimport dataclasses\n"
               "print(dataclasses.exec is codecache._exec)")
    assert run_python(program, tmp_path).stdout == "False\nTrue\n"


def test_a_command_that_makes_no_dataclass_does_not_import_dataclasses(
        tmp_path: Path) -> None:
    program = ("import sys; from compose.cli import main; sys.argv[1:] = ['version']; main()\n"
               "print('dataclasses' in sys.modules, 'inspect' in sys.modules)")
    assert run_python(program, tmp_path).stdout.endswith("False False\n")


def test_dataclasses_imports_inspect_only_for_a_class_without_a_docstring(
        tmp_path: Path) -> None:
    # The cache stands in for `inspect` while `dataclasses` loads: it needs it only to
    # write the docstring of a class that has none, as it would without the stand-in.
    program = ("import sys\nfrom compose import codecache\ncodecache.install()\n"
               f"{CLASS}\nprint('inspect' in sys.modules)\n"
               "@dataclass\nclass Bare:\n    x: int\n    y: str = ''\n"
               "print(Bare.__doc__, 'inspect' in sys.modules)\n"
               "import inspect\nprint(type(inspect).__name__, inspect.isclass(Bare))")
    assert run_python(program, tmp_path).stdout == (
        "False\nBare(x: int, y: str = '') True\nmodule True\n")


def test_the_steps_of_up_and_down_do_not_import_inspect() -> None:
    loaded = loaded_after("from compose import codecache\ncodecache.install()\n"
                          "import compose.commands.up, compose.commands.down, compose.execute, "
                          "compose.reconcile, compose.observe, compose.helpers, "
                          "engine.containers, engine.networks, engine.volumes, engine.images")
    assert "dataclasses" in loaded
    assert not {"inspect", "ast", "dis", "tokenize"} & loaded


def test_up_down_and_ps_import_no_datetime_shutil_or_the_sqlite3_package() -> None:
    # datetime (~2-3 ms: the pure-Python module runs, then the C one replaces it), shutil
    # (~3 ms, with bz2 and lzma), the sqlite3 package (its date adapters import datetime)
    loaded = loaded_after("from compose import codecache\ncodecache.install()\n"
                          "import compose.commands.up, compose.commands.down, compose.execute, "
                          "compose.commands.ps, compose.commands.humanize, compose.helpers, "
                          "engine.containers, engine.networks, engine.volumes, engine.images, "
                          "engine.prepare, engine.snapshots, engine.netns, engine.endpoints, "
                          "engine.runtime.launch\n"
                          "from engine.store import Store\nfrom engine.images import now_rfc3339\n"
                          "now_rfc3339()")
    assert "engine.store" in loaded
    assert not {"datetime", "shutil", "sqlite3", "bz2", "lzma"} & loaded
    # The image formats (5 dataclasses) are for making, pulling and saving images.
    assert "engine.imageformat" not in loaded


def test_the_cli_process_caches_and_prints_the_same(tmp_path: Path) -> None:
    compose_file = tmp_path / "compose.yaml"
    compose_file.write_text("services:\n  web:\n    image: nginx\n    ports: ['80:80']\n")
    program = ("import sys; from compose.cli import main; "
               f"sys.argv[1:] = ['-f', {str(compose_file)!r}, 'config']; sys.exit(main())")
    first = run_python(program, tmp_path).stdout
    assert cache_file(tmp_path).exists()
    assert run_python(program, tmp_path).stdout == first
    assert "published: \"80\"" in first


# ---- imports -------------------------------------------------------------------------------

def test_the_cli_module_imports_neither_argparse_nor_dataclasses() -> None:
    loaded = loaded_after("import compose.cli")
    assert not {"argparse", "dataclasses", "inspect", "importlib.util"} & loaded


def test_building_a_parser_does_not_import_shutil() -> None:
    loaded = loaded_after("from compose.cli import build_parser\n"
                          "build_parser('up').parse_args(['up', '-d'])")
    assert "argparse" in loaded and "shutil" not in loaded


def test_the_spec_module_loads_no_seccomp_ctypes_or_platform() -> None:
    loaded = loaded_after("import engine.spec, engine.requests")
    assert not {"ctypes", "platform", "resource", "engine.runtime.seccomp",
                "engine.runtime.caps"} & loaded


def test_ps_time_stamps_need_no_strptime() -> None:
    loaded = loaded_after("from compose.commands import humanize\n"
                          "humanize._epoch('2024-05-01T12:34:56.5Z')")
    assert "_strptime" not in loaded


# ---- PyYAML's deferred regular expressions -------------------------------------------------

def test_pyyaml_patterns_compile_on_first_use_and_re_compile_is_restored() -> None:
    code = ("import re\noriginal = re.compile\n"
            "from compose.loader.parse import parse_yaml\nimport yaml.reader, yaml.resolver\n"
            "pattern = yaml.reader.Reader.NON_PRINTABLE\n"
            "print(type(pattern).__name__, re.compile is original)\n"
            "print(bool(pattern.search('a\\x01')), pattern.search('abc'))\n"
            "print(yaml.safe_load('when: 2024-05-01\\non: yes'))\n"
            "print(parse_yaml('a: 2024-05-01\\nb: yes\\nc: 0o17', 'f.yaml'))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                         text=True, check=True).stdout.splitlines()
    assert out == ["_LazyPattern True", "True None",
                   "{'when': datetime.date(2024, 5, 1), True: True}",
                   "{'a': '2024-05-01', 'b': 'yes', 'c': 15}"]


# ---- the schema, compiled on demand --------------------------------------------------------

def test_the_schema_uses_only_keywords_the_fast_validator_implements() -> None:
    assert validate.unsupported_keywords(validate.load_schema()) == set()
    schema = {"type": "object", "properties": {"a": {"oneOf": [{"type": "string"}]}},
              "$defs": {"b": {"items": {"not": {}}}}}
    assert validate.unsupported_keywords(schema) == {"oneOf", "not"}


def test_violations_deep_in_references_are_found_by_the_lazy_compiler() -> None:
    from compose.loader.parse import parse_yaml

    tree = parse_yaml("services:\n  web:\n    image: x\n    healthcheck:\n"
                      "      retries: many\n    ports:\n      - {target: 80, mode: 3}\n"
                      "    deploy: {resources: {limits: {pids: x}}}\n", "c.yaml")
    fast = [(p.path, p.line) for p in validate.schema_problems(tree)]
    assert fast == [("services.web.healthcheck.retries", 5), ("services.web.ports[0].mode", 7),
                    ("services.web.ports[0].mode", 7),  # its type, and not one of the enum
                    ("services.web.deploy.resources.limits.pids", 8)]
    reference = validate.schema_problems(tree, "jsonschema")
    assert [str(p) for p in validate.schema_problems(tree)] == [str(p) for p in reference]


# ---- time stamps ---------------------------------------------------------------------------

@pytest.mark.parametrize("stamp", [
    "2024-05-01T12:34:56.123456789Z", "2024-05-01T12:34:56Z", "2024-1-2T3:4:5Z",
    "2024-13-01T00:00:00Z", "2024-02-30T00:00:00Z", "2024-05-01 12:34:56Z", "garbage",
    "0001-01-01T00:00:00Z", "", "2024-02-29T00:00:00Z", "2023-02-29T00:00:00Z",
    "2000-02-29T23:59:59.999Z", "2100-02-29T00:00:00Z", "2024-05-01T24:00:00Z",
    "1969-07-20T20:17:40Z", "2024-00-10T00:00:00Z", "2024-04-31T00:00:00Z",
    "0000-01-01T00:00:00Z"])
def test_epoch_reads_what_strptime_read(stamp: str) -> None:
    body = stamp.rstrip("Z")
    whole, _, fraction = body.partition(".")
    try:
        parsed = datetime.strptime(whole, "%Y-%m-%dT%H:%M:%S").replace(tzinfo=UTC)
        expected = None if stamp.startswith("0001") else (
            parsed.timestamp() + float(f"0.{fraction or 0}"))
    except ValueError:
        expected = None
    assert _epoch(stamp) == expected


@pytest.mark.parametrize("epoch", [0, 1.5, 1234567890.123456, 1795694311.9999996, -1.25,
                                   623839010.0651785])  # (the last: half a microsecond)
def test_iso_writes_what_datetime_wrote(epoch: float) -> None:
    from compose.commands.humanize import iso

    assert iso(epoch) == datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def test_engine_request_types_carry_real_annotations() -> None:
    """engine.serde reads them on every container listing: strings would be compiled."""
    from engine.requests import CreateRequest
    from engine.spec import ContainerConfig

    for cls in (CreateRequest, ContainerConfig):
        assert not any(isinstance(a, str) for a in cls.__annotations__.values())


def test_inspect_asked_for_while_dataclasses_loads_is_the_real_one(tmp_path: Path) -> None:
    # Another thread's `from inspect import x` in the window where the stand-in sits in
    # sys.modules gets the real thing (and leaves the real module there), no recursion.
    program = ("import sys\nfrom compose import codecache\n"
               "sys.modules['inspect'] = codecache._Inspect()\n"
               "from inspect import signature\nimport inspect\n"
               "print(signature.__module__, type(inspect).__name__)")
    assert run_python(program, tmp_path).stdout == "inspect module\n"


def test_up_dry_run_does_not_load_the_runtime(tmp_path: Path) -> None:
    # Only an `up` that may start containers warms the fork server (engine.runtime.launch
    # and subprocess with it, ~10 ms); --dry-run changes nothing and starts nothing.
    compose_file = tmp_path / "compose.yaml"
    compose_file.write_text("services:\n  web:\n    image: busybox\n")
    program = ("import sys; from compose.cli import main; "
               f"main(['-f', {str(compose_file)!r}, 'up', '--dry-run']); "
               "print('launch' if 'engine.runtime.launch' in sys.modules else 'no launch')")
    done = run_python(program, tmp_path, SHIPYARD_ROOT=str(tmp_path / "root"))
    assert "container create" in done.stdout
    assert done.stdout.strip().endswith("no launch")
