"""The container's state file (state.json) and small helpers the shim and the engine share.

Stdlib only and import-light: the shim imports it by path. The file is one JSON object,
written by the shim only, atomically (temporary file + rename):

  id, status (created|running|paused|restarting|exited|dead), pid, shim_pid, shim_start
  (the shim's start time in clock ticks since boot, from /proc/<pid>/stat: a pid alone may
  be reused), exit_code, started_at, finished_at (RFC 3339 with nanoseconds, UTC, like
  Docker), restart_count, error (why the start failed), health {status, failing_streak,
  log: last 5 {start, end, exit_code, output}}.

`loads`/`dumps` use CPython's C JSON scanner/encoder directly: importing `json` pulls in
`re`, `enum` and `functools` (~10 ms and ~2 MB in every shim).
"""

from __future__ import annotations

import os
import time

STATE_FILE = "state.json"
ACTIVE = ("created", "running", "paused", "restarting")
LIVE = ("running", "paused", "restarting")  # a process runs (or is paused, or about to)

try:
    import _json

    class _Ctx:
        strict = True
        object_hook = None
        object_pairs_hook = None
        parse_float = float
        parse_int = int
        memo: dict = {}

        @staticmethod
        def parse_constant(name: str) -> float:
            return float(name.lower().replace("infinity", "inf"))

    _scan = _json.make_scanner(_Ctx())
    _encode = _json.make_encoder(None, None, _json.encode_basestring_ascii, None, ":", ",",
                                 False, False, True)

    def loads(text: str | bytes) -> object:
        if isinstance(text, bytes):
            text = text.decode()
        text = text.strip()
        _Ctx.memo.clear()
        value, end = _scan(text, 0)
        if end != len(text):
            raise ValueError(f"extra data at offset {end}")
        return value

    def dumps(value: object) -> str:
        return "".join(_encode(value, 0))

except (ImportError, AttributeError):  # another Python: the slow but sure way
    import json as _j

    def loads(text: str | bytes) -> object:
        return _j.loads(text)

    def dumps(value: object) -> str:
        return _j.dumps(value, separators=(",", ":"))


def __getattr__(name: str) -> object:
    """`state.State` (and Health, HealthResult) for the engine: the frozen dataclasses live
    in launch.py, so the shim never pays for importing dataclasses."""
    if name in ("State", "Health", "HealthResult") and __package__:
        from engine.runtime import launch
        return getattr(launch, name)
    raise AttributeError(name)


def now(digits: int = 9) -> str:
    """RFC 3339 UTC with `digits` of the second's fraction: 9 (nanoseconds, as the runtime
    writes), e.g. 2024-05-01T12:00:00.123456789Z, or 6 (as Docker writes the times of
    images and networks). Not `datetime`: importing it costs a command ~2-3 ms."""
    ns = time.time_ns()
    t = time.gmtime(ns // 1_000_000_000)
    return (f"{t.tm_year:04d}-{t.tm_mon:02d}-{t.tm_mday:02d}T{t.tm_hour:02d}:{t.tm_min:02d}:"
            f"{t.tm_sec:02d}.{f'{ns % 1_000_000_000:09d}'[:digits]}Z")


# Files go through os.open/os.read/os.write, not open(): no io objects (buffers, text
# codecs) to build, which in a shim forked by the fork server means fewer of the server's
# pages copied.

def read_all(fd: int) -> bytes:
    """Everything `fd` yields until EOF."""
    chunks = []
    while True:
        chunk = os.read(fd, 65536)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


def read_bytes(path: str) -> bytes:
    """The whole file; raises FileNotFoundError (and other OSErrors) like open()."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        return read_all(fd)
    finally:
        os.close(fd)


def write_bytes(path: str, data: bytes, mode: int = 0o666) -> None:
    """Creates or truncates `path` (`mode` less the umask, as open() does) and writes all
    of `data`."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, mode)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
    finally:
        os.close(fd)


def read_json(path: str) -> dict | None:
    try:
        return loads(read_bytes(path))  # type: ignore[return-value]
    except FileNotFoundError:
        return None


def write_json(path: str, value: object) -> None:
    """Atomic replace: readers see the old or the new file, never half of one."""
    tmp = f"{path}.{os.getpid()}.tmp"
    write_bytes(tmp, dumps(value).encode())
    os.rename(tmp, path)


def read(container_dir: str) -> dict | None:
    return read_json(os.path.join(container_dir, STATE_FILE))


def write(container_dir: str, state: dict) -> None:
    write_json(os.path.join(container_dir, STATE_FILE), state)


def start_time(pid: int) -> int | None:
    """The process's start time (clock ticks after boot), or None if it is gone."""
    try:
        raw = read_bytes(f"/proc/{pid}/stat")
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = raw.rsplit(b")", 1)[1].split()
    if fields[0] == b"Z":
        return None
    return int(fields[19])


def alive(pid: int | None, started: int | None) -> bool:
    """True if `pid` is the same live process that started at `started`."""
    if not pid:
        return False
    current = start_time(pid)
    return current is not None and (started is None or current == started)
