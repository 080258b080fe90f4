"""Looking up mounts in /proc/self/mountinfo (proc(5)).

The kernel escapes space, tab, newline and backslash in paths as `\\ooo` octal; the target
path is escaped once here and compared with the raw field, so a lookup costs one pass over
the file with a substring test per line, and paths with spaces match.
"""

from __future__ import annotations

import os

MOUNTINFO = "/proc/self/mountinfo"
_ESCAPES = {"\\": "\\134", " ": "\\040", "\t": "\\011", "\n": "\\012"}


def escape(path: str) -> str:
    """`path` as mountinfo spells it."""
    return "".join(_ESCAPES.get(c, c) for c in path)


def find(path: str | os.PathLike[str]) -> list[str] | None:
    """The fields of the last (topmost) mount whose mount point is `path` (absolute, as
    given: no symlinks resolved), or None when nothing is mounted there."""
    target = escape(os.fspath(path))
    found = None
    try:
        with open(MOUNTINFO) as f:
            for line in f:
                if target in line:
                    fields = line.split()
                    if fields[4] == target:
                        found = fields
    except FileNotFoundError:
        return None
    return found


def fstype(fields: list[str]) -> str:
    """The filesystem type of a mount's fields (the first field after the `-`)."""
    return fields[fields.index("-") + 1]


def is_shared(fields: list[str]) -> bool:
    """True when the mount has shared propagation (an optional `shared:N` field)."""
    return any(f.startswith("shared:") for f in fields[6:fields.index("-")])
