"""The exit hook: releases a container's network once its process stopped for good.

The shim runs `exit_hook_argv(...) + [lock fd]` when the container stops on its own (no
restart pending, no engine command waiting on it). It holds the container's lock for us, so
no `start`, `stop` or `rm` interleaves; `Containers.release` does the rest (and does nothing
if the container was started again in the meantime).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

_PACKAGE_PARENT = str(Path(__file__).resolve().parent.parent)


def exit_hook_argv(root: str | os.PathLike[str], container_id: str) -> list[str]:
    """The command the shim runs (it appends the fd of the lock it holds)."""
    code = (f"import sys; sys.path.insert(0, {_PACKAGE_PARENT!r}); "
            "from engine import reaper; reaper.main(sys.argv[1:])")
    return [sys.executable, "-I", "-c", code, os.fspath(root), container_id]


def main(argv: list[str]) -> None:
    from engine import Engine
    from engine.errors import NotFound

    root, container_id, lock_fd = argv[0], argv[1], int(argv[2])
    containers = Engine(root).containers
    try:
        container = containers.get(container_id)
    except NotFound:
        return
    try:
        with containers.adopt_lock(container.id, lock_fd):
            containers.release(container)
    except Exception as e:  # stderr is the shim's log; the next stop or rm converges
        print(f"exit hook: releasing {container.name}: {e}", file=sys.stderr)
