"""The safe tar unpacker: one (possibly compressed) layer tarball -> a directory tree.

`extract()` reads the layer as a stream, hashes the uncompressed bytes (the diff_id) while
extracting, and never seeks backwards. Whiteouts become overlayfs whiteouts: `.wh.NAME` a 0:0
character device, `.wh..wh..opq` the xattr trusted.overlay.opaque=y on its directory (both
need root).

Layer tarballs are UNTRUSTED. Every path is checked (no absolute names, no `..`, no NUL),
and every file is created relative to a directory fd opened with O_NOFOLLOW, so no member is
ever written through a symlink (`a -> /etc` then `a/passwd` is refused, not followed). Hard
links must point at something already unpacked in the same layer. Refusals name the member
and the reason; the caller removes the half-made tree.
"""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
import stat
import tarfile
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from engine.compression import decompressed, decompression_errors
from engine.errors import InvalidArgument, Unavailable

CHUNK = 1 << 20
OPAQUE_XATTR = "trusted.overlay.opaque"
WHITEOUT_PREFIX = ".wh."
OPAQUE_NAME = ".wh..wh..opq"
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_FD_CACHE = 64


@dataclass(frozen=True, slots=True)
class Extracted:
    """What `extract` made: the diff_id (sha256 of the uncompressed tar), that tar's length,
    and the bytes of regular-file content."""

    diff_id: str
    tar_size: int
    content_size: int


def extract(stream: BinaryIO, dest: Path, name: str,
            allow_devices: bool | None = None) -> Extracted:
    """Extracts the layer `stream` into the existing empty directory `dest`.

    `name` is used in messages; `allow_devices` defaults to "running as root". Raises
    InvalidArgument (hostile or corrupt input) or Unavailable (needs root); `dest` may then
    hold a partial tree, which the caller removes."""
    errors = (tarfile.TarError, *decompression_errors())
    hashing: _Hashing | None = None
    try:
        _, plain = decompressed(stream)
        hashing = _Hashing(plain)
        extractor = _Extractor(dest, allow_devices)
        try:
            with tarfile.open(fileobj=hashing, mode="r:") as tar:  # type: ignore[call-overload]
                while (member := tar.next()) is not None:
                    extractor.add(tar, member)
                    tar.members.clear()  # tarfile would keep every TarInfo otherwise
            extractor.finish()
        finally:
            extractor.close()
        hashing.drain()  # the diff_id covers the end-of-archive padding too
    except _Refused as refused:
        cls = Unavailable if refused.unavailable else InvalidArgument
        raise cls(f"{name}: refusing member {refused.member!r}: {refused.why}") from None
    except errors as error:
        raise InvalidArgument(f"{name}: not a valid (possibly compressed) tar archive: "
                              f"{error or type(error).__name__}") from None
    return Extracted("sha256:" + hashing.hash.hexdigest(), hashing.size,
                     extractor.content_size)


class _Hashing:
    """A forward-only "seekable" view of a stream that hashes and counts every byte (the
    diff_id). tarfile's random-access mode only seeks forward over a stream read in order,
    and it avoids the stream mode's buffer copying (quadratic in the buffer size)."""

    def __init__(self, raw: BinaryIO) -> None:
        self.raw = raw
        self.hash = hashlib.sha256()
        self.size = 0

    def read(self, size: int = -1) -> bytes:
        data = self.raw.read(size)
        self.hash.update(data)
        self.size += len(data)
        return data

    def tell(self) -> int:
        return self.size

    def seek(self, offset: int, whence: int = 0) -> int:
        target = offset if whence == 0 else self.size + offset if whence == 1 else -1
        if target < self.size:
            raise tarfile.ReadError("the layer stream cannot seek backwards")
        while self.size < target and self.read(min(CHUNK, target - self.size)):
            pass
        return self.size

    def seekable(self) -> bool:
        return True

    def drain(self) -> None:
        while self.read(CHUNK):
            pass


class _Refused(Exception):
    def __init__(self, member: str, why: str, unavailable: bool = False) -> None:
        super().__init__(member, why)
        self.member, self.why, self.unavailable = member, why, unavailable


def components(name: str) -> tuple[str, ...]:
    """The checked path components of a member name; raises _Refused for hostile names."""
    if "\x00" in name:
        raise _Refused(name, "the name contains a NUL byte")
    if name.startswith("/"):
        raise _Refused(name, "absolute paths are not allowed in a layer")
    parts = tuple(p for p in name.split("/") if p not in ("", "."))
    if ".." in parts:
        raise _Refused(name, "'..' path components are not allowed in a layer")
    return parts


class _Extractor:
    """Creates members below a root directory fd, never following a symlink."""

    def __init__(self, dest: Path, allow_devices: bool | None) -> None:
        root = os.geteuid() == 0
        self.allow_devices = root if allow_devices is None else allow_devices
        self.owner = root
        self.root_fd = os.open(dest, _DIR_FLAGS)
        self.cache: OrderedDict[tuple[str, ...], int] = OrderedDict()
        self.dirs: dict[tuple[str, ...], tarfile.TarInfo | None] = {(): None}
        self.content_size = 0

    # -- directory fds -------------------------------------------------------------------

    def _dir_fd(self, parts: tuple[str, ...], member: str, create: bool = True) -> int:
        """An fd for directory `parts` (created as needed), refusing symlinked parents."""
        if not parts:
            return self.root_fd
        fd = self.cache.get(parts)
        if fd is not None:
            self.cache.move_to_end(parts)
            return fd
        parent = self._dir_fd(parts[:-1], member, create)
        comp = parts[-1]
        try:
            fd = os.open(comp, _DIR_FLAGS, dir_fd=parent)
        except FileNotFoundError:
            if not create:
                raise _Refused(member, f"{'/'.join(parts)} does not exist in the layer") from None
            os.mkdir(comp, 0o755, dir_fd=parent)
            self.dirs.setdefault(parts, None)
            fd = os.open(comp, _DIR_FLAGS, dir_fd=parent)
        except OSError as error:
            if error.errno not in (errno.ELOOP, errno.ENOTDIR):
                raise
            st = os.stat(comp, dir_fd=parent, follow_symlinks=False)
            what = "a symlink (writing through symlinks is refused)" if stat.S_ISLNK(
                st.st_mode) else "not a directory"
            raise _Refused(member, f"parent {'/'.join(parts)} is {what}") from None
        self.cache[parts] = fd
        return fd

    def _trim(self) -> None:
        """Bounds the fd cache; called between members so no fd in use is closed."""
        while len(self.cache) > _FD_CACHE:
            os.close(self.cache.popitem(last=False)[1])

    def _forget_dirs(self) -> None:
        for fd in self.cache.values():
            os.close(fd)
        self.cache.clear()

    def close(self) -> None:
        self._forget_dirs()
        os.close(self.root_fd)

    # -- members -------------------------------------------------------------------------

    def add(self, tar: tarfile.TarFile, m: tarfile.TarInfo) -> None:
        self._trim()
        parts = components(m.name)
        if not parts:
            if not m.isdir():
                raise _Refused(m.name, "only a directory may name the layer root")
            self.dirs[()] = m
            return
        base = parts[-1]
        if base.startswith(WHITEOUT_PREFIX):
            self._whiteout(m, parts)
            return
        pfd = self._dir_fd(parts[:-1], m.name)
        if m.isdir():
            self._make_dir(m, parts, pfd)
        elif m.isreg():
            self._make_file(tar, m, parts, pfd)
        elif m.issym():
            if "\x00" in m.linkname:
                raise _Refused(m.name, "the symlink target contains a NUL byte")
            self._clear(parts, pfd)
            os.symlink(m.linkname, base, dir_fd=pfd)
            self._set_owner_and_times(m, base, pfd)
        elif m.islnk():
            self._make_hardlink(m, parts, pfd)
        elif m.ischr() or m.isblk():
            if not self.allow_devices:
                raise _Refused(m.name, "device nodes are only unpacked as root (CAP_MKNOD)",
                               unavailable=True)
            kind = stat.S_IFCHR if m.ischr() else stat.S_IFBLK
            self._clear(parts, pfd)
            os.mknod(base, kind | 0o600, os.makedev(m.devmajor, m.devminor), dir_fd=pfd)
            self._set_owner_and_times(m, base, pfd, mode=True)
        elif m.isfifo():
            self._clear(parts, pfd)
            os.mkfifo(base, 0o600, dir_fd=pfd)
            self._set_owner_and_times(m, base, pfd, mode=True)
        else:
            raise _Refused(m.name, f"unsupported member type {m.type!r}")

    def _whiteout(self, m: tarfile.TarInfo, parts: tuple[str, ...]) -> None:
        base = parts[-1]
        pfd = self._dir_fd(parts[:-1], m.name)
        if base == OPAQUE_NAME:
            try:
                os.setxattr(pfd, OPAQUE_XATTR, b"y")
            except PermissionError:
                raise _Refused(m.name, "opaque directories need root (trusted.* xattrs)",
                               unavailable=True) from None
            return
        if base.startswith(WHITEOUT_PREFIX * 2):
            return  # aufs bookkeeping (.wh..wh.plnk and friends): not part of the tree
        target = base[len(WHITEOUT_PREFIX):]
        if target in ("", ".", ".."):
            raise _Refused(m.name, "a whiteout must name a file")
        if _lexists(target, pfd):
            return  # whiteouts hide lower layers only; this layer's own entry stays
        try:
            os.mknod(target, stat.S_IFCHR | 0o000, os.makedev(0, 0), dir_fd=pfd)
        except PermissionError:
            raise _Refused(m.name, "whiteouts need root (overlayfs whiteouts are 0:0 "
                           "character devices)", unavailable=True) from None

    def _make_dir(self, m: tarfile.TarInfo, parts: tuple[str, ...], pfd: int) -> None:
        base = parts[-1]
        try:
            st = os.stat(base, dir_fd=pfd, follow_symlinks=False)
        except FileNotFoundError:
            st = None
        if st is not None and not stat.S_ISDIR(st.st_mode):
            self._clear(parts, pfd)
            st = None
        if st is None:
            os.mkdir(base, 0o755, dir_fd=pfd)
        # Applied at the end: adding children would change the mtime, and a read-only mode
        # would stop a non-root unpack from adding them.
        self.dirs[parts] = m

    def _make_file(self, tar: tarfile.TarFile, m: tarfile.TarInfo, parts: tuple[str, ...],
                   pfd: int) -> None:
        self._clear(parts, pfd)
        fd = os.open(parts[-1], _FILE_FLAGS, 0o600, dir_fd=pfd)
        with os.fdopen(fd, "wb") as out:
            source = tar.extractfile(m)
            if source is not None:
                shutil.copyfileobj(source, out, CHUNK)
            out.flush()
            self._set_fd_metadata(m, out.fileno())
        self.content_size += m.size

    def _make_hardlink(self, m: tarfile.TarInfo, parts: tuple[str, ...], pfd: int) -> None:
        try:
            target = components(m.linkname)
        except _Refused as refused:
            raise _Refused(m.name, f"hard link target {m.linkname!r}: {refused.why}") from None
        if not target:
            raise _Refused(m.name, "a hard link cannot point at the layer root")
        if target == parts:
            return
        tfd = self._dir_fd(target[:-1], m.name, create=False)
        try:
            st = os.stat(target[-1], dir_fd=tfd, follow_symlinks=False)
        except FileNotFoundError:
            raise _Refused(m.name, f"hard link target {m.linkname!r} does not exist in the "
                           "layer") from None
        if stat.S_ISDIR(st.st_mode):
            raise _Refused(m.name, f"hard link target {m.linkname!r} is a directory")
        if target[:len(parts)] == parts:
            raise _Refused(m.name, f"hard link target {m.linkname!r} lies inside it")
        self._clear(parts, pfd)
        tfd = self._dir_fd(target[:-1], m.name, create=False)
        os.link(target[-1], parts[-1], src_dir_fd=tfd, dst_dir_fd=pfd, follow_symlinks=False)

    def _clear(self, parts: tuple[str, ...], pfd: int) -> None:
        """Removes an earlier entry of this layer with the same name (the later one wins).

        `pfd` (the parent's fd) stays valid; cached fds below a removed directory go."""
        try:
            os.unlink(parts[-1], dir_fd=pfd)
        except FileNotFoundError:
            pass
        except IsADirectoryError:
            for key in [k for k in self.cache if k[:len(parts)] == parts]:
                os.close(self.cache.pop(key))
            for key in [k for k in self.dirs if k[:len(parts)] == parts]:
                del self.dirs[key]
            shutil.rmtree(parts[-1], dir_fd=pfd)

    # -- metadata ------------------------------------------------------------------------

    def _set_fd_metadata(self, m: tarfile.TarInfo, fd: int) -> None:
        if self.owner:
            try:
                os.fchown(fd, m.uid, m.gid)
            except OverflowError:
                raise _Refused(m.name, f"uid/gid {m.uid}/{m.gid} out of range") from None
        # chown clears setuid/setgid and file capabilities: mode and xattrs come after it.
        os.fchmod(fd, m.mode & 0o7777)
        for key, value in _xattrs(m):
            try:
                os.setxattr(fd, key, value)
            except OSError as error:
                if error.errno not in (errno.EPERM, errno.ENOTSUP, errno.EACCES):
                    raise
        _utime(m, fd)

    def _set_owner_and_times(self, m: tarfile.TarInfo, base: str, pfd: int,
                             mode: bool = False) -> None:
        if self.owner:
            try:
                os.chown(base, m.uid, m.gid, dir_fd=pfd, follow_symlinks=False)
            except OverflowError:
                raise _Refused(m.name, f"uid/gid {m.uid}/{m.gid} out of range") from None
        if mode:  # only for nodes we just created that are not symlinks
            os.chmod(base, m.mode & 0o7777, dir_fd=pfd)
        _utime(m, base, pfd)

    def finish(self) -> None:
        """Applies directory metadata, deepest first (after all children exist)."""
        for parts in sorted(self.dirs, key=len, reverse=True):
            m = self.dirs[parts]
            self._trim()
            fd = self._dir_fd(parts, "/".join(parts) or ".", create=False)
            if m is None:
                os.fchmod(fd, 0o755)
            else:
                self._set_fd_metadata(m, fd)
        self._forget_dirs()


def _xattrs(m: tarfile.TarInfo) -> Iterator[tuple[str, bytes]]:
    for key, value in m.pax_headers.items():
        if not key.startswith("SCHILY.xattr."):
            continue
        name = key[len("SCHILY.xattr."):]
        # The layer must not steer overlayfs (redirects, opaque flags, metacopy).
        if name.startswith("trusted.overlay.") or not name:
            continue
        yield name, value.encode("utf-8", "surrogateescape")


def _utime(m: tarfile.TarInfo, target: int | str, dir_fd: int | None = None) -> None:
    try:
        ns = int(m.mtime * 1_000_000_000)
        if isinstance(target, int):
            os.utime(target, ns=(ns, ns))
        else:
            os.utime(target, ns=(ns, ns), dir_fd=dir_fd, follow_symlinks=False)
    except (OverflowError, ValueError):
        pass  # an absurd mtime is not worth refusing the layer for


def _lexists(name: str, dir_fd: int) -> bool:
    try:
        os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        return True
    except FileNotFoundError:
        return False
