"""A validated cache of loaded Compose projects: a command whose inputs did not change gets
the same `Project` without importing or running the loader (~40-60 ms of a fresh process).

The file is the truth: an entry is handed out only when everything the load read is as it
was. An entry is found by a key and checked against a record:

- The key digests what is known before loading: every field of `LoadOptions` (the whole
  environment included, as `Project.environment` holds all of it; see `VOLATILE` for the
  exceptions), the `services` argument, the interpreter, and a fingerprint of the loader's
  code and schema ((path, size, mtime_ns, inode) of compose/loader/*.py, the other modules
  of this tree a load imports, schemas/*.json and PyYAML's `__init__.py`). Loads that read
  standard input (`-f -`) are not cached.
- The record lists every filesystem touch the load made, in order, with its result: each
  file opened (a 256-bit BLAKE2b digest of its bytes, or the errno of the failed open), each
  probe (os.path.exists/isfile/isdir/islink/lexists/realpath/expanduser, os.stat/lstat,
  os.listdir, os.readlink, os.getcwd; pathlib's methods reach these, or `io.open`; a
  direct os.stat records (mode, inode, device, size, mtime)). They are recorded by
  wrapping those functions while the load runs (compose/loader/fsrecord.py; one recording
  at a time; only the loading thread is recorded; restored when it ends), which catches
  every path the loader takes (files found by walking up, include, extends, env_file,
  .env, label_file) without auditing each.
  A file the load opens is read once by the recorder and handed to the loader from memory,
  so the digest is of exactly the bytes the loader parsed. A load that reads in a way the
  recorder cannot replay (os.scandir, os.open for reading, file descriptors, openers) is
  not cached.
- On a hit the record is replayed with the real functions: any different result is a miss,
  and the load runs (and replaces the entry).

The value is the pickled `Project` (with its warnings, which the caller prints again) and
its name, kept beside the record so `cached_name` needs no unpickling. The variables of the
shell stay out of the file (they may hold secrets): `Project.environment` is stored as its
keys plus the values that differ from the shell's, and completed on a hit from the caller's
environment. Failed loads are never cached: their errors come from a real load, with
file:line.

Entries live in `<engine root>/cache/projects/<key>` (mode 0600 in a 0700 directory owned
by this user; anything else there is not trusted), written atomically, at most
`MAX_ENTRIES` of them and none older than `MAX_AGE` seconds. The cache is used only when the
engine root exists. Any error reading or writing it means "no cache", never a failure.

Imports: stdlib modules only, and those that a hit needs (no YAML, no loader stages); the
loader is imported on a miss. The code fingerprint is taken once per process, so a process
that keeps the loader imported while its source is edited may store an entry made by the
old code (the CLI computes it before it imports the loader).
"""
from __future__ import annotations

import _thread
import marshal
import os
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from compose.loader.fsrecord import Recorder, digest, replay

if TYPE_CHECKING:
    from collections.abc import Mapping

    from compose.loader.options import LoadOptions
    from compose.model import Project

# Bumped whenever the entry format or the recording changes.
FORMAT = 1
MAGIC = b"SYPC\x01\n"
MAX_ENTRIES = 64
MAX_AGE = 14 * 24 * 3600
# Mirrors engine.layout.DEFAULT_ROOT, whose import costs more than a hit (a test keeps them
# equal).
DEFAULT_ROOT = "/var/lib/shipyard"

_LOADER_DIR = os.path.dirname(os.path.abspath(__file__))
_COMPOSE_DIR = os.path.dirname(_LOADER_DIR)
_SCHEMA_DIR = os.path.join(os.path.dirname(_COMPOSE_DIR), "schemas")
_ENGINE_DIR = os.path.join(os.path.dirname(_COMPOSE_DIR), "engine")
# Besides compose/loader/*.py: every module of this tree that a load imports (a test checks).
_CODE_FILES = tuple(os.path.join(_COMPOSE_DIR, name) for name in (
    "__init__.py", "errors.py", "graph.py", "model.py")) + tuple(
    os.path.join(_ENGINE_DIR, name) for name in ("__init__.py", "errors.py"))

# Variables that change from one command line to the next although the Compose files seldom
# read them: `sudo` sets SUDO_COMMAND to the whole command line, bash sets `_` to the
# program's path and OLDPWD on `cd`. Keyed on, they would make `up` and `down` miss each
# other's entries. The key holds only which of them are set; a load whose files name one
# (the only way the loader reads them: a test checks that its code does not) records its
# value, and `Project.environment` takes their values from the caller's environment.
VOLATILE = ("OLDPWD", "SUDO_COMMAND", "_")

_code: tuple[Any, ...] | None = None
_RECORDING = _thread.allocate_lock()  # the wrapped functions are the process's own


# ---- the API -------------------------------------------------------------------------------

def cache_dir(environ: Mapping[str, str]) -> str | None:
    """Where the entries of the engine at SHIPYARD_ROOT (default /var/lib/shipyard) live, as
    `Context.engine` finds the root; None when that root does not exist."""
    root = environ.get("SHIPYARD_ROOT", DEFAULT_ROOT)
    if not root:
        return None
    root = os.path.abspath(root)
    return os.path.join(root, "cache", "projects") if os.path.isdir(root) else None


def load(options: LoadOptions, services: Sequence[str] = (), *,
         directory: str | None) -> Project:
    """`compose.loader.load(options, services=services)`, from the cache in `directory`
    when the entry there is still valid (`directory` None: no cache). A miss loads while
    recording, then stores the entry if the load succeeded."""
    services = tuple(services)
    key = _key(options, services) if directory is not None else None
    if key is not None:
        project = _lookup(directory, key, options.environment,  # type: ignore[arg-type]
                          want_project=True)
        if project is not None:
            return project
    return _load_and_store(options, services, directory, key)


def cached_name(options: LoadOptions, *, directory: str | None) -> str | None:
    """The name of the project a load of `options` (no services named) would give, if the
    cache holds a valid entry for it; else None. Nothing is loaded."""
    key = _key(options, ()) if directory is not None else None
    if key is None:
        return None
    name = _lookup(directory, key, options.environment,  # type: ignore[arg-type]
                   want_project=False)
    return name if isinstance(name, str) else None


def code_files() -> list[str]:
    """The files whose (size, mtime, inode) the key includes."""
    files = list(_CODE_FILES)
    for directory, suffix in ((_LOADER_DIR, ".py"), (_SCHEMA_DIR, ".json")):
        files += [os.path.join(directory, name) for name in sorted(os.listdir(directory))
                  if name.endswith(suffix)]
    yaml = _yaml_init()
    if yaml:
        files.append(yaml)
    return files


# ---- the key -------------------------------------------------------------------------------

def _key(options: LoadOptions, services: tuple[str, ...]) -> str | None:
    """The entry's file name, or None when this load must not be cached."""
    if getattr(options, "stdin", None) is not None:
        return None
    try:
        fields = []
        # Every field, found from the class, so a field added later is part of the key.
        for name in type(options).__slots__:
            value = getattr(options, name)
            if name == "environment":
                value = (sorted(i for i in value.items() if i[0] not in VOLATILE),
                         [v for v in VOLATILE if v in value])
            fields.append((name, value))
        material = repr((FORMAT, sys.version, sys.implementation.cache_tag, _fingerprint(),
                         fields, services))
        return digest(material.encode("utf-8", "surrogatepass")).hex()[:40]
    except (OSError, TypeError, ValueError, AttributeError):
        return None


def _fingerprint() -> tuple[Any, ...]:
    global _code
    if _code is None:
        stats = []
        for path in code_files():
            st = os.stat(path)
            stats.append((path, st.st_size, st.st_mtime_ns, st.st_ino))
        _code = tuple(stats)
    return _code


def _yaml_init() -> str | None:
    """PyYAML's `__init__.py`, found as the import system would, without importing it."""
    module = sys.modules.get("yaml")
    found = getattr(module, "__file__", None)
    if found:
        return os.path.abspath(found)
    for entry in sys.path:
        candidate = os.path.join(entry or ".", "yaml", "__init__.py")
        if os.path.isfile(candidate):
            return os.path.abspath(candidate)
    return None


# ---- reading an entry ----------------------------------------------------------------------

def _lookup(directory: str, key: str, shell: Mapping[str, str], *, want_project: bool) -> Any:
    """The project of a valid entry, its environment completed from `shell` (without
    `want_project`: only the project's name), else None."""
    try:
        data = _read_entry(directory, key)
        if data is None:
            return None
        size = int.from_bytes(data[len(MAGIC):len(MAGIC) + 4], "big")
        start = len(MAGIC) + 4
        fmt, stored_key, name, value_digest, record, env = marshal.loads(
            data[start:start + size])
        value = data[start + size:]
        if fmt != FORMAT or stored_key != key or digest(value) != value_digest \
                or not replay(record, shell):
            return None
        if not want_project:
            return name
        try:
            import _pickle as pickle  # the C unpickler alone: `pickle` costs ~2 ms more
        except ImportError:  # pragma: no cover
            import pickle  # type: ignore[no-redef]
        project = pickle.loads(value)
        from compose.model import FrozenMap, Project

        if not isinstance(project, Project) or project.name != name:
            return None
        keys, own = env
        # The key holds the whole shell environment: it is the one the entry was made with.
        environment = FrozenMap({k: own[k] if k in own else shell[k] for k in keys})
        object.__setattr__(project, "environment", environment)  # frozen; not shared yet
        return project
    except Exception:  # a damaged entry is a miss, never a failure
        return None


def _read_entry(directory: str, key: str) -> bytes | None:
    if not _trusted_dir(directory):
        return None
    try:
        fd = os.open(os.path.join(directory, key),
                     os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError:
        return None
    with open(fd, "rb") as handle:
        st = os.fstat(fd)
        if not _owned_regular(st):
            return None
        data = handle.read()
    return data if data.startswith(MAGIC) else None


def _trusted_dir(directory: str) -> bool:
    """Entries are code to unpickle: only a directory of ours, writable by nobody else."""
    import stat

    try:
        st = os.lstat(directory)
    except OSError:
        return False
    return (stat.S_ISDIR(st.st_mode) and st.st_uid == os.geteuid()
            and not st.st_mode & 0o022)


def _owned_regular(st: os.stat_result) -> bool:
    import stat

    return stat.S_ISREG(st.st_mode) and st.st_uid == os.geteuid() and not st.st_mode & 0o022


# ---- a miss: load while recording, then store ----------------------------------------------

def _load_and_store(options: LoadOptions, services: tuple[str, ...], directory: str | None,
                    key: str | None) -> Project:
    from compose.loader import load as real_load

    if key is None:
        return real_load(options, services=services)
    _import_loader()
    if not _RECORDING.acquire(blocking=False):  # another thread records: just load
        return real_load(options, services=services)
    try:
        with Recorder() as recorder:
            project = real_load(options, services=services)
    finally:
        _RECORDING.release()
    if not recorder.tainted:
        record = recorder.record + _volatile_reads(recorder.texts, options.environment)
        _store(directory, key, project, record, options.environment)  # type: ignore[arg-type]
    return project


def _volatile_reads(texts: Sequence[bytes], shell: Mapping[str, str]) -> list[Any]:
    """("env", name, value) for each VOLATILE name that a file of the load mentions as a
    whole word: a reference to a variable (`${NAME}`, `$NAME`, `- NAME`, `NAME=` in an env
    file) always does, so the others cannot have changed the project. YAML's double-quoted
    escapes can spell a name without its bytes (`"${OLDP\\x57D}"`, a `\\` line break
    inside it): the text is also searched with those decoded, wherever they are."""
    import re

    texts = [*texts, *(_unescape(text) for text in texts if b"\\" in text)]
    found = []
    for name in VOLATILE:
        word = re.compile(rb"(?<![A-Za-z0-9_])" + re.escape(name.encode()) +
                          rb"(?![A-Za-z0-9_])")
        if any(word.search(text) for text in texts):
            found.append(("env", name, shell.get(name)))
    return found


def _unescape(text: bytes) -> bytes:
    """`text` with YAML's escapes that can make ASCII (\\xHH, \\uHHHH, \\UHHHHHHHH) decoded
    and its escaped line breaks (with the next line's indent) joined, as a double-quoted
    scalar would read; applied everywhere, it can only find more names."""
    import re

    def char(match: re.Match[bytes]) -> bytes:
        code = int(match.group(match.lastindex or 0), 16)
        return bytes([code]) if code < 128 else b"?"  # a name is ASCII

    text = re.sub(rb"\\\r?\n[ \t]*", b"", text)
    return re.sub(rb"\\(?:x([0-9A-Fa-f]{2})|u([0-9A-Fa-f]{4})|U([0-9A-Fa-f]{8}))", char, text)


def _import_loader() -> None:
    """Imports (and reads) before recording what the loader would import lazily, so that
    what the imports read (the dataclass code cache, the schema) is no part of the record:
    both are covered by the key's code fingerprint."""
    import compose.graph
    import compose.loader.bind
    import compose.loader.canonical
    import compose.loader.dotenv
    import compose.loader.raw
    import compose.loader.semantic
    import compose.loader.validate as validate
    import compose.model  # noqa: F401

    validate.load_schema()


# ---- storing an entry ----------------------------------------------------------------------

def _store(directory: str, key: str, project: Project, record: list[Any],
           shell: Mapping[str, str]) -> None:
    """Writes the entry atomically (temp file + rename); any error: nothing is stored."""
    try:
        import dataclasses
        import pickle

        from compose.model import EMPTY

        # The shell's variables stay out of the file (they may be secrets): the hit takes
        # them from its own, equal, environment.
        env = project.environment
        own = {k: v for k, v in env.items() if shell.get(k) != v}
        value = pickle.dumps(dataclasses.replace(project, environment=EMPTY),
                             protocol=pickle.HIGHEST_PROTOCOL)
        head = marshal.dumps((FORMAT, key, project.name, digest(value), tuple(record),
                              (tuple(env), own)))
        blob = MAGIC + len(head).to_bytes(4, "big") + head + value
        if not _make_dir(directory):
            return
        tmp = os.path.join(directory, f".{key}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW,
                     0o600)
        try:
            with open(fd, "wb") as handle:
                handle.write(blob)
            os.replace(tmp, os.path.join(directory, key))
        except BaseException:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise
        _prune(directory)
    except Exception:  # a cache that cannot be written is no cache
        return


def _make_dir(directory: str) -> bool:
    """Creates <root>/cache/projects (0700) below an existing root; True when trusted."""
    parent = os.path.dirname(directory)
    for path in (parent, directory):
        try:
            os.mkdir(path, 0o700)
        except FileExistsError:
            pass
    return _trusted_dir(directory)


def _prune(directory: str) -> None:
    """Drops entries older than MAX_AGE (and leftover temp files), then the oldest beyond
    MAX_ENTRIES."""
    import time

    now = time.time()
    entries = []
    for name in os.listdir(directory):
        path = os.path.join(directory, name)
        try:
            mtime = os.lstat(path).st_mtime
        except OSError:
            continue
        stale = now - mtime > (3600 if name.endswith(".tmp") else MAX_AGE)
        if stale:
            _unlink(path)
        elif not name.endswith(".tmp"):
            entries.append((mtime, path))
    entries.sort(reverse=True)
    for _, path in entries[MAX_ENTRIES:]:
        _unlink(path)


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass
