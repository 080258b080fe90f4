"""Container root filesystems: an image's unpacked layers as overlayfs lower directories, plus
the container's own upper and work directories.

Layout under a container directory:
    upper/    the container's changes (kept across restarts, removed with the container)
    work/     overlayfs scratch (same filesystem as upper/)
    rootfs/   the merged mount point

`layer_dirs` are always given bottom-first (the order of the image's rootfs.diff_ids);
overlayfs wants them top-first, which `overlay_mount` does. mount(2) takes at most one page
of options: when the absolute lowerdir list does not fit, the layers are passed as
`/proc/self/fd/N` paths of directory fds held open for the call (thread-safe, unlike the
chdir trick), which fits hundreds of layers.

Privileged: mounting needs CAP_SYS_ADMIN. Mounts happen in the caller's mount namespace.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from engine import mountinfo
from engine.errors import InvalidArgument, Unavailable
from engine.fsremove import remove_tree
from engine.runtime.syscalls import MNT_DETACH, MS_BIND, MS_RDONLY, MS_REC, MS_REMOUNT
from engine.runtime.syscalls import mount as _mount
from engine.runtime.syscalls import umount2 as _umount2

MOUNT_DATA_MAX = 4095  # one page, NUL-terminated


@dataclass(frozen=True, slots=True)
class Mount:
    """A mount as the OCI runtime spec describes one (destination inside the container)."""

    destination: str
    type: str
    source: str
    options: tuple[str, ...]

    @property
    def data(self) -> str:
        return ",".join(self.options)

    @property
    def fits(self) -> bool:
        """Whether mount(2) accepts these options as they are (one page)."""
        return len(self.data.encode()) <= MOUNT_DATA_MAX


def rootfs_path(container_dir: Path) -> Path:
    return Path(container_dir) / "rootfs"


def prepare(container_dir: Path, layer_dirs: Sequence[Path]) -> Mount:
    """Creates upper/, work/ and rootfs/ and returns the overlay mount for "/".

    The upper directory's root takes the mode and owner of the top layer's root, since that
    is what the container sees as "/"."""
    if not layer_dirs:
        raise InvalidArgument("an image needs at least one layer for a root filesystem")
    container_dir = Path(container_dir)
    upper, work = container_dir / "upper", container_dir / "work"
    for path in (upper, work, rootfs_path(container_dir)):
        path.mkdir(parents=True, exist_ok=True, mode=0o755)
    top = os.stat(layer_dirs[-1])
    os.chmod(upper, top.st_mode & 0o7777)
    if os.geteuid() == 0:
        os.chown(upper, top.st_uid, top.st_gid)
    return overlay_mount(layer_dirs, upper, work)


def overlay_mount(layer_dirs: Sequence[Path], upper: Path | None = None,
                  work: Path | None = None) -> Mount:
    lower = ":".join(_escape(str(Path(d).absolute())) for d in reversed(layer_dirs))
    options = [f"lowerdir={lower}"]
    if upper is not None and work is not None:
        options += [f"upperdir={_escape(str(upper))}", f"workdir={_escape(str(work))}"]
    return Mount("/", "overlay", "overlay", tuple(options))


def mount_rootfs(container_dir: Path, layer_dirs: Sequence[Path]) -> Path:
    """Mounts the container's root filesystem at `<container_dir>/rootfs` (idempotent) and
    returns that path."""
    spec = prepare(container_dir, layer_dirs)
    target = rootfs_path(container_dir)
    # An overlay has a device of its own: two stats instead of a mount-table scan.
    if os.path.ismount(target):
        return target
    _mount_overlay(spec, layer_dirs, target)
    return target


def unmount_rootfs(container_dir: Path) -> None:
    """Unmounts `<container_dir>/rootfs` if mounted (lazily if it is busy)."""
    unmount(rootfs_path(container_dir))


def remove_rootfs(container_dir: Path) -> None:
    """Unmounts and deletes upper/, work/ and rootfs/ (the container's changes)."""
    unmount_rootfs(container_dir)
    for name in ("upper", "work", "rootfs"):
        path = Path(container_dir) / name
        if path.exists():
            remove_tree(path)


def mount_readonly(layer_dirs: Sequence[Path], target: Path) -> Path:
    """A read-only view of the layers at `target` (e.g. to copy an image's files into a new
    volume). One layer is a read-only bind mount (overlayfs needs two lower layers without an
    upper); more are a lower-only overlay. Undo with `unmount(target)`."""
    if not layer_dirs:
        raise InvalidArgument("no layers to mount")
    target = Path(target)
    target.mkdir(parents=True, exist_ok=True)
    if len(layer_dirs) == 1:
        _call(_mount, str(layer_dirs[0]), str(target), None, MS_BIND | MS_REC)
        try:
            _call(_mount, None, str(target), None, MS_REMOUNT | MS_BIND | MS_RDONLY)
        except BaseException:
            unmount(target)
            raise
    else:
        _mount_overlay(overlay_mount(layer_dirs), layer_dirs, target)
    return target


def unmount(target: Path) -> None:
    """Unmounts every mount stacked at `target` (a busy one is detached); nothing when it is
    not a mount point. No mount-table scan: the kernel says EINVAL when none is left."""
    target = Path(target)
    while True:
        try:
            _umount2(str(target), 0)
        except OSError as error:
            if error.errno == errno.EBUSY:
                _umount2(str(target), MNT_DETACH)
            elif error.errno in (errno.EINVAL, errno.ENOENT):
                return
            else:
                raise


def is_mounted(path: Path) -> bool:
    return mountinfo.find(os.path.realpath(path)) is not None


def rootfs_mounted(container_dir: Path) -> bool:
    """Whether the container's rootfs overlay is mounted, without reading the mount table
    (~0.3 ms with 20 containers up, twice per container in `down`): an overlay mount has
    a device of its own, and nothing else is ever mounted there."""
    try:
        return os.stat(rootfs_path(container_dir)).st_dev != os.stat(container_dir).st_dev
    except FileNotFoundError:
        return False


def _mount_overlay(spec: Mount, layer_dirs: Sequence[Path], target: Path) -> None:
    if spec.fits:
        _call(_mount, "overlay", str(target), "overlay", 0, spec.data)
        return
    fds = [os.open(d, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC) for d in layer_dirs]
    try:
        lower = ":".join(f"/proc/self/fd/{fd}" for fd in reversed(fds))
        options = (f"lowerdir={lower}", *spec.options[1:])
        short = Mount(spec.destination, spec.type, spec.source, options)
        if not short.fits:
            raise InvalidArgument(f"too many layers ({len(layer_dirs)}) for one overlay mount")
        _call(_mount, "overlay", str(target), "overlay", 0, short.data)
    finally:
        for fd in fds:
            os.close(fd)


def _call(fn, *args) -> None:  # type: ignore[no-untyped-def]
    try:
        fn(*args)
    except OSError as error:
        if error.errno == errno.EPERM:
            raise Unavailable(f"{error.strerror or error} (mounting needs root)") from None
        raise


def _escape(path: str) -> str:
    # overlayfs splits lowerdir on ':' and options on ','; both may be backslash-escaped.
    return path.replace("\\", "\\\\").replace(":", "\\:").replace(",", "\\,")


