"""Several containers' logs on one stream, each line prefixed `name  | ` in its own colour.

Shared by `logs` and `up` in attached mode. Usage:

    view = LogView(sys.stdout, color=True)
    view.add("web-1"); view.add("db-1")        # fixes each name's colour and the prefix width
    view.write("web-1", "hello\\n")            # -> "web-1  | hello" (cyan prefix)
    view.message("db-1", "exited with code 0")  # -> "db-1 exited with code 0"
    stream(view, [("web-1", dir1), ("db-1", dir2)], follow=True)  # blocks until all stop

All output goes to one stream (stdout), as Docker Compose prints it. `LogView` is
thread-safe: whole lines never interleave.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TextIO

# Docker Compose's rotation: cyan, yellow, green, magenta, blue, then their bright forms.
PALETTE = ("36", "33", "32", "35", "34", "1;36", "1;33", "1;32", "1;35", "1;34")
RESET = "\033[0m"


def colour(code: str, text: str) -> str:
    return f"\033[{code}m{text}{RESET}"


class LogView:
    """Prints lines for named sources. `prefix=False` is `--no-log-prefix`; `timestamps`
    puts each entry's RFC 3339 time before its text."""

    def __init__(self, out: TextIO, *, color: bool = False, prefix: bool = True,
                 timestamps: bool = False) -> None:
        self.out = out
        self.color = color
        self.prefix = prefix
        self.timestamps = timestamps
        self.width = 0
        self._colours: dict[str, str] = {}
        self._lock = threading.Lock()

    def add(self, name: str) -> None:
        """Registers a source: the next colour of the palette, and a wider prefix if needed."""
        with self._lock:
            if name not in self._colours:
                self._colours[name] = PALETTE[len(self._colours) % len(PALETTE)]
            self.width = max(self.width, len(name))

    def _prefix(self, name: str) -> str:
        if not self.prefix:
            return ""
        # Docker Compose pads to one more than the longest name: "web-1  | ", "redis-1  | "
        text = f"{name:<{self.width + 1}} | "
        return colour(self._colours.get(name, PALETTE[0]), text) if self.color else text

    def write(self, name: str, text: str, time: str | None = None) -> None:
        """One or more lines of `name`'s output (a missing final newline is added)."""
        if name not in self._colours:
            self.add(name)
        lines = text.splitlines() or [""]
        stamp = f"{time} " if self.timestamps and time else ""
        with self._lock:
            head = self._prefix(name)
            self.out.write("".join(f"{head}{stamp}{line}\n" for line in lines))
            self.out.flush()

    def message(self, name: str, text: str) -> None:
        """A line about a source rather than from it (`web-1 exited with code 0`)."""
        if name not in self._colours:
            self.add(name)
        with self._lock:
            shown = colour(self._colours[name], name) if self.color else name
            self.out.write(f"{shown} {text}\n")
            self.out.flush()


@dataclass(frozen=True, slots=True)
class Source:
    """One container whose log a `LogView` shows."""

    name: str        # as shown in the prefix
    directory: str   # the container's directory (engine.containers.Container.directory)


def stream(view: LogView, sources: Sequence[Source | tuple[str, str | os.PathLike[str]]], *,
           follow: bool = False, tail: int | None = None, since: str | None = None,
           until: str | None = None, stop: threading.Event | None = None,
           on_end: Callable[[str], None] | None = None) -> None:
    """Prints the sources' logs. Without `follow`: what is there now, merged in time order.
    With `follow`: each source in its own thread, until every container has stopped (or
    `stop` is set); `on_end(name)` runs when a source's container has stopped and its log is
    drained (`up` uses it to print "exited with code N")."""
    from engine.runtime import logs

    items = [s if isinstance(s, Source) else Source(s[0], os.fspath(s[1])) for s in sources]
    for item in items:
        view.add(item.name)
    if not follow:
        merged = []
        for order, item in enumerate(items):
            for entry in logs.read(item.directory, tail=tail, since=since, until=until):
                merged.append((logs.normalize_time(entry.time) or "", order, item.name, entry))
        merged.sort(key=lambda m: (m[0], m[1]))  # stable: a container's lines keep order
        for _, _, name, entry in merged:
            view.write(name, entry.text, entry.time)
        return

    def pump(item: Source) -> None:
        from engine.runtime import launch

        def running() -> bool:
            return not (stop is not None and stop.is_set()) and launch.state(
                item.directory).running

        for entry in logs.follow(item.directory, tail=tail, since=since, running=running):
            if until is not None and (logs.normalize_time(entry.time) or "") >= (
                    logs.normalize_time(until) or ""):
                break
            view.write(item.name, entry.text, entry.time)
        if on_end is not None and not (stop is not None and stop.is_set()):
            on_end(item.name)

    threads = [threading.Thread(target=pump, args=(item,), daemon=True) for item in items]
    for thread in threads:
        thread.start()
    for thread in threads:
        # join with a timeout so Ctrl-C reaches the main thread
        while thread.is_alive():
            thread.join(0.2)
