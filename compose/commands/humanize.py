"""Times and states as Docker's CLI prints them ("2 minutes ago", "Up 3 seconds")."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime
from typing import Any


def iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def duration(seconds: float) -> str:
    """Docker's HumanDuration: "Less than a second", "3 seconds", "About a minute", ..."""
    seconds = int(seconds)
    if seconds < 1:
        return "Less than a second"
    if seconds == 1:
        return "1 second"
    if seconds < 60:
        return f"{seconds} seconds"
    minutes = seconds // 60
    if minutes == 1:
        return "About a minute"
    if minutes < 60:
        return f"{minutes} minutes"
    hours = round(seconds / 3600)
    if hours == 1:
        return "About an hour"
    if hours < 48:
        return f"{hours} hours"
    if hours < 24 * 7 * 2:
        return f"{hours // 24} days"
    if hours < 24 * 30 * 2:
        return f"{hours // 24 // 7} weeks"
    if hours < 24 * 365 * 2:
        return f"{hours // 24 // 30} months"
    return f"{hours // 24 // 365} years"


def ago(epoch: float) -> str:
    return duration(time.time() - epoch) + " ago"


# What strptime("%Y-%m-%dT%H:%M:%S") accepts, without importing _strptime (~1.5 ms of `ps`).
_STAMP = re.compile(r"(\d{4})-(\d{1,2})-(\d{1,2})T(\d{1,2}):(\d{1,2}):(\d{1,2})")


def _epoch(rfc3339: str) -> float | None:
    if not rfc3339 or rfc3339.startswith("0001"):
        return None
    body = rfc3339.rstrip("Z")
    whole, _, fraction = body.partition(".")
    match = _STAMP.fullmatch(whole)
    if match is None:
        return None
    try:
        parsed = datetime(*(int(part) for part in match.groups()), tzinfo=UTC)
    except ValueError:
        return None
    return parsed.timestamp() + float(f"0.{fraction or 0}")


def status(state: Any) -> str:
    """The STATUS column: `Up 3 minutes (healthy)`, `Exited (0) 2 seconds ago`, ..."""
    if state.status in ("running", "paused"):
        started = _epoch(state.started_at) or time.time()
        text = "Up " + duration(time.time() - started)
        if state.status == "paused":
            text += " (Paused)"
        elif state.health is not None:
            health = state.health.status
            text += f" ({'health: starting' if health == 'starting' else health})"
        return text
    if state.status == "restarting":
        return f"Restarting ({state.exit_code})"
    if state.status == "exited":
        finished = _epoch(state.finished_at)
        when = f" {ago(finished)}" if finished else ""
        return f"Exited ({state.exit_code}){when}"
    return state.status.capitalize()


_RELATIVE = re.compile(r"^(\d+(?:\.\d+)?)(s|m|h)$")


def since(text: str | None) -> str | None:
    """`--since`/`--until`: RFC 3339 as given, a Unix time, or a relative `10m`/`2h`/`30s`."""
    if not text:
        return None
    match = _RELATIVE.match(text)
    if match:
        factor = {"s": 1, "m": 60, "h": 3600}[match.group(2)]
        return iso(time.time() - float(match.group(1)) * factor)
    if re.fullmatch(r"\d+(\.\d+)?", text):
        return iso(float(text))
    return text
