"""Reading a container's json-file log (written by the shim), Docker's format:
one JSON object a line: {"log": "text\\n", "stream": "stdout"|"stderr", "time": RFC 3339}.

`read` returns entries (optionally the last `tail`, or since/until a time); `follow` yields
them as they are written until the container has stopped for good and the file is drained.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from engine.runtime import state as st


@dataclass(frozen=True, slots=True)
class LogEntry:
    """One line of a container's log."""

    stream: str   # stdout | stderr
    time: str     # RFC 3339, nanoseconds, UTC
    text: str     # the line, with its newline when it had one


def log_path(container_dir: str | os.PathLike[str]) -> str:
    path = os.fspath(container_dir)
    opts = st.read_json(os.path.join(path, "shim.json")) or {}
    return os.path.join(path, f"{opts.get('id') or os.path.basename(path)}-json.log")


def _parse(line: bytes) -> LogEntry | None:
    try:
        d = json.loads(line)
    except ValueError:
        return None  # a torn last line while the shim writes it
    return LogEntry(d.get("stream", "stdout"), d.get("time", ""), d.get("log", ""))


def _last_lines(f: object, count: int) -> list[bytes]:
    """The last `count` complete lines, reading backwards in blocks."""
    f.seek(0, os.SEEK_END)  # type: ignore[attr-defined]
    end = f.tell()  # type: ignore[attr-defined]
    data = b""
    pos = end
    while pos > 0 and data.count(b"\n") <= count:
        step = min(65536, pos)
        pos -= step
        f.seek(pos)  # type: ignore[attr-defined]
        data = f.read(step) + data  # type: ignore[attr-defined]
    lines = data.splitlines()
    return lines[-count:] if count else []


def normalize_time(ts: str | None) -> str | None:
    """A UTC RFC 3339 time with the fraction padded to nanoseconds ("...:05Z" ->
    "...:05.000000000Z"), so that times compare correctly as text."""
    if ts is None:
        return None
    body = ts[:-1] if ts.endswith("Z") else ts
    whole, _, fraction = body.partition(".")
    return f"{whole}.{fraction[:9].ljust(9, '0')}Z"


def _keep(entry: LogEntry, since: str | None, until: str | None,
          streams: tuple[str, ...]) -> bool:
    since, until = normalize_time(since), normalize_time(until)
    return (entry.stream in streams and (since is None or entry.time >= since)
            and (until is None or entry.time < until))


def read(container_dir: str | os.PathLike[str], tail: int | None = None,
         since: str | None = None, until: str | None = None,
         streams: tuple[str, ...] = ("stdout", "stderr")) -> list[LogEntry]:
    try:
        with open(log_path(container_dir), "rb") as f:
            raw = _last_lines(f, tail) if tail is not None else f.read().splitlines()
    except FileNotFoundError:
        return []
    entries = (_parse(line) for line in raw)
    return [e for e in entries if e is not None and _keep(e, since, until, streams)]


def follow(container_dir: str | os.PathLike[str], tail: int | None = None,
           since: str | None = None, streams: tuple[str, ...] = ("stdout", "stderr"),
           poll: float = 0.05, running: Callable[[], bool] | None = None) -> Iterator[LogEntry]:
    """Yields entries as they come. Ends once `running()` (default: the container's state is
    running/paused/restarting with a live shim) is false and nothing is left to read."""
    path = os.fspath(container_dir)
    if running is None:
        def running() -> bool:
            from engine.runtime import launch
            return launch.state(path).running

    file = log_path(path)
    while not os.path.exists(file):
        if not running():
            return
        time.sleep(poll)
    with open(file, "rb") as f:
        lines = _last_lines(f, tail) if tail is not None else f.read().splitlines()
        f.seek(0, os.SEEK_END)
        for line in lines:
            entry = _parse(line)
            if entry is not None and _keep(entry, since, None, streams):
                yield entry
        pending = b""
        while True:
            alive = running()
            chunk = f.read()
            if chunk:
                pending += chunk
                *complete, pending = pending.split(b"\n")
                for line in complete:
                    entry = _parse(line)
                    if entry is not None and _keep(entry, since, None, streams):
                        yield entry
                continue
            if not alive:
                return
            time.sleep(poll)
