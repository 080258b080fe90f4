"""Writes the secret/config files (`translate.FileSource`) a container mounts, before the
container is created."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from compose.translate import FileSource


def write_source(source: FileSource) -> None:
    """Writes `source` atomically (temporary file, then rename) with its mode and owner;
    its directory is made private (0700) when missing."""
    os.makedirs(os.path.dirname(source.path), mode=0o700, exist_ok=True)
    tmp = f"{source.path}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(source.content)
    if source.uid is not None or source.gid is not None:
        os.chown(tmp, source.uid if source.uid is not None else -1,
                 source.gid if source.gid is not None else -1)
    os.chmod(tmp, source.mode)
    os.replace(tmp, source.path)
