"""Paths inside a container's root filesystem, resolved as the container would resolve them.

Stdlib only and light: the engine (reading an image's /etc/passwd before start) and the
container's init (mount targets, device nodes) both use it.
"""

from __future__ import annotations

import errno
import os

MAX_LINKS = 255


def secure_join(root: str, path: str) -> str:
    """`path` inside `root`, resolving symlinks as if `root` were `/` (no escape). Raises
    OSError(ELOOP) after too many links."""
    parts = [p for p in path.split("/") if p and p != "."]
    resolved: list[str] = []
    hops = 0
    while parts:
        part = parts.pop(0)
        if part == "..":
            if resolved:
                resolved.pop()
            continue
        candidate = os.path.join(root, *resolved, part)
        try:
            target = os.readlink(candidate)
        except OSError:
            resolved.append(part)
            continue
        hops += 1
        if hops > MAX_LINKS:
            raise OSError(errno.ELOOP, f"too many levels of symbolic links in {path}")
        if target.startswith("/"):
            resolved = []
        parts = [p for p in target.split("/") if p and p != "."] + parts
    return os.path.join(root, *resolved)
