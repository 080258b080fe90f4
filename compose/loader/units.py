"""Compose durations and byte sizes, parsed into float seconds and int bytes.

Durations (Compose Specification, "Specifying durations"): `{value}{unit}` terms, written
from the most to the least significant and concatenated, e.g. `1m30s`, `10s`, `1h`, `100ms`,
`2us`, `1.5s`; the units are `ns`, `us` (or `µs`), `ms`, `s`, `m`, `h`. A bare number (YAML
int or float, or a numeric string) counts as seconds.

Byte sizes (Compose Specification, "Specifying byte values"): `{amount}{unit}` with the units
`b`, `k`, `m`, `g` (also `t`, `p`), optionally followed by `b` or `ib` (`kb`, `mb`, `gb`, `gib`),
case-insensitive, binary multiples (`1k` = 1024). A bare integer counts as bytes. The amount may
be a decimal (`1.5g`), as Docker's own parser allows.
"""

from __future__ import annotations

import re

_DURATION_TERM = re.compile(r"([0-9]+(?:\.[0-9]*)?|\.[0-9]+)(ns|us|µs|μs|ms|s|m|h)")
_DURATION_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0,
                   "m": 60.0, "h": 3600.0}
_SIZE = re.compile(r"^([0-9]+(?:\.[0-9]+)?) ?([kmgtp]?)(i?b)?$", re.IGNORECASE)
_SIZE_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40, "p": 1 << 50}


def parse_duration(value: object) -> float:
    """`value` as seconds. Raises ValueError (message says what is expected) if invalid."""
    if isinstance(value, bool):
        raise ValueError(_duration_help(value))
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError(_duration_help(value))
        return float(value)
    if not isinstance(value, str):
        raise ValueError(_duration_help(value))
    text = value.strip()
    if re.fullmatch(r"[0-9]+(?:\.[0-9]+)?", text):
        return float(text)
    position = 0
    total = 0.0
    for match in _DURATION_TERM.finditer(text):
        if match.start() != position:
            break
        total += float(match.group(1)) * _DURATION_UNITS[match.group(2)]
        position = match.end()
    if position != len(text) or not text:
        raise ValueError(_duration_help(value))
    return total


def _duration_help(value: object) -> str:
    return (f"{_show(value)} is not a valid duration "
            "(expected e.g. 10s, 1m30s, 500ms, 2h; units us, ms, s, m, h)")


def parse_bytes(value: object) -> int:
    """`value` as bytes. Raises ValueError (message says what is expected) if invalid."""
    if isinstance(value, bool):
        raise ValueError(_bytes_help(value))
    if isinstance(value, int):
        if value < 0:
            raise ValueError(_bytes_help(value))
        return value
    if isinstance(value, float) and value >= 0 and value == int(value):
        return int(value)
    if not isinstance(value, str):
        raise ValueError(_bytes_help(value))
    match = _SIZE.match(value.strip())
    if not match:
        raise ValueError(_bytes_help(value))
    amount, unit, _ = match.groups()
    return int(float(amount) * _SIZE_UNITS[unit.lower()])


def _bytes_help(value: object) -> str:
    return (f"{_show(value)} is not a valid byte size "
            "(expected e.g. 512m, 1g, 1.5gb, 100k or a number of bytes)")


def _show(value: object) -> str:
    return f'"{value}"' if isinstance(value, str) else repr(value)


def format_duration(seconds: float) -> str:
    """A canonical text form that `parse_duration` reads back exactly: `1m30s`, `500ms`."""
    if seconds == 0:
        return "0s"
    micros = round(seconds * 1_000_000)
    if micros % 1_000_000:
        if micros % 1000 == 0:
            return f"{micros // 1000}ms"
        return f"{micros}us"
    whole = micros // 1_000_000
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    out = ""
    if hours:
        out += f"{hours}h"
    if minutes:
        out += f"{minutes}m"
    if secs:
        out += f"{secs}s"
    return out
