"""Progress of a plan, as docker compose v2 shows it, on stderr.

`tty`: a live view, one line per resource rewritten in place with ANSI codes (state and
elapsed time); `plain`: one line per finished step (` ✔ Container blog-db-1  Started`);
`json`: one JSON object per event; `quiet`: nothing. Events come from the threads of a
plan's steps: each call holds the view's lock while it writes.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from typing import TextIO

DONE, WORKING, ERROR, WARNING = "done", "working", "error", "warning"
_GREEN, _RED, _YELLOW, _BLUE, _RESET = "\x1b[32m", "\x1b[31m", "\x1b[33m", "\x1b[34m", "\x1b[0m"


@dataclass
class _Line:
    """One resource's line of progress output."""

    kind: str
    name: str
    text: str
    state: str
    started: float
    ended: float | None = None


def choose_mode(progress: str, ansi: str, stream: TextIO) -> tuple[str, bool]:
    """(mode, colour) from `--progress` and `--ansi` and whether the stream is a terminal."""
    tty = bool(getattr(stream, "isatty", lambda: False)())
    colour = ansi == "always" or (ansi == "auto" and tty)
    if progress == "auto":
        progress = "tty" if tty and ansi != "never" else "plain"
    return progress, colour


def for_flags(flags: object, stream: TextIO, *, quiet: bool = False,
              title: str = "Running") -> Progress:
    """The Progress that the global `--progress` and `--ansi` flags (attributes of `flags`,
    an argparse namespace) ask for on `stream`; `quiet` overrides the mode."""
    mode, colour = choose_mode(getattr(flags, "progress", "auto"),
                               getattr(flags, "ansi", "auto"), stream)
    return Progress(stream, "quiet" if quiet else mode, colour, title=title)


class Progress:
    def __init__(self, stream: TextIO, mode: str = "plain", colour: bool = False,
                 title: str = "Running") -> None:
        self.stream = stream
        self.mode = mode
        self.colour = colour
        self.title = title
        self.lines: dict[str, _Line] = {}
        self._drawn = 0
        self._lock = threading.RLock()

    def event(self, kind: str, name: str, text: str, state: str = WORKING) -> None:
        """`kind` is "Network", "Volume", "Image", "Container"; `text` e.g. "Creating"."""
        with self._lock:
            self._event(kind, name, text, state)

    def _event(self, kind: str, name: str, text: str, state: str) -> None:
        key = f"{kind} {name}"
        line = self.lines.get(key)
        now = time.monotonic()
        if line is None:
            line = self.lines[key] = _Line(kind, name, text, state, now)
        line.text, line.state = text, state
        if state != WORKING:
            line.ended = now
        if self.mode == "json":
            self.stream.write(json.dumps({"id": name, "type": kind, "status": text,
                                          "state": state}) + "\n")
            self.stream.flush()
        elif self.mode == "plain" and state != WORKING:
            self.stream.write(self._format(line, width=0) + "\n")
            self.stream.flush()
        elif self.mode == "tty":
            self._redraw()

    def message(self, text: str) -> None:
        """A line outside the resource list (warnings, hints)."""
        if self.mode == "quiet":
            return
        with self._lock:
            if self.mode == "tty":
                self._drawn = 0  # the live view starts again below the message
            self.stream.write(text + "\n")
            self.stream.flush()

    def close(self) -> None:
        if self.mode == "tty":
            with self._lock:
                self._redraw()

    def _symbol(self, state: str) -> str:
        symbol, colour = {DONE: ("✔", _GREEN), ERROR: ("✘", _RED), WARNING: ("!", _YELLOW),
                          WORKING: ("⠿", _BLUE)}[state]
        return f"{colour}{symbol}{_RESET}" if self.colour else symbol

    def _format(self, line: _Line, width: int) -> str:
        label = f"{line.kind} {line.name}"
        text = f" {self._symbol(line.state)} {label.ljust(width)}  {line.text}"
        if self.mode == "tty":
            elapsed = (line.ended or time.monotonic()) - line.started
            text += f"  {elapsed:.1f}s"
        return text

    def _redraw(self) -> None:
        lines = list(self.lines.values())
        width = max((len(f"{x.kind} {x.name}") for x in lines), default=0)
        done = sum(1 for x in lines if x.state != WORKING)
        out = []
        if self._drawn:
            out.append(f"\x1b[{self._drawn}A")
        header = f"[+] {self.title} {done}/{len(lines)}"
        out.append("\x1b[2K" + header + "\n")
        for line in lines:
            out.append("\x1b[2K" + self._format(line, width) + "\n")
        self._drawn = len(lines) + 1
        self.stream.write("".join(out))
        self.stream.flush()
