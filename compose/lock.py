"""The project lock: one command at a time changes a project.

An exclusive `flock` on `<run dir>/compose/<project>.lock` (per engine root, on tmpfs). The
kernel drops it when the process dies, even by SIGKILL, so a killed command never leaves the
project locked. A second command waits, after saying what it waits for.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from engine.layout import Layout


@contextlib.contextmanager
def project_lock(layout: Layout, project: str,
                 say: Callable[[str], None] | None = None) -> Iterator[None]:
    directory = layout.run / "compose"
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(directory / f"{project}.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if say:
                say(f"waiting for another shipyard command on project {project}")
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock
