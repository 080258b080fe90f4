"""compose.logview: prefixes, colours, timestamps, and merging real json-file logs."""

from __future__ import annotations

import io
import json
import threading
from pathlib import Path

from compose.logview import LogView, Source, stream


def _log(directory: Path, lines: list[tuple[str, str, str]]) -> Path:
    """A container directory holding a Docker json-file log: (time, stream, text) rows."""
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / f"{directory.name}-json.log", "w") as f:
        for time, name, text in lines:
            f.write(json.dumps({"log": text, "stream": name, "time": time}) + "\n")
    return directory


def test_prefix_is_padded_to_one_more_than_the_longest_name() -> None:
    out = io.StringIO()
    view = LogView(out)
    view.add("web-1")
    view.add("redis-1")
    view.write("web-1", "hello\n")
    view.write("redis-1", "ready\nset\n")
    view.write("web-1", "no newline")
    assert out.getvalue() == ("web-1    | hello\n"
                              "redis-1  | ready\n"
                              "redis-1  | set\n"
                              "web-1    | no newline\n")


def test_colours_rotate_and_reset() -> None:
    out = io.StringIO()
    view = LogView(out, color=True)
    for name in ("a", "b"):
        view.add(name)
    view.write("a", "x\n")
    view.write("b", "y\n")
    view.message("a", "exited with code 0")
    assert out.getvalue().splitlines() == [
        "\033[36ma  | \033[0mx", "\033[33mb  | \033[0my", "\033[36ma\033[0m exited with code 0"]


def test_no_prefix_and_timestamps() -> None:
    out = io.StringIO()
    view = LogView(out, prefix=False, timestamps=True)
    view.write("web-1", "hi\n", "2024-01-01T00:00:00.000000000Z")
    assert out.getvalue() == "2024-01-01T00:00:00.000000000Z hi\n"


def test_stream_merges_containers_in_time_order_with_tail_and_until(tmp_path: Path) -> None:
    web = _log(tmp_path / "aaa", [("2024-01-01T00:00:01Z", "stdout", "web one\n"),
                                  ("2024-01-01T00:00:03.5Z", "stderr", "web two\n"),
                                  ("2024-01-01T00:00:05Z", "stdout", "web three\n")])
    db = _log(tmp_path / "bbb", [("2024-01-01T00:00:02Z", "stdout", "db one\n"),
                                 ("2024-01-01T00:00:03.25Z", "stdout", "db two\n")])
    out = io.StringIO()
    stream(LogView(out), [Source("web-1", str(web)), ("db-1", db)])
    assert out.getvalue().splitlines() == [
        "web-1  | web one", "db-1   | db one", "db-1   | db two", "web-1  | web two",
        "web-1  | web three"]
    out = io.StringIO()
    stream(LogView(out, prefix=False), [("web-1", web), ("db-1", db)], tail=1,
           until="2024-01-01T00:00:04Z")
    assert out.getvalue().splitlines() == ["db two"]


def test_follow_ends_when_the_containers_have_stopped(tmp_path: Path) -> None:
    # No state file: the containers read as never started, so follow drains and returns.
    web = _log(tmp_path / "aaa", [("2024-01-01T00:00:01Z", "stdout", "only line\n")])
    out = io.StringIO()
    ended: list[str] = []
    done = threading.Event()

    def go() -> None:
        stream(LogView(out), [("web-1", web)], follow=True, on_end=ended.append)
        done.set()

    threading.Thread(target=go, daemon=True).start()
    assert done.wait(5)
    assert out.getvalue() == "web-1  | only line\n"
    assert ended == ["web-1"]
