"""Small tar archives built in memory, for image and layer tests."""

from __future__ import annotations

import io
import tarfile


def tar_bytes(files: dict[str, bytes], mode: int = 0o644) -> bytes:
    """A plain tar holding `files` (path -> content), each with `mode`."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), mode
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()
