"""Named network namespaces under the engine's run directory (`layout.netns/<name>`).

A namespace is kept alive by bind-mounting its nsfs file onto `layout.netns/<name>`, as
`ip netns add` does under /run/netns. The directory is made a mount point of its own with
shared propagation, so that unmounting a namespace here also unmounts the copies that mount
namespaces cloned from ours (containers being set up) may hold; when the last namespace goes,
that directory mount goes too, so an idle engine leaves no mounts behind.

Namespace switches happen in a throwaway thread: `unshare(CLONE_NEWNET)` and
`setns(fd, CLONE_NEWNET)` act on the calling thread only (the kernel allows both in a
multi-threaded process, unlike user or mount namespaces), and a fresh thread that exits
afterwards can never leave one of the caller's threads in the wrong namespace. This costs
about a millisecond, against 10-30 ms for a helper process.
"""

from __future__ import annotations

import errno
import fcntl
import functools
import os
import socket
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

from engine import mountinfo
from engine.errors import AlreadyExists, InvalidArgument, NotFound, Unavailable
from engine.layout import Layout
from engine.runtime.syscalls import (
    CLONE_NEWNET,
    MNT_DETACH,
    MS_BIND,
    MS_REC,
    MS_SHARED,
    mount,
    setns,
    umount2,
    unshare,
)

T = TypeVar("T")


def _is_mountpoint(path: Path) -> bool:
    return mountinfo.find(path) is not None


def _in_thread(fn: Callable[[], T]) -> T:
    """Runs `fn` in a new thread and returns its result or raises its exception."""
    box: dict[str, object] = {}

    def main() -> None:
        try:
            box["value"] = fn()
        except BaseException as exc:  # handed to the caller below
            box["error"] = exc

    thread = threading.Thread(target=main, name="shipyard-netns")
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]  # type: ignore[misc]
    return box["value"]  # type: ignore[return-value]


@contextmanager
def _dir_lock(layout: Layout) -> Iterator[Path]:
    """Serialises changes to the netns directory mount across processes."""
    layout.run.mkdir(parents=True, exist_ok=True, mode=0o711)
    fd = os.open(layout.run / "netns.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield layout.netns
    finally:
        os.close(fd)


def _share_dir(layout: Layout) -> None:
    """Makes the netns directory a shared mount point of its own (under the dir lock).

    Reading the mount table to see whether it is one already costs ~0.4 ms with 20
    containers up, on every `create`; so the first to make it (or find it) one leaves a
    mark beside it holding that mount's id, named by the boot (mount ids start again at
    boot, and /run need not be tmpfs). A later create that finds the directory on that
    very mount (the kernel says which mount an open file is on) trusts it; a directory
    unmounted or made again by anyone else is on another mount, and gets the full look.
    `_release_dir_if_empty` takes the mark away before the mount."""
    directory = layout.netns
    mark = _shared_mark(layout)
    if mark is not None and _read_mark(mark) == _mount_id(directory) != "":
        return
    directory.mkdir(parents=True, exist_ok=True, mode=0o711)
    fields = mountinfo.find(directory)
    if fields is None:
        mount(str(directory), str(directory), None, MS_BIND | MS_REC)
    if fields is None or not mountinfo.is_shared(fields):
        mount(None, str(directory), None, MS_SHARED | MS_REC)
    if mark is not None:
        mark.write_text(_mount_id(directory))


def _shared_mark(layout: Layout) -> Path | None:
    boot = _boot_id()
    return layout.run / f"netns.shared.{boot}" if boot else None


def _read_mark(mark: Path) -> str:
    try:
        return mark.read_text()
    except OSError:
        return ""


def _mount_id(path: Path) -> str:
    """The id of the mount `path` is on ("" when it cannot be told), from the kernel's
    fdinfo of a path-only descriptor: ~30 us against a mount-table scan."""
    try:
        fd = os.open(path, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return ""
    try:
        info_fd = os.open(f"/proc/self/fdinfo/{fd}", os.O_RDONLY | os.O_CLOEXEC)
        try:
            info = os.read(info_fd, 4096)
        finally:
            os.close(info_fd)
    except OSError:
        return ""
    finally:
        os.close(fd)
    for line in info.decode().splitlines():
        if line.startswith("mnt_id:"):
            return line.split()[1]
    return ""


@functools.cache
def _boot_id() -> str:
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            return f.read().strip()
    except OSError:  # no mark then: the mount table is read every time
        return ""


def _valid_name(name: str) -> str:
    if not name or "/" in name or name in (".", "..") or len(name) > 200:
        raise InvalidArgument(f"network namespace name {name!r} is not valid")
    return name


def path_of(layout: Layout, name: str) -> Path:
    return layout.netns / _valid_name(name)


def create(layout: Layout, name: str) -> Path:
    """Creates a new, empty network namespace (only `lo`, down) and returns its path.

    Only the directory mount and the file are made under the lock: once the file exists the
    directory is not empty, so no `delete` can take the directory mount away, and the slow
    part (the kernel making the namespace) overlaps with other creations."""
    with _dir_lock(layout) as directory:
        _share_dir(layout)
        path = directory / _valid_name(name)
        try:
            os.close(os.open(path, os.O_RDONLY | os.O_CREAT | os.O_EXCL, 0o444))
        except FileExistsError:
            # A plain file left from before a reboot (or a crash) is reused; a live one is not.
            if exists(path):
                raise AlreadyExists(f"network namespace {name!r} already exists") from None

    def make() -> None:
        unshare(CLONE_NEWNET)
        mount(f"/proc/self/task/{threading.get_native_id()}/ns/net", str(path), None, MS_BIND)

    try:
        _in_thread(make)
    except OSError as exc:
        with _dir_lock(layout):
            path.unlink(missing_ok=True)
            _release_dir_if_empty(layout)
        if exc.errno == errno.EPERM:
            raise Unavailable("creating a network namespace needs root "
                              "(CAP_SYS_ADMIN)") from None
        raise
    return path


def _is_empty(directory: Path) -> bool:
    """No namespace file in `directory` (False when it does not exist: nothing to release)."""
    try:
        with os.scandir(directory) as entries:
            return next(entries, None) is None
    except FileNotFoundError:
        return False


def _release_dir_if_empty(layout: Layout) -> None:
    directory = layout.netns
    if not _is_empty(directory):
        return
    mark = _shared_mark(layout)
    if mark is not None:
        mark.unlink(missing_ok=True)  # before the mount: a mark never outlives it
    if _is_mountpoint(directory):
        umount2(str(directory), MNT_DETACH)
    try:
        directory.rmdir()
    except OSError:
        pass


def delete(path: str | os.PathLike[str], layout: Layout | None = None) -> None:
    """Unmounts and removes a namespace file (idempotent). Processes still inside keep the
    namespace alive until they exit. With `layout`, the directory mount goes with the last.

    Only that last step is under the lock: the unmount waits for an RCU grace period, and
    deletions side by side (`down`) overlap their waits. No mount-table scan either: the
    kernel says EINVAL when nothing is mounted there."""
    path = Path(path)
    while True:
        try:
            umount2(str(path), MNT_DETACH)
        except OSError as exc:
            if exc.errno in (errno.EINVAL, errno.ENOENT):
                break
            raise
    path.unlink(missing_ok=True)
    # Not the last namespace: the one that is takes the directory mount. (Each deletion
    # unlinks its file before it looks, so the last to unlink finds the directory empty.)
    # Looked at before the lock: `down`'s threads, each holding the lock while it waits
    # for the GIL, queued 30-140 ms on it.
    if layout is not None and not _is_empty(layout.netns):
        return
    if layout is not None:
        with _dir_lock(layout):
            _release_dir_if_empty(layout)


def exists(path: str | os.PathLike[str]) -> bool:
    """True when `path` is a live network namespace handle (an nsfs mount)."""
    # A stat, not a mount-table scan: every namespace file lives on the one nsfs
    # superblock, so an nsfs mount at `path` has nsfs's device, a plain file does not.
    try:
        return os.stat(path).st_dev == _nsfs_device()
    except OSError:
        return False


@functools.cache
def _nsfs_device() -> int:
    return os.stat("/proc/self/ns/net").st_dev


def list_names(layout: Layout) -> list[str]:
    try:
        return sorted(os.listdir(layout.netns))
    except FileNotFoundError:
        return []


def run_in(path: str | os.PathLike[str], fn: Callable[[], T]) -> T:
    """Calls `fn()` in a throwaway thread that has joined the namespace at `path`. Sockets
    `fn` creates belong to that namespace for their whole life, wherever they are used."""
    fd = _open(path)

    def inside() -> T:
        try:
            setns(fd, CLONE_NEWNET)
        finally:
            os.close(fd)
        return fn()

    return _in_thread(inside)


def socket_in(path: str | os.PathLike[str], family: int = socket.AF_INET,
              kind: int = socket.SOCK_STREAM, proto: int = 0) -> socket.socket:
    """A socket created inside the namespace at `path` (netlink sockets included)."""
    return run_in(path, lambda: socket.socket(family, kind, proto))


def command(path: str | os.PathLike[str], argv: Sequence[str]) -> list[str]:
    """argv that runs `argv` inside the namespace (util-linux nsenter); for tools and tests."""
    return ["nsenter", f"--net={os.fspath(path)}", "--", *argv]


def _open(path: str | os.PathLike[str]) -> int:
    try:
        return os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise NotFound(f"network namespace {os.fspath(path)} does not exist") from None
