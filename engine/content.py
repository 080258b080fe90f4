"""Content-addressable blobs: `<root>/blobs/sha256/<hex>`, written only through `ingest/`.

Contract: a blob under `blobs/` always holds exactly the bytes its name hashes to. Writers
stream into a temporary file under `layout.ingest`, the sha256 is computed on the way, and
only a verified file is renamed into place (atomic on one filesystem). A digest or size
mismatch raises `InvalidArgument` and leaves nothing behind. Blobs are immutable; readers
never see a partial one.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from engine.errors import InvalidArgument, NotFound
from engine.layout import Layout

CHUNK = 1 << 20
_DIGEST = re.compile(r"sha256:([0-9a-f]{64})")


def parse_digest(digest: str) -> str:
    """Returns the hex part of a `sha256:<64 hex>` digest; anything else is InvalidArgument."""
    match = _DIGEST.fullmatch(digest or "")
    if not match:
        raise InvalidArgument(f"invalid digest {digest!r} (expected sha256:<64 hex digits>)")
    return match.group(1)


def sha256_digest(data: bytes) -> str:
    import hashlib  # (here: commands that only look images up need not load OpenSSL)

    return "sha256:" + hashlib.sha256(data).hexdigest()


@dataclass(frozen=True, slots=True)
class Blob:
    """A blob in the content store: its digest and size in bytes."""

    digest: str
    size: int


class Ingest:
    """One blob being written: `write()` chunks, then `commit()` (or `abort()`).

    Use as a context manager: leaving without commit (or with an exception) aborts."""

    def __init__(self, store: ContentStore, expected: str | None, expected_size: int | None):
        if expected is not None:
            parse_digest(expected)
        self._store = store
        self._expected = expected
        self._expected_size = expected_size
        import hashlib
        import tempfile

        self._hash = hashlib.sha256()
        self.size = 0
        store.layout.ingest.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix="blob-", dir=store.layout.ingest)
        self._path = Path(name)
        self._file: BinaryIO | None = os.fdopen(fd, "wb")

    def write(self, data: bytes) -> None:
        assert self._file is not None, "ingest already finished"
        self._hash.update(data)
        self.size += len(data)
        self._file.write(data)

    def commit(self) -> Blob:
        """Verifies and moves the blob into place; returns its digest and size."""
        assert self._file is not None, "ingest already finished"
        self._file.close()
        self._file = None
        digest = "sha256:" + self._hash.hexdigest()
        try:
            if self._expected is not None and digest != self._expected:
                raise InvalidArgument(
                    f"content digest mismatch: expected {self._expected}, got {digest}")
            if self._expected_size is not None and self.size != self._expected_size:
                raise InvalidArgument(
                    f"content size mismatch for {digest}: expected {self._expected_size} "
                    f"bytes, got {self.size}")
            target = self._store.path(digest)
            target.parent.mkdir(parents=True, exist_ok=True)
            os.chmod(self._path, 0o644)
            os.replace(self._path, target)
        finally:
            self._path.unlink(missing_ok=True)
        return Blob(digest, self.size)

    def abort(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        self._path.unlink(missing_ok=True)

    def __enter__(self) -> Ingest:
        return self

    def __exit__(self, *exc: object) -> None:
        self.abort()


class ContentStore:
    """The blob store of one engine root."""

    def __init__(self, layout: Layout) -> None:
        self.layout = layout

    def path(self, digest: str) -> Path:
        return self.layout.blobs / parse_digest(digest)

    def exists(self, digest: str) -> bool:
        return self.path(digest).is_file()

    def size(self, digest: str) -> int:
        try:
            return self.path(digest).stat().st_size
        except FileNotFoundError:
            raise NotFound(f"blob {digest} not found") from None

    def open(self, digest: str) -> BinaryIO:
        try:
            return open(self.path(digest), "rb")
        except FileNotFoundError:
            raise NotFound(f"blob {digest} not found") from None

    def read(self, digest: str) -> bytes:
        with self.open(digest) as f:
            return f.read()

    def ingest(self, expected: str | None = None, expected_size: int | None = None) -> Ingest:
        return Ingest(self, expected, expected_size)

    def write(self, data: bytes, expected: str | None = None) -> Blob:
        with self.ingest(expected, None) as ingest:
            ingest.write(data)
            return ingest.commit()

    def write_stream(self, stream: BinaryIO, expected: str | None = None,
                     expected_size: int | None = None) -> Blob:
        """Copies `stream` to its end into the store. If `expected` is already present the
        stream is still read and verified (it is untrusted), then dropped."""
        with self.ingest(expected, expected_size) as ingest:
            while chunk := stream.read(CHUNK):
                ingest.write(chunk)
            return ingest.commit()

    def delete(self, digest: str) -> bool:
        """Removes a blob; False if it was not there."""
        try:
            self.path(digest).unlink()
            return True
        except FileNotFoundError:
            return False

    def __iter__(self) -> Iterator[str]:
        try:
            names = sorted(os.listdir(self.layout.blobs))
        except FileNotFoundError:
            return
        for name in names:
            if re.fullmatch(r"[0-9a-f]{64}", name):
                yield "sha256:" + name
