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
from typing import TYPE_CHECKING

from engine.runtime import state as st

if TYPE_CHECKING:
    from typing import BinaryIO


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


def _head(f: BinaryIO, tail: int | None) -> tuple[list[bytes], bytes]:
    """What the file holds now: its complete lines (the last `tail` of them; None: all,
    read forwards) and the part of a line being written after them. Leaves `f` at the end
    of what it read, so that a follower goes on from there: nothing appended meanwhile is
    skipped."""
    end = os.fstat(f.fileno()).st_size
    if tail is None:
        data = f.read(end)
    else:
        # Backwards in blocks, until the block holds more than `tail` line ends (its first
        # line may be cut at the block's start).
        data = b""
        pos = end
        while pos > 0 and data.count(b"\n") <= tail:
            step = min(65536, pos)
            pos -= step
            f.seek(pos)
            data = f.read(step) + data
        f.seek(end)
    *complete, partial = data.split(b"\n")
    if tail is not None:
        complete = complete[-tail:] if tail else []
    return complete, partial


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
            raw, _ = _head(f, tail)
    except FileNotFoundError:
        return []
    entries = (_parse(line) for line in raw)
    return [e for e in entries if e is not None and _keep(e, since, until, streams)]


def follow(container_dir: str | os.PathLike[str], tail: int | None = None,
           since: str | None = None, streams: tuple[str, ...] = ("stdout", "stderr"),
           poll: float = 0.05, running: Callable[[], bool] | None = None,
           end_fd: int | None = None) -> Iterator[LogEntry]:
    """Yields entries as they come. Ends once `running()` (default: the container's state is
    running/paused/restarting with a live shim) is false and nothing is left to read.
    `end_fd` (launch.end_fd): readable once the container has ended; the follower then
    wakes at once rather than at its next look, and it stands for `running`."""
    path = os.fspath(container_dir)
    if end_fd is not None:
        import select

        def running() -> bool:
            return not select.select([end_fd], [], [], 0)[0]

        def sleep(seconds: float) -> None:
            select.select([end_fd], [], [], seconds)
    else:
        sleep = time.sleep
    if running is None:
        def running() -> bool:
            from engine.runtime import launch
            return launch.state(path).running

    file = log_path(path)
    while not os.path.exists(file):
        if not running():
            return
        sleep(poll)
    with open(file, "rb") as f:
        lines, pending = _head(f, tail)
        for line in lines:
            entry = _parse(line)
            if entry is not None and _keep(entry, since, None, streams):
                yield entry
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
            sleep(poll)
