"""COPY and ADD into a build step's mounted root filesystem.

The destination is the image's filesystem, which is untrusted: every destination directory
is resolved inside the root with `prepare.in_root` (symlinks followed as the container would
see them, never out of the root), and each file is created with O_NOFOLLOW|O_EXCL, replacing
what was there (a directory is never replaced by a file). Files keep their mode and mtime;
the owner is 0:0 (COPY), `--chown`'s user and group, or, for archives ADD unpacks, the
archive's. Missing parent directories are created with mode 0755 and the `--chown` owner.
"""

from __future__ import annotations

import os
import posixpath
import shutil
import stat
import tarfile
import tempfile
from collections.abc import Sequence
from pathlib import Path

from engine.buildcontext import Ignore, Source, walk
from engine.errors import InvalidArgument

_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


def resolve_owner(chown: str, rootfs: Path, what: str) -> tuple[int, int]:
    """`user[:group]` (names or ids) -> (uid, gid), names looked up in the image's
    /etc/passwd and /etc/group; a missing group means gid = uid (Docker's rule)."""
    from engine.prepare import user_files
    from engine.spec import resolve_user

    user, _, group = chown.partition(":")
    passwd, groups = user_files(rootfs)
    try:
        uid = int(user) if user.isdigit() else resolve_user(user, passwd, groups)[0]
        if not group:
            return uid, uid
        gid = int(group) if group.isdigit() else resolve_user(f"0:{group}", passwd, groups)[1]
    except InvalidArgument as error:
        raise InvalidArgument(f"{what}: --chown={chown}: {error}") from None
    return uid, gid


def destination(dest: str, workdir: str) -> tuple[str, bool]:
    """(absolute container path, whether it names a directory)."""
    is_dir = dest.endswith("/") or dest in (".", "..") or dest.endswith(("/.", "/.."))
    path = dest if dest.startswith("/") else posixpath.join(workdir or "/", dest)
    return posixpath.normpath(path), is_dir


class Copier:
    """Writes sources into `rootfs` (a mounted build root)."""

    def __init__(self, rootfs: Path, *, owner: tuple[int, int] | None, chmod: int | None,
                 what: str, tmp: Path) -> None:
        self.rootfs = rootfs
        self.owner = owner
        self.chmod = chmod
        self.what = what
        self.tmp = tmp
        self._dirs: dict[str, Path] = {}

    def copy(self, sources: Sequence[Source], dest: str, workdir: str, ignore: Ignore,
             *, unpack_archives: bool = False) -> None:
        target, dest_is_dir = destination(dest, workdir)
        if len(sources) > 1 and not dest_is_dir:
            raise InvalidArgument(f"{self.what}: with more than one source file, the "
                                  "destination must be a directory and end with a /")
        for source in sources:
            if source.is_dir:
                self._tree(source, target, ignore, preserve_owner=False)
            elif unpack_archives and _is_archive(source.path):
                self._archive(source.path, target)
            else:
                path = target
                if dest_is_dir or self._is_dir(target):
                    path = posixpath.join(target, posixpath.basename(source.path.name))
                st = os.stat(source.path)
                self._file(source.path, st, path, preserve_owner=False)

    # -- pieces ------------------------------------------------------------------------------

    def _is_dir(self, cpath: str) -> bool:
        from engine.prepare import in_root

        return in_root(self.rootfs, cpath).is_dir()

    def _mkdirs(self, cpath: str) -> Path:
        """The host path of container directory `cpath`, created (with parents) if missing."""
        from engine.prepare import in_root

        cpath = posixpath.normpath(cpath)
        if cpath == "/":
            return self.rootfs
        found = self._dirs.get(cpath)
        if found is not None:
            return found
        self._mkdirs(posixpath.dirname(cpath))
        host = in_root(self.rootfs, cpath)
        if not os.path.lexists(host):
            # `host` is resolved, so its parent is the (existing) resolved parent.
            os.mkdir(host, 0o755)
            if self.owner is not None:
                os.chown(host, *self.owner)
        elif not host.is_dir():
            raise InvalidArgument(f"{self.what}: cannot copy into {cpath}: it exists and is "
                                  "not a directory")
        self._dirs[cpath] = host
        return host

    def _owner(self, st: os.stat_result, preserve: bool) -> tuple[int, int]:
        if self.owner is not None:
            return self.owner
        return (st.st_uid, st.st_gid) if preserve else (0, 0)

    def _mode(self, st: os.stat_result) -> int:
        return self.chmod if self.chmod is not None else stat.S_IMODE(st.st_mode)

    def _clear(self, host: Path, for_dir: bool, cpath: str) -> bool:
        """Makes room at `host`; True when a directory is already there (kept)."""
        try:
            st = os.lstat(host)
        except FileNotFoundError:
            return False
        if stat.S_ISDIR(st.st_mode):
            if not for_dir:
                raise InvalidArgument(f"{self.what}: cannot overwrite directory {cpath} with "
                                      "a non-directory")
            return True
        os.unlink(host)
        return False

    def _file(self, src: Path, st: os.stat_result, cpath: str, preserve_owner: bool) -> None:
        parent = self._mkdirs(posixpath.dirname(cpath))
        host = parent / posixpath.basename(cpath)
        self._clear(host, False, cpath)
        uid, gid = self._owner(st, preserve_owner)
        if stat.S_ISLNK(st.st_mode):
            os.symlink(os.readlink(src), host)
            os.chown(host, uid, gid, follow_symlinks=False)
            os.utime(host, ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=False)
            return
        if stat.S_ISFIFO(st.st_mode):
            os.mkfifo(host, 0o600)
            os.chown(host, uid, gid)
            os.chmod(host, self._mode(st))
            return
        if not stat.S_ISREG(st.st_mode):
            return  # sockets and devices in a context are not copied
        fd = os.open(host, _CREATE, 0o600)
        try:
            with open(src, "rb") as f:
                _copy_fd(f.fileno(), fd)
            os.fchown(fd, uid, gid)
            # chown clears setuid bits: the mode comes after it.
            os.fchmod(fd, self._mode(st))
            os.utime(fd, ns=(st.st_atime_ns, st.st_mtime_ns))
        finally:
            os.close(fd)

    def _tree(self, source: Source, target: str, ignore: Ignore, preserve_owner: bool) -> None:
        dirs: list[tuple[Path, os.stat_result, bool]] = []
        for rel, st, path in walk(source, ignore):
            cpath = posixpath.join(target, rel) if rel else target
            if stat.S_ISDIR(st.st_mode):
                existed = os.path.lexists(self._resolve(cpath))
                host = self._mkdirs(cpath)
                # The top directory's own metadata is applied only when we made it.
                if rel or not existed:
                    uid, gid = self._owner(st, preserve_owner)
                    os.chown(host, uid, gid)
                    dirs.append((host, st, True))
            else:
                self._file(path, st, cpath, preserve_owner)
        for host, st, _ in reversed(dirs):  # after their children: mtimes stay as copied
            os.chmod(host, self._mode(st))
            os.utime(host, ns=(st.st_atime_ns, st.st_mtime_ns))

    def _resolve(self, cpath: str) -> Path:
        from engine.prepare import in_root

        return in_root(self.rootfs, cpath)

    def _archive(self, path: Path, target: str) -> None:
        """ADD's local archives: unpacked (with tarfile's `tar` filter: nothing outside,
        no absolute links) into a scratch directory, then copied in with their owners."""
        self.tmp.mkdir(parents=True, exist_ok=True)
        scratch = Path(tempfile.mkdtemp(prefix="add-", dir=self.tmp))
        try:
            try:
                with tarfile.open(path) as tar:
                    tar.extractall(scratch, filter="tar")
            except (tarfile.TarError, OSError, EOFError) as error:
                raise InvalidArgument(f"{self.what}: cannot unpack {path.name}: {error}"
                                      ) from None
            self._tree(Source(scratch, "", True), target, Ignore(), preserve_owner=True)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)


def _is_archive(path: Path) -> bool:
    try:
        return tarfile.is_tarfile(path)
    except OSError:
        return False


def _copy_fd(src: int, dst: int) -> None:
    size = os.fstat(src).st_size
    offset = 0
    try:
        while offset < size:
            sent = os.copy_file_range(src, dst, size - offset)
            if sent == 0:
                break
            offset += sent
        return
    except OSError:
        pass
    os.lseek(src, offset, os.SEEK_SET)
    while chunk := os.read(src, 1 << 20):
        os.write(dst, chunk)
