"""Compressed streams -> plain bytes: gzip, zstd, xz or bzip2, detected by magic bytes.

Cheap to import: each decompressor (gzip, zstandard, lzma, bz2) is imported only when a
stream of its kind turns up. `decompression_errors()` lists the exceptions a corrupt or
truncated stream raises, for callers that turn them into one InvalidArgument.
"""

from __future__ import annotations

import io
from typing import BinaryIO

MAGIC = ((b"\x1f\x8b", "gzip"), (b"\x28\xb5\x2f\xfd", "zstd"),
         (b"\xfd7zXZ\x00", "xz"), (b"BZh", "bzip2"))


def detect_compression(head: bytes) -> str:
    """'gzip' | 'zstd' | 'xz' | 'bzip2' | 'none', from the first bytes of a stream."""
    for magic, name in MAGIC:
        if head.startswith(magic):
            return name
    return "none"


def decompressed(raw: BinaryIO) -> tuple[str, BinaryIO]:
    """(compression, reader of the uncompressed bytes) for `raw`, detected by magic. The
    reader's `read(n)` returns n bytes unless the stream ends."""
    head = raw.read(6)
    kind = detect_compression(head)
    source: BinaryIO = _Prefixed(head, raw)  # type: ignore[assignment]
    if kind == "gzip":
        import gzip
        return kind, _Prefixed(b"", gzip.GzipFile(fileobj=source, mode="rb"))  # type: ignore
    if kind == "zstd":
        import zstandard
        reader = zstandard.ZstdDecompressor().stream_reader(source, read_across_frames=True)
        return kind, _Prefixed(b"", reader)  # type: ignore[return-value]
    if kind == "xz":
        import lzma
        return kind, _Prefixed(b"", lzma.LZMAFile(source))  # type: ignore[return-value]
    if kind == "bzip2":
        import bz2
        return kind, _Prefixed(b"", bz2.BZ2File(source))  # type: ignore[return-value]
    return kind, source


def decompression_errors() -> tuple[type[BaseException], ...]:
    """The exceptions a truncated or corrupt compressed stream raises while it is read."""
    import gzip
    import lzma
    import zlib

    errors: tuple[type[BaseException], ...] = (EOFError, zlib.error, gzip.BadGzipFile,
                                               lzma.LZMAError)
    try:
        import zstandard
    except ImportError:
        return errors
    return (*errors, zstandard.ZstdError)


class _Prefixed(io.RawIOBase):
    """`head` followed by the rest of `raw` (the magic bytes we peeked)."""

    def __init__(self, head: bytes, raw: BinaryIO) -> None:
        self._head = head
        self._raw = raw

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        """Reads up to `size` bytes, short only at the end (some callers need full reads)."""
        if size is None or size < 0:
            data, self._head = self._head + self._raw.read(), b""
            return data
        data, self._head = self._head[:size], self._head[size:]
        while len(data) < size:
            more = self._raw.read(size - len(data))
            if not more:
                break
            data += more
        return data

    def readinto(self, buffer) -> int:  # type: ignore[override]
        data = self.read(len(buffer))
        buffer[:len(data)] = data
        return len(data)
