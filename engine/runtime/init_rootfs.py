"""Rootfs preparation for the container's first process (stdlib only; part of `init`).

In the child's new mount namespace: private propagation, the spec's mounts (bind, tmpfs,
proc, ..., and /sys/fs/cgroup as binds of the container's own cgroups), /dev nodes and
links, the console, pivot_root (`prepare_rootfs`); then sysctls, read-only and masked paths
and a read-only root (`finish_rootfs`). Failures the user can cause raise InitError, which
`init` reports on its error pipe. Imported by `init` (by path from the shim, or as
engine.runtime.init_rootfs), which re-exports the public names.
"""

from __future__ import annotations

import os
import stat

try:
    from . import cgroups, syscalls
    from . import tracing as trace
    from .rootpath import secure_join
except ImportError:  # imported by path from the shim
    import cgroups  # type: ignore[no-redef]
    import syscalls  # type: ignore[no-redef]
    import tracing as trace  # type: ignore[no-redef]
    from rootpath import secure_join  # type: ignore[no-redef]

S = syscalls

MOUNT_FLAGS = {  # option -> (clear?, flag)
    "ro": (False, S.MS_RDONLY), "rw": (True, S.MS_RDONLY),
    "nosuid": (False, S.MS_NOSUID), "suid": (True, S.MS_NOSUID),
    "nodev": (False, S.MS_NODEV), "dev": (True, S.MS_NODEV),
    "noexec": (False, S.MS_NOEXEC), "exec": (True, S.MS_NOEXEC),
    "sync": (False, S.MS_SYNCHRONOUS), "async": (True, S.MS_SYNCHRONOUS),
    "dirsync": (False, S.MS_DIRSYNC), "remount": (False, S.MS_REMOUNT),
    "mand": (False, S.MS_MANDLOCK), "nomand": (True, S.MS_MANDLOCK),
    "noatime": (False, S.MS_NOATIME), "atime": (True, S.MS_NOATIME),
    "nodiratime": (False, S.MS_NODIRATIME), "diratime": (True, S.MS_NODIRATIME),
    "relatime": (False, S.MS_RELATIME), "norelatime": (True, S.MS_RELATIME),
    "strictatime": (False, S.MS_STRICTATIME), "nostrictatime": (True, S.MS_STRICTATIME),
    "bind": (False, S.MS_BIND), "rbind": (False, S.MS_BIND | S.MS_REC),
    "nosymfollow": (False, S.MS_NOSYMFOLLOW),
}
PROPAGATION = {
    "private": S.MS_PRIVATE, "rprivate": S.MS_PRIVATE | S.MS_REC,
    "shared": S.MS_SHARED, "rshared": S.MS_SHARED | S.MS_REC,
    "slave": S.MS_SLAVE, "rslave": S.MS_SLAVE | S.MS_REC,
    "unbindable": S.MS_UNBINDABLE, "runbindable": S.MS_UNBINDABLE | S.MS_REC,
}
IGNORED_OPTIONS = {"z", "Z", "nocopy", "defaults", "volume-nocopy"}
DEFAULT_DEVICES = (("null", 1, 3), ("zero", 1, 5), ("full", 1, 7), ("random", 1, 8),
                   ("urandom", 1, 9), ("tty", 5, 0))
DEV_LINKS = (("/proc/self/fd", "fd"), ("/proc/self/fd/0", "stdin"),
             ("/proc/self/fd/1", "stdout"), ("/proc/self/fd/2", "stderr"),
             ("pts/ptmx", "ptmx"), ("/proc/kcore", "core"))


class InitError(Exception):
    """A failure before execve, with the message the user sees."""


def parse_options(options: list[str]) -> tuple[int, int, str]:
    """Mount options -> (flags, propagation flags, data string for the filesystem)."""
    flags = 0
    propagation = 0
    data = []
    for opt in options:
        if opt in MOUNT_FLAGS:
            clear, flag = MOUNT_FLAGS[opt]
            flags = flags & ~flag if clear else flags | flag
        elif opt in PROPAGATION:
            propagation |= PROPAGATION[opt]
        elif opt not in IGNORED_OPTIONS:
            data.append(opt)
    return flags, propagation, ",".join(data)


def _mkdir_p(path: str, mode: int = 0o755) -> None:
    """os.makedirs(exist_ok=True) with fewer syscalls in the common cases (the directory
    exists, or only its last component is missing)."""
    try:
        os.mkdir(path, mode)
    except FileExistsError:
        if not os.path.isdir(path):
            raise
    except FileNotFoundError:
        os.makedirs(path, mode=mode, exist_ok=True)


def _touch(path: str) -> None:
    if not os.path.exists(path):
        _mkdir_p(os.path.dirname(path))
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC, 0o644))


# ---- rootfs -------------------------------------------------------------------------------

def _mount_one(root: str, m: dict, cgroup: cgroups.Cgroup) -> None:
    kind = m.get("type") or ""
    options = list(m.get("options") or [])
    dest = secure_join(root, m["destination"])
    flags, propagation, data = parse_options(options)
    if kind == "cgroup":
        _mount_cgroups(dest, flags, cgroup)
        return
    if kind == "bind" or flags & S.MS_BIND:
        source = m.get("source") or ""
        if not os.path.exists(source):
            raise InitError(f"mount {m['destination']}: bind source {source} does not exist")
        if os.path.isdir(source):
            _mkdir_p(dest)
        else:
            _touch(dest)
        S.mount(source, dest, None, S.MS_BIND | (flags & S.MS_REC))
        remount = flags & ~(S.MS_BIND | S.MS_REC | S.MS_REMOUNT)
        if remount:
            S.mount(None, dest, None, S.MS_BIND | S.MS_REMOUNT | remount)
    else:
        _mkdir_p(dest)
        S.mount(m.get("source") or kind, dest, kind, flags, data or None)
    if propagation:
        S.mount(None, dest, None, propagation)


def _mount_cgroups(dest: str, flags: int, cgroup: cgroups.Cgroup) -> None:
    """A tmpfs at /sys/fs/cgroup holding a bind of the container's own cgroup directory of
    each hierarchy (named as on the host), read-only like the spec asks."""
    _mkdir_p(dest)
    S.mount("tmpfs", dest, "tmpfs", S.MS_NOSUID | S.MS_NODEV | S.MS_NOEXEC, "mode=755")
    mounts, cgroup_path = cgroup.mounts, cgroup.path
    if "unified" in mounts and len(mounts) == 1:
        S.umount2(dest, S.MNT_DETACH)
        source = mounts["unified"] + cgroup_path
        S.mount(source, dest, None, S.MS_BIND)
        S.mount(None, dest, None, S.MS_BIND | S.MS_REMOUNT | (flags & ~S.MS_BIND))
        return
    host_base = "/sys/fs/cgroup"
    for mountpoint in sorted(set(mounts.values())):
        name = os.path.basename(mountpoint)
        target = os.path.join(dest, name)
        _mkdir_p(target)
        S.mount(mountpoint + cgroup_path, target, None, S.MS_BIND)
        S.mount(None, target, None, S.MS_BIND | S.MS_REMOUNT | S.MS_NOSUID | S.MS_NODEV
                | S.MS_NOEXEC | (flags & S.MS_RDONLY))
    try:  # co-mounted controllers have symlinks (cpu -> cpu,cpuacct) on the host
        for entry, target in host_cgroup_links(host_base):
            os.symlink(target, os.path.join(dest, entry))
    except OSError:
        pass
    if flags & S.MS_RDONLY:
        S.mount(None, dest, None, S.MS_REMOUNT | S.MS_RDONLY | S.MS_NOSUID | S.MS_NODEV
                | S.MS_NOEXEC)


def host_cgroup_links(host_base: str = "/sys/fs/cgroup") -> list[tuple[str, str]]:
    """(name, target) of the symlinks in the host's cgroup directory (co-mounted v1
    controllers: cpu -> cpu,cpuacct), read once per process tree (the fork server does)."""
    global _host_cgroup_links
    if _host_cgroup_links is None:
        found = []
        for entry in os.listdir(host_base):
            full = os.path.join(host_base, entry)
            if os.path.islink(full):
                found.append((entry, os.readlink(full)))
        _host_cgroup_links = found
    return _host_cgroup_links


_host_cgroup_links: list[tuple[str, str]] | None = None


def _create_devices(root: str, spec: dict, console: str | None) -> None:
    dev = os.path.join(root, "dev")
    devices = [(d["path"].rsplit("/", 1)[-1] if d["path"].startswith("/dev/") else None,
                d) for d in (spec.get("linux") or {}).get("devices") or []]
    for name, major, minor in DEFAULT_DEVICES:
        devices.append((name, {"path": f"/dev/{name}", "type": "c", "major": major,
                               "minor": minor, "fileMode": 0o666}))
    done = set()
    made = set()
    for _, d in devices:
        path = secure_join(root, d["path"])
        if path in done:
            continue
        done.add(path)
        kind = stat.S_IFBLK if d.get("type") == "b" else stat.S_IFCHR
        mode = d.get("fileMode", 0o666)
        parent = os.path.dirname(path)
        if parent not in made:
            _mkdir_p(parent)
            made.add(parent)
        try:
            os.mknod(path, kind | mode, os.makedev(d["major"], d["minor"]))
            os.chmod(path, mode)
            os.chown(path, d.get("uid", 0), d.get("gid", 0))
        except FileExistsError:
            pass
        except PermissionError:  # no CAP_MKNOD: bind the host's node instead
            _touch(path)
            S.mount(d["path"], path, None, S.MS_BIND)
    for target, name in DEV_LINKS:
        if name == "core" and not os.path.exists("/proc/kcore"):
            continue  # like runc: only where the kernel has one
        try:
            os.symlink(target, os.path.join(dev, name))
        except FileExistsError:
            pass
    if console:
        path = os.path.join(dev, "console")
        _touch(path)
        S.mount(console, path, None, S.MS_BIND)


def prepare_rootfs(spec: dict, bundle: str, cgroup: cgroups.Cgroup,
                   console: str | None) -> None:
    """Mounts everything in the new mount namespace and pivots into the root."""
    linux = spec.get("linux") or {}
    root = os.path.realpath(os.path.join(bundle, spec["root"]["path"]))
    S.mount(None, "/", None, PROPAGATION.get(linux.get("rootfsPropagation") or "rprivate",
                                             S.MS_PRIVATE | S.MS_REC))
    S.mount(root, root, None, S.MS_BIND | S.MS_REC)
    for m in spec.get("mounts") or []:
        _mount_one(root, m, cgroup)
    trace.mark("init:mounts")
    _create_devices(root, spec, console)
    trace.mark("init:devices")
    os.chdir(root)
    S.pivot_root(".", ".")
    # The old root is now stacked under the new one: detach it without propagating.
    S.mount(None, ".", None, S.MS_SLAVE | S.MS_REC)
    S.umount2(".", S.MNT_DETACH)
    os.chdir("/")


def finish_rootfs(spec: dict) -> None:
    """After pivot_root: sysctls, masked and read-only paths, read-only root."""
    linux = spec.get("linux") or {}
    for key, value in (linux.get("sysctl") or {}).items():
        path = "/proc/sys/" + key.replace(".", "/")
        try:
            with open(path, "w") as f:
                f.write(str(value))
        except OSError as e:
            raise InitError(f"sysctl {key}={value}: {e.strerror}") from None
    for path in linux.get("readonlyPaths") or []:
        try:
            S.mount(path, path, None, S.MS_BIND | S.MS_REC)
        except FileNotFoundError:
            continue
        S.mount(None, path, None, S.MS_BIND | S.MS_REMOUNT | S.MS_RDONLY | S.MS_NOSUID
                | S.MS_NODEV | S.MS_NOEXEC)
    for path in linux.get("maskedPaths") or []:
        try:
            if stat.S_ISDIR(os.stat(path).st_mode):
                S.mount("tmpfs", path, "tmpfs", S.MS_RDONLY)
            else:
                S.mount("/dev/null", path, None, S.MS_BIND)
        except FileNotFoundError:
            continue
    if (spec.get("root") or {}).get("readonly"):
        S.mount(None, "/", None, S.MS_BIND | S.MS_REMOUNT | S.MS_RDONLY)
