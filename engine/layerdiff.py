"""An overlayfs upper directory -> an OCI layer tarball (the change set of one build step).

The upper directory holds what a step added or changed, plus overlayfs' own marks for what
it removed: a whiteout (a 0:0 character device) for each deleted name and the xattr
`trusted.overlay.opaque=y` on a directory whose lower contents are hidden. In the layer these
become `.wh.<name>` files and a `.wh..wh..opq` entry (OCI image spec, "Representing Changes").

The tar is deterministic for a given tree: entries sorted by name (a directory before its
contents), PAX format, numeric owners without names, whole-second mtimes, hard links within
the layer kept as links. overlayfs' bookkeeping xattrs (`trusted.overlay.*`) are not copied;
a `redirect` or `metacopy` mark (overlay features that keep content elsewhere) is refused.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import stat
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from engine.errors import InvalidArgument

OPAQUE_XATTR = "trusted.overlay.opaque"
WHITEOUT = ".wh."
OPAQUE = ".wh..wh..opq"
GZIP_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
PLAIN_LAYER = "application/vnd.oci.image.layer.v1.tar"
_REFUSED_XATTRS = ("trusted.overlay.redirect", "trusted.overlay.metacopy")


@dataclass(frozen=True, slots=True)
class LayerBlob:
    """A layer written to the content store."""

    digest: str          # of the blob as stored (compressed)
    size: int
    media_type: str
    diff_id: str         # of the uncompressed tar
    tar_size: int
    entries: int


def is_whiteout(st: os.stat_result) -> bool:
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


def entries(upper: Path) -> Iterator[tuple[str, os.stat_result, str]]:
    """(name in the layer, lstat, host path) of everything in `upper`, sorted, parents
    first. Whiteouts come out as `.wh.` names; opaque directories are followed by their
    `.wh..wh..opq` marker (with the directory's stat)."""

    def below(directory: str, prefix: str) -> Iterator[tuple[str, os.stat_result, str]]:
        with os.scandir(directory) as it:
            items = sorted(it, key=lambda e: e.name)
        for entry in items:
            name = f"{prefix}{entry.name}"
            st = entry.stat(follow_symlinks=False)
            if is_whiteout(st):
                yield f"{prefix}{WHITEOUT}{entry.name}", st, entry.path
                continue
            _check_xattrs(entry.path, name)
            yield name, st, entry.path
            if stat.S_ISDIR(st.st_mode):
                if _opaque(entry.path):
                    yield f"{name}/{OPAQUE}", st, entry.path
                yield from below(entry.path, name + "/")

    if _opaque(str(upper)):
        yield OPAQUE, os.lstat(upper), str(upper)
    yield from below(str(upper), "")


def is_empty(upper: Path) -> bool:
    try:
        return not os.listdir(upper) and not _opaque(str(upper))
    except FileNotFoundError:
        return True


def write_tar(upper: Path, out: BinaryIO) -> int:
    """Writes the layer tar of `upper` to `out`; returns the number of entries."""
    count = 0
    links: dict[tuple[int, int], str] = {}
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        for name, st, path in entries(upper):
            info = tarfile.TarInfo(name)
            info.uid, info.gid = st.st_uid, st.st_gid
            info.uname = info.gname = ""
            info.mtime = int(st.st_mtime)
            info.mode = stat.S_IMODE(st.st_mode)
            base = name.rsplit("/", 1)[-1]
            if base.startswith(WHITEOUT):
                info.type, info.size, info.mode = tarfile.REGTYPE, 0, 0
                tar.addfile(info)
                count += 1
                continue
            info.pax_headers = _xattr_headers(path)
            fileobj = None
            if stat.S_ISDIR(st.st_mode):
                info.type = tarfile.DIRTYPE
            elif stat.S_ISREG(st.st_mode):
                key = (st.st_dev, st.st_ino)
                if st.st_nlink > 1 and key in links:
                    info.type, info.linkname = tarfile.LNKTYPE, links[key]
                else:
                    if st.st_nlink > 1:
                        links[key] = name
                    info.type, info.size = tarfile.REGTYPE, st.st_size
                    fileobj = open(path, "rb")  # noqa: SIM115 (closed below)
            elif stat.S_ISLNK(st.st_mode):
                info.type, info.linkname = tarfile.SYMTYPE, os.readlink(path)
            elif stat.S_ISFIFO(st.st_mode):
                info.type = tarfile.FIFOTYPE
            elif stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
                info.type = tarfile.CHRTYPE if stat.S_ISCHR(st.st_mode) else tarfile.BLKTYPE
                info.devmajor, info.devminor = os.major(st.st_rdev), os.minor(st.st_rdev)
            else:
                continue  # sockets have no place in a layer
            try:
                tar.addfile(info, fileobj)
            finally:
                if fileobj is not None:
                    fileobj.close()
            count += 1
    return count


class _Tee:
    """Hashes and counts the uncompressed tar, and passes it on to `sink`."""

    def __init__(self, sink: BinaryIO) -> None:
        self.sink = sink
        self.hash = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self.hash.update(data)
        self.size += len(data)
        self.sink.write(data)
        return len(data)


def store_layer(upper: Path, content, *, compress: bool = True,
                level: int = 6) -> LayerBlob:
    """Writes the layer of `upper` into `content` (an engine.content.ContentStore), gzip
    compressed (deterministically: no name, mtime 0) unless `compress` is False."""
    with content.ingest() as ingest:
        if compress:
            gz = gzip.GzipFile(filename="", mode="wb", fileobj=ingest, compresslevel=level,
                               mtime=0)
            tee = _Tee(gz)  # type: ignore[arg-type]
            count = write_tar(upper, tee)  # type: ignore[arg-type]
            gz.close()
        else:
            tee = _Tee(ingest)  # type: ignore[arg-type]
            count = write_tar(upper, tee)  # type: ignore[arg-type]
        blob = ingest.commit()
    return LayerBlob(blob.digest, blob.size, GZIP_LAYER if compress else PLAIN_LAYER,
                     "sha256:" + tee.hash.hexdigest(), tee.size, count)


def _opaque(path: str) -> bool:
    try:
        return os.getxattr(path, OPAQUE_XATTR, follow_symlinks=False) == b"y"
    except OSError:
        return False


def _xattr_names(path: str) -> list[str]:
    try:
        return os.listxattr(path, follow_symlinks=False)
    except OSError:
        return []


def _check_xattrs(path: str, name: str) -> None:
    for key in _xattr_names(path):
        if key in _REFUSED_XATTRS:
            raise InvalidArgument(f"{name}: the overlay filesystem marked it with {key}, "
                                  "which a layer cannot represent (mount the build overlay "
                                  "with redirect_dir=off,metacopy=off)")


def _xattr_headers(path: str) -> dict[str, str]:
    out = {}
    for key in sorted(_xattr_names(path)):
        if key.startswith("trusted.overlay."):
            continue
        try:
            value = os.getxattr(path, key, follow_symlinks=False)
        except OSError:
            continue
        out["SCHILY.xattr." + key] = value.decode("utf-8", "surrogateescape")
    return out
