"""Recording what a load reads, and checking it again (for `compose.loader.cache`).

A `Recorder` wraps the filesystem functions while a load runs in its thread: builtins/io
`open` (the file is read once here, handed to the loader from memory, and recorded by the
digest of its bytes), os.stat/lstat, os.listdir, os.readlink, os.getcwd and
os.path.exists/isfile/isdir/islink/lexists/realpath/expanduser (recorded with their result).
Reads it cannot replay (os.scandir, os.open for reading, file descriptors, openers) taint
the record. `replay` calls the real functions again and says whether every result is the
same.
"""
from __future__ import annotations

import _thread
import builtins
import io
import os
import stat
from collections.abc import Callable, Mapping, Sequence
from typing import Any


def digest(data: bytes) -> bytes:
    try:
        from _blake2 import blake2b  # what hashlib re-exports, without loading OpenSSL
    except ImportError:  # pragma: no cover - not CPython's layout
        from hashlib import blake2b
    return blake2b(data, digest_size=32).digest()



def replay(record: Sequence[tuple[Any, ...]], shell: Mapping[str, str]) -> bool:
    """True when every recorded touch (and volatile variable) gives the same result now."""
    for op, arg, result in record:
        replay = REPLAY.get(op)
        if replay is None and op != "env":
            return False
        try:
            now = shell.get(arg) if op == "env" else replay(arg)  # type: ignore[misc]
        except OSError as exc:
            now = ("error", exc.errno)
        except Exception:  # whatever it is, it is not what was recorded
            return False
        if now != result:
            return False
    return True


def _file_digest(path: str) -> Any:
    """The digest of a regular file's bytes. Anything else (a FIFO, a terminal, a socket)
    is not read, as reading would block or take what the load is to read: "special"."""
    # Not even opened unless regular: opening a FIFO's read end releases a writer waiting
    # in open(), which then writes into a pipe nobody reads (and the load finds no writer).
    if not stat.S_ISREG(REAL["stat"](path).st_mode):
        return "special"
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    with REAL["open"](fd, "rb") as handle:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return "special"
        return digest(handle.read())


def _stat_key(st: os.stat_result) -> tuple[int, ...]:
    return (st.st_mode, st.st_ino, st.st_dev, st.st_size, st.st_mtime_ns)


# The real functions, captured before any recorder wraps them.
REAL: dict[str, Any] = {
    "open": builtins.open, "stat": os.stat, "lstat": os.lstat, "listdir": os.listdir,
    "readlink": os.readlink, "getcwd": os.getcwd,
    **{name: getattr(os.path, name) for name in (
        "exists", "isfile", "isdir", "islink", "lexists", "realpath", "expanduser")},
}

REPLAY: dict[str, Callable[[Any], Any]] = {
    "open": _file_digest,
    "stat": lambda path: _stat_key(REAL["stat"](path)),
    "lstat": lambda path: _stat_key(REAL["lstat"](path)),
    "listdir": lambda path: tuple(REAL["listdir"](path)),
    "readlink": lambda path: REAL["readlink"](path),
    "getcwd": lambda _: REAL["getcwd"](),
    "realpath": lambda arg: REAL["realpath"](arg[0], strict=arg[1]),
    **{name: REAL[name] for name in (
        "exists", "isfile", "isdir", "islink", "lexists", "expanduser")},
}


class Recorder:
    """Wraps the filesystem functions while a load runs and lists what they returned."""

    def __init__(self) -> None:
        self.thread = _thread.get_ident()
        self.get_ident = _thread.get_ident
        self.record: list[tuple[Any, Any, Any]] = []
        self.tainted = False
        self.depth = 0  # > 0 inside a wrapped call: its inner calls are not recorded
        self.opened: dict[str, Any] = {}
        self.texts: list[bytes] = []  # what the load read, for `_volatile_reads`
        self.saved: list[tuple[Any, str, Any]] = []

    # -- installing --

    def __enter__(self) -> Recorder:
        try:
            self._install()
        except BaseException:
            self.__exit__()
            raise
        return self

    def _install(self) -> None:
        path = os.path
        self._wrap(builtins, "open", self._open)
        if io.open is self.saved[0][2]:
            self._wrap(io, "open", self._open)
        self._wrap(os, "open", self._taint_reads(os.open))
        self._wrap(os, "scandir", self._taint(os.scandir))
        self._wrap(os, "stat", self._stat(os.stat, "stat"))
        self._wrap(os, "lstat", self._stat(os.lstat, "lstat"))
        self._wrap(os, "listdir", self._probe(os.listdir, "listdir", tuple, default="."))
        self._wrap(os, "readlink", self._probe(os.readlink, "readlink"))
        self._wrap(os, "getcwd", self._getcwd(os.getcwd))
        for name in ("exists", "isfile", "isdir", "islink", "lexists"):
            self._wrap(path, name, self._probe(getattr(path, name), name))
        self._wrap(path, "realpath", self._realpath(path.realpath))
        self._wrap(path, "expanduser", self._expanduser(path.expanduser))

    def __exit__(self, *exc: object) -> None:
        for owner, name, original in reversed(self.saved):
            setattr(owner, name, original)
        self.saved.clear()

    def _wrap(self, owner: Any, name: str, wrapper: Callable[..., Any]) -> None:
        self.saved.append((owner, name, getattr(owner, name)))
        setattr(owner, name, wrapper)

    def _mine(self) -> bool:
        return self.depth == 0 and self.get_ident() == self.thread

    def _add(self, op: str, arg: Any, result: Any) -> None:
        self.record.append((op, arg, result))

    def _path(self, value: Any) -> str | None:
        """`value` as an absolute str path, or None (a descriptor, or not a path)."""
        if isinstance(value, int):
            return None
        value = os.fspath(value)
        if isinstance(value, bytes):
            value = os.fsdecode(value)
        if not os.path.isabs(value):
            cwd = REAL["getcwd"]()
            self._add("getcwd", None, cwd)  # the answer depends on it
            value = os.path.join(cwd, value)
        return value

    # -- wrappers --

    def _open(self, file: Any, mode: str = "r", buffering: int = -1,
              encoding: str | None = None, errors: str | None = None,
              newline: str | None = None, closefd: bool = True,
              opener: Any = None) -> Any:
        real = REAL["open"]
        if not self._mine() or any(c in mode for c in "wax+"):
            return real(file, mode, buffering, encoding, errors, newline, closefd, opener)
        path = self._path(file) if not isinstance(file, int) else None
        if path is None or opener is not None:
            self.tainted = True
            return real(file, mode, buffering, encoding, errors, newline, closefd, opener)
        self.depth += 1
        try:
            with real(path, "rb") as handle:
                if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
                    # A pipe (`-f /dev/stdin`, `-f <(...)`) or a device: a replay could not
                    # read it again without taking what the next load is to read.
                    self.tainted = True
                data = handle.read()
        except OSError as exc:
            self._add("open", path, ("error", exc.errno))
            raise
        finally:
            self.depth -= 1
        seen = digest(data)
        if self.opened.setdefault(path, seen) != seen:
            self.tainted = True  # changed while loading: the project may mix both
        self._add("open", path, seen)
        self.texts.append(data)
        buffer = io.BytesIO(data)
        buffer.name = file
        if "b" in mode:
            return buffer
        return io.TextIOWrapper(buffer, encoding=encoding, errors=errors, newline=newline)

    def _call(self, op: str, arg: Any, call: Callable[[], Any],
              convert: Callable[[Any], Any] | None = None) -> Any:
        self.depth += 1
        try:
            result = call()
        except OSError as exc:
            self._add(op, arg, ("error", exc.errno))
            raise
        except BaseException:
            self.tainted = True
            raise
        finally:
            self.depth -= 1
        self._add(op, arg, convert(result) if convert else result)
        return result

    def _probe(self, real: Callable[..., Any], op: str,
               convert: Callable[[Any], Any] | None = None,
               default: Any = None) -> Callable[..., Any]:
        def probe(path: Any = default, *args: Any, **kwargs: Any) -> Any:
            if not self._mine():
                return real(path, *args, **kwargs)
            where = self._path(path) if path is not None else None
            if where is None or args or kwargs:
                self.tainted = True
                return real(path, *args, **kwargs)
            return self._call(op, where, lambda: real(path), convert)
        return probe

    def _stat(self, real: Callable[..., Any], op: str) -> Callable[..., Any]:
        def stat(path: Any, *args: Any, dir_fd: Any = None,
                 follow_symlinks: bool = True) -> Any:
            if not self._mine():
                return real(path, *args, dir_fd=dir_fd, follow_symlinks=follow_symlinks)
            where = self._path(path)
            if where is None or args or dir_fd is not None:
                self.tainted = True
                return real(path, *args, dir_fd=dir_fd, follow_symlinks=follow_symlinks)
            kind = op if follow_symlinks else "lstat"
            return self._call(kind, where, lambda: real(path, follow_symlinks=follow_symlinks),
                              _stat_key)
        return stat

    def _realpath(self, real: Callable[..., Any]) -> Callable[..., Any]:
        def realpath(path: Any, *, strict: bool = False) -> Any:
            if not self._mine():
                return real(path, strict=strict)
            where = self._path(path)
            return self._call("realpath", (where, strict), lambda: real(path, strict=strict),
                              os.fsdecode)
        return realpath

    def _expanduser(self, real: Callable[..., Any]) -> Callable[..., Any]:
        def expanduser(path: Any) -> Any:
            result = real(path)
            text = os.fspath(path)
            # Only `~...` reads anything (HOME, or the password database).
            if self._mine() and isinstance(text, str) and text.startswith("~"):
                self._add("expanduser", text, result)
            elif self._mine() and isinstance(text, bytes) and text.startswith(b"~"):
                self.tainted = True
            return result
        return expanduser

    def _getcwd(self, real: Callable[[], str]) -> Callable[[], str]:
        def getcwd() -> str:
            result = real()
            if self._mine():
                self._add("getcwd", None, result)
            return result
        return getcwd

    def _taint(self, real: Callable[..., Any]) -> Callable[..., Any]:
        def call(*args: Any, **kwargs: Any) -> Any:
            if self._mine():
                self.tainted = True
            return real(*args, **kwargs)
        return call

    def _taint_reads(self, real: Callable[..., Any]) -> Callable[..., Any]:
        def call(path: Any, flags: int, *args: Any, **kwargs: Any) -> Any:
            if self._mine() and not flags & (os.O_WRONLY | os.O_RDWR):
                self.tainted = True
            return real(path, flags, *args, **kwargs)
        return call
