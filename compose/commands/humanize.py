"""Times and states as Docker's CLI prints them ("2 minutes ago", "Up 3 seconds")."""

from __future__ import annotations

import re
import time
from typing import Any

# Not `datetime`: importing it costs `ps` ~2-3 ms; these few conversions are arithmetic.


def iso(epoch: float) -> str:
    """RFC 3339 in UTC with microseconds, rounded as `datetime.fromtimestamp` does: the
    fraction alone (exact: the whole seconds taken off), half to even. (Rounding the
    product epoch * 10**6 instead differs by a microsecond from time to time.)"""
    seconds = int(epoch)
    micro = round((epoch - seconds) * 1e6)
    if micro >= 1_000_000:
        seconds, micro = seconds + 1, micro - 1_000_000
    elif micro < 0:
        seconds, micro = seconds - 1, micro + 1_000_000
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{micro:06d}Z"


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
    year, month, day, hour, minute, second = (int(part) for part in match.groups())
    if not (year >= 1 and 1 <= month <= 12 and 1 <= day <= _month_days(year, month)
            and hour < 24 and minute < 60 and second < 60):  # (datetime's checks)
        return None
    days = _days_since_epoch(year, month, day)
    return float(days * 86400 + hour * 3600 + minute * 60 + second) + float(f"0.{fraction or 0}")


def _month_days(year: int, month: int) -> int:
    if month == 2:
        return 29 if year % 4 == 0 and (year % 100 != 0 or year % 400 == 0) else 28
    return 30 if month in (4, 6, 9, 11) else 31


def _days_since_epoch(year: int, month: int, day: int) -> int:
    """Days from 1970-01-01 to the given date of the proleptic Gregorian calendar (the
    count of whole 400-year eras, then of the years, then of the days of the year when
    it starts in March, so that a leap day falls at its end)."""
    year -= month <= 2
    era = year // 400
    of_era = year - era * 400
    of_year = (153 * (month - 3 if month > 2 else month + 9) + 2) // 5 + day - 1
    return era * 146097 + of_era * 365 + of_era // 4 - of_era // 100 + of_year - 719468


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
