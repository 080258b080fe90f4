"""A persistent cache of the code that `dataclasses` generates, so a command does not compile
it again on every start.

`@dataclass` writes the source of each class's `__init__`, `__repr__`, `__eq__`, `__hash__`,
`__setattr__`, ... and compiles it with `exec` when the class is created: ~0.5 ms a class,
whatever its size, and `shipyard up` creates some 70 of them (~40 ms of a ~180 ms process).
Module bytecode is cached by Python; this generated code is not. `install()` gives the
`dataclasses` module an `exec` that looks the source text up in a cache of code objects kept
beside the bytecode (under `__pycache__`, or `sys.pycache_prefix`), and compiles and adds
what is missing. The classes come out exactly the same: the same text compiled the same way
(no inherited `__future__` flags, file name "<string>"), only not compiled again.

An entry is found by a 128-bit digest of the whole source text, so it hands out code for
that text only; the file is versioned by the interpreter's bytecode magic number; entries
are unmarshalled only when used. It is written once at exit, atomically, when the process
compiled anything new, and not at all when bytecode writing is off
(`PYTHONDONTWRITEBYTECODE`). Any error reading or writing it means "no cache", never a
failure.
"""

from __future__ import annotations

import builtins
import marshal
import os
import sys
from typing import Any

# Above this many entries the file starts afresh (edited classes leave stale entries).
MAX_ENTRIES = 4096

_state: dict[str, Any] = {}


def cache_path() -> str | None:
    """Where the cache lives: this package's bytecode directory (as Python chooses it)."""
    try:
        pyc = _bootstrap().cache_from_source(__file__)
    except (NotImplementedError, ValueError):  # no cache_tag: bytecode caching is off
        return None
    tag = sys.implementation.cache_tag
    return os.path.join(os.path.dirname(pyc), f"dataclasses.{tag}.marshal")


def install(path: str | None = None) -> None:
    """Route `dataclasses`' compiles through the cache at `path` (default: `cache_path()`).
    Idempotent, and costs nothing until the first dataclass is created: when `dataclasses`
    is not imported yet, it is patched once it is (a command that makes no dataclass does
    not pay ~8 ms for importing it), and it imports `inspect` only when it needs it."""
    module = sys.modules.get("dataclasses")
    if module is not None and getattr(module, "exec", None) is _exec:
        return
    _state.clear()
    _state.update(path=path or cache_path(), entries=None, added=False)
    if module is not None:
        _patch(module)
    elif _Hook not in sys.meta_path:
        sys.meta_path.insert(0, _Hook)


def uninstall() -> None:
    """Back to the builtin `exec` (tests); nothing is written."""
    if _Hook in sys.meta_path:
        sys.meta_path.remove(_Hook)
    module = sys.modules.get("dataclasses")
    if module is not None and getattr(module, "exec", None) is _exec:
        del module.exec
    _state.clear()


def _patch(module: Any) -> None:
    module.exec = _exec  # shadows the builtin in that module only


class _Hook:
    """An import hook that finds nothing itself: it has `dataclasses` found as usual and
    patches the module once it has run, then steps aside."""

    @staticmethod
    def find_spec(name: str, path: Any = None, target: Any = None) -> Any:
        if name != "dataclasses":
            return None
        if _Hook in sys.meta_path:
            sys.meta_path.remove(_Hook)
        spec = _bootstrap().PathFinder.find_spec(name, path)
        loader = getattr(spec, "loader", None)
        if loader is None or isinstance(loader, type) or not hasattr(loader, "exec_module"):
            return spec  # not a source module's own loader: left alone (no cache)
        run = loader.exec_module

        def exec_module(module: Any) -> None:
            stand_in = "inspect" not in sys.modules
            if stand_in:  # (what its `import inspect` finds: see _Inspect)
                sys.modules["inspect"] = _Inspect()  # type: ignore[assignment]
            try:
                run(module)
            finally:
                if stand_in and isinstance(sys.modules.get("inspect"), _Inspect):
                    sys.modules.pop("inspect", None)  # the next `import inspect`: the real one
            if _state.get("path"):
                _patch(module)

        loader.exec_module = exec_module
        return spec


class _Inspect:
    """`inspect` for `dataclasses`, imported on first use: `dataclasses` only asks it for a
    signature to write a docstring for a class that has none, and importing it (with ast,
    dis and tokenize) costs ~10 ms of CPU, a tenth of a short command's imports."""

    __spec__ = None  # (the import system reads it; it must not import anything)

    def __getattr__(self, name: str) -> Any:
        if sys.modules.get("inspect") is self:
            # Asked while `dataclasses` loads (another thread's `from inspect import x`):
            # `import inspect` would find this stand-in again, and recurse.
            sys.modules.pop("inspect", None)
        import inspect

        return getattr(inspect, name)


def _exec(source: Any, globals: Any = None, locals: Any = None, /) -> None:
    if isinstance(source, str) and _state.get("path"):
        source = _code(source)
    builtins.exec(source, globals, locals)


def _code(text: str) -> Any:
    entries = _state["entries"]
    if entries is None:
        entries = _state["entries"] = _read(_state["path"])
    key = _key(text)
    blob = entries.get(key)
    if blob is not None:
        try:
            return marshal.loads(blob)
        except (EOFError, ValueError, TypeError):
            pass
    code = compile(text, "<string>", "exec", dont_inherit=True)
    entries[key] = marshal.dumps(code)
    if not _state["added"] and not sys.dont_write_bytecode:
        import atexit

        _state["added"] = True
        atexit.register(_write)
    return code


def _key(text: str) -> bytes:
    """A 128-bit BLAKE2 digest of `text` (the file need not hold the texts, which would
    double what every start reads)."""
    try:
        from _blake2 import blake2b  # what hashlib re-exports, without loading OpenSSL
    except ImportError:
        from hashlib import blake2b
    return blake2b(text.encode(), digest_size=16).digest()


def _bootstrap() -> Any:
    """importlib's path machinery (cache_from_source, MAGIC_NUMBER, PathFinder), loaded with
    the interpreter: `importlib.util` would cost ~4 ms to import just to reach it."""
    try:
        import _frozen_importlib_external as machinery
    except ImportError:  # not CPython's layout
        from importlib import _bootstrap_external as machinery  # type: ignore[no-redef]
    return machinery


def _magic() -> bytes:
    return _bootstrap().MAGIC_NUMBER


def _read(path: str) -> dict[bytes, bytes]:
    """The cached entries (digest -> marshalled code), or none when the file is missing, from
    another interpreter, or damaged."""
    try:
        with open(path, "rb") as f:
            data = f.read()
        magic = _magic()
        if not data.startswith(magic):
            return {}
        entries = marshal.loads(memoryview(data)[len(magic):])
    except (OSError, EOFError, ValueError, TypeError):
        return {}
    if not isinstance(entries, dict) or len(entries) > MAX_ENTRIES:
        return {}
    return entries


def _write() -> None:
    path = _state.get("path")
    entries = _state.get("entries")
    if not path or not entries:
        return
    tmp = f"{path}.{os.getpid()}.tmp"
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        # O_EXCL, as Python writes bytecode: never through a planted symlink or into another
        # writer's file; and an unwritable directory costs one failed open, nothing more.
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)
    except OSError:
        return
    try:
        with open(fd, "wb") as f:
            # Merge with what another process may have written meanwhile; keep it bounded.
            merged = {**_read(path), **entries}
            if len(merged) > MAX_ENTRIES:
                merged = entries
            f.write(_magic() + marshal.dumps(merged))
        os.replace(tmp, path)
    except (OSError, ValueError):
        try:
            os.unlink(tmp)
        except OSError:
            pass
