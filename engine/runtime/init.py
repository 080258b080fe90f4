"""The code that becomes the container (stdlib only; runs in children forked by the shim).

Lifecycle, driven by the single-threaded shim (shim.Shim.begin/complete):

  shim: `pid_namespace` (unshare or setns for its children only), fork, restore; the child
        is the container's first process (PID 1 of a new PID namespace), the shim's own
        child, so no second fork and no adoption. The shim then moves it into the cgroup
        (on cgroup v1 that may wait ~10 ms for an RCU grace period) while it works:
  child (`start`): own session (setsid), joins/creates its other namespaces (network, ipc,
        uts, mount), stdio, rootfs: private propagation, spec mounts, /dev nodes and links,
        /sys/fs/cgroup, pivot_root, sysctls, masked and read-only paths, read-only root,
        hostname, rlimits; then waits until it is in the cgroup, creates the cgroup
        namespace (rooted there), and the process: capability bounding set, user and groups,
        capabilities, no_new_privs, seccomp (a BPF program compiled once per profile), cwd,
        execve.
  With `init: true` the child forks the container process and stays as PID 1: it forwards
  signals to it, reaps orphans and exits with its status (Python is not in the image, so
  the reaper is this already-loaded interpreter, not a file in the rootfs).

Every failure before execve is written as one line to an error pipe that is close-on-exec,
so a successful execve closes it empty. `join()` is the same for a process entering a
running container (exec, healthchecks).
"""

from __future__ import annotations

import _signal as signal  # the C module: `signal` imports enum (~1 MB per shim)
import errno
import os
import resource
import stat

try:
    from . import caps, cgroups, seccomp, syscalls
except ImportError:  # imported by path from the shim
    import caps  # type: ignore[no-redef]
    import cgroups  # type: ignore[no-redef]
    import seccomp  # type: ignore[no-redef]
    import syscalls  # type: ignore[no-redef]
try:
    from . import tracing as trace
    from .rootpath import secure_join
except ImportError:
    import tracing as trace  # type: ignore[no-redef]
    from rootpath import secure_join  # type: ignore[no-redef]

S = syscalls
TIOCSCTTY = 0x540E

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


# ---- process --------------------------------------------------------------------------------

def _rlimits(process: dict) -> None:
    for r in process.get("rlimits") or []:
        name = r["type"]
        try:
            resource.setrlimit(getattr(resource, name), (r["soft"], r["hard"]))
        except (ValueError, OSError) as e:
            raise InitError(f"setrlimit {name} {r['soft']}:{r['hard']}: {e}") from None


def apply_security(process: dict, linux: dict, last_cap: int) -> None:
    """Bounding set, seccomp (early when no_new_privs is off: loading needs CAP_SYS_ADMIN),
    groups and ids with capabilities kept, then effective/permitted/inheritable/ambient,
    no_new_privs and seccomp (late, so it filters only the container's own syscalls)."""
    capspec = process.get("capabilities") or {}
    bounding = caps.mask(capspec.get("bounding") or [], last_cap)
    for number in range(last_cap + 1):
        if not bounding >> number & 1:
            try:
                S.prctl(S.PR_CAPBSET_DROP, number)
            except OSError as e:
                if e.errno != errno.EINVAL:
                    raise
    nnp = bool(process.get("noNewPrivileges"))
    profile = linux.get("seccomp")
    if profile and not nnp:
        seccomp.load(profile, set_no_new_privs=False)
    user = process.get("user") or {}
    uid, gid = int(user.get("uid", 0)), int(user.get("gid", 0))
    os.setgroups([int(g) for g in user.get("additionalGids") or []])
    S.prctl(S.PR_SET_KEEPCAPS, 1)
    os.setresgid(gid, gid, gid)
    os.setresuid(uid, uid, uid)
    S.prctl(S.PR_SET_KEEPCAPS, 0)
    _, have, _ = S.capget()
    S.capset(caps.mask(capspec.get("effective") or [], last_cap) & have,
             caps.mask(capspec.get("permitted") or [], last_cap) & have,
             caps.mask(capspec.get("inheritable") or [], last_cap) & have)
    for name in capspec.get("ambient") or []:
        number = caps.NUMBERS.get(name)
        if number is not None and number <= last_cap:
            S.prctl(S.PR_CAP_AMBIENT, S.PR_CAP_AMBIENT_RAISE, number)
    if nnp:
        S.prctl(S.PR_SET_NO_NEW_PRIVS, 1)
    if profile and nnp:
        seccomp.load(profile, set_no_new_privs=True)


def find_executable(name: str, env: list[str]) -> str:
    if "/" in name:
        return name
    path = next((e[5:] for e in env if e.startswith("PATH=")), "/usr/bin:/bin")
    for d in path.split(":"):
        candidate = os.path.join(d or ".", name)
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    raise InitError(f'exec "{name}": executable file not found in $PATH')


def exec_process(process: dict) -> None:
    """chdir + execve; failures become clear InitErrors."""
    cwd = process.get("cwd") or "/"
    try:
        os.chdir(cwd)
    except OSError as e:
        raise InitError(f'chdir to cwd ("{cwd}") set in config.json failed: '
                        f"{e.strerror.lower()}") from None
    args = process["args"]
    env = process.get("env") or []
    path = find_executable(args[0], env)
    trace.mark("init:exec")
    try:
        os.execve(path, args, dict(e.split("=", 1) for e in env if "=" in e))
    except FileNotFoundError:
        raise InitError(f'exec "{args[0]}": no such file in the image') from None
    except PermissionError:
        raise InitError(f'exec "{args[0]}": permission denied') from None
    except OSError as e:
        raise InitError(f'exec "{args[0]}": {e.strerror.lower()}') from None


def _stdio(fds: tuple[int, int, int], tty: bool, uid: int, gid: int) -> None:
    for target, fd in enumerate(fds):
        if fd != target:
            os.dup2(fd, target)
    if tty:
        S.ioctl_int(0, TIOCSCTTY, 0)
    for fd in (0, 1, 2):
        # a non-root container user must be able to reopen /dev/stdout (the pipe is ours)
        try:
            st = os.fstat(fd)
            if not stat.S_ISCHR(st.st_mode) or tty:
                os.fchown(fd, uid, gid)
        except OSError:
            pass


def _reset_signals() -> None:
    """A forked child of the shim inherits its wakeup fd (a byte written there would look
    like a signal to the shim) and SIG_IGN dispositions, which execve would keep."""
    signal.set_wakeup_fd(-1)
    for sig in (signal.SIGCHLD, signal.SIGTERM, signal.SIGHUP, signal.SIGINT, signal.SIGPIPE,
                signal.SIGXFSZ):
        signal.signal(sig, signal.SIG_DFL)


def _close_extra_fds() -> None:
    """A process that stays (reaper, exec waiter) must not hold the shim's files: the
    launcher reads its status pipe to EOF, the log and socket belong to the shim."""
    os.closerange(3, resource.getrlimit(resource.RLIMIT_NOFILE)[0])


def _reaper(child: int) -> None:
    """PID 1 for `init: true`: forward signals to the child, reap everything, exit with the
    child's status."""
    _close_extra_fds()
    def forward(signum: int, _frame: object) -> None:
        try:
            os.kill(child, signum)
        except ProcessLookupError:
            pass

    for sig in signal.valid_signals():
        if sig not in (signal.SIGKILL, signal.SIGSTOP, signal.SIGCHLD):
            try:
                signal.signal(sig, forward)
            except (OSError, ValueError):
                pass
    while True:
        try:
            pid, status = os.wait()
        except ChildProcessError:
            os._exit(0)
        if pid == child:
            code = os.waitstatus_to_exitcode(status)
            os._exit(code if code >= 0 else 128 - code)


def _report(error_w: int, e: BaseException) -> None:
    message = str(e) if isinstance(e, InitError | OSError) else f"{type(e).__name__}: {e}"
    try:
        os.write(error_w, message.encode(errors="replace")[:4000])
    finally:
        os._exit(127)


def kernel_last_cap() -> int:
    """The highest capability number this kernel knows (read once per process tree: the
    fork server's children inherit it)."""
    global _kernel_last_cap
    if _kernel_last_cap < 0:
        with open("/proc/sys/kernel/cap_last_cap") as f:
            _kernel_last_cap = int(f.read())
    return _kernel_last_cap


_kernel_last_cap = -1


def _enter_namespaces(linux: dict, kinds: tuple[str, ...]) -> None:
    """Joins (setns to `path`) or creates (one unshare) the spec's namespaces of `kinds`,
    in the spec's order."""
    flags = 0
    for ns in linux.get("namespaces") or []:
        if ns["type"] not in kinds:
            continue
        flag, _ = S.NAMESPACES[ns["type"]]
        if ns.get("path"):
            fd = os.open(ns["path"], os.O_RDONLY | os.O_CLOEXEC)
            try:
                S.setns(fd, flag)
            except OSError as e:
                raise InitError(f"join {ns['type']} namespace {ns['path']}: "
                                f"{e.strerror}") from None
            finally:
                os.close(fd)
        else:
            flags |= flag
    if flags:
        S.unshare(flags)
    if flags & S.CLONE_NEWNET:
        _loopback_up()


# The namespaces the container's first process enters itself: the shim forks it into its
# PID namespace already (shim.pid_namespace), and the cgroup namespace waits for the cgroup.
OWN_NAMESPACES = ("network", "ipc", "uts", "mount", "user")


def start(spec: dict, bundle: str, cgroup: cgroups.Cgroup, stdio: tuple[int, int, int],
          error_w: int, go_r: int, tty_name: str | None, use_init: bool) -> None:
    """The container's first process (PID 1 of its PID namespace when that is new), forked
    by the shim, which moves it into `cgroup` meanwhile. Namespaces, rootfs, hostname and
    rlimits first; then it waits for one byte on `go_r` (EOF: the shim gave up), which says
    it is in the cgroup, so the cgroup namespace it creates is rooted there; then the
    process's security settings and execve. Never returns."""
    try:
        trace.rebind()
        trace.mark("init:start")
        _reset_signals()
        os.setsid()
        process = spec["process"]
        linux = spec.get("linux") or {}
        _enter_namespaces(linux, OWN_NAMESPACES)
        user = process.get("user") or {}
        _stdio(stdio, bool(tty_name), int(user.get("uid", 0)), int(user.get("gid", 0)))
        last_cap = kernel_last_cap()
        if linux.get("seccomp"):
            # a hit (the shim compiled it before forking us); else compiled now, while
            # libseccomp (on the host) is still in sight
            seccomp.program(linux["seccomp"])
        trace.mark("init:namespaces")
        new_ns = {n["type"] for n in linux.get("namespaces") or [] if not n.get("path")}
        if "mount" in new_ns:
            prepare_rootfs(spec, bundle, cgroup, tty_name)
            trace.mark("init:rootfs")
            finish_rootfs(spec)
            trace.mark("init:masks")
        if "uts" in new_ns:
            if spec.get("hostname"):
                S.sethostname(spec["hostname"])
            if spec.get("domainname"):
                S.setdomainname(spec["domainname"])
        _rlimits(process)
        if process.get("oomScoreAdj") is not None:
            with open("/proc/self/oom_score_adj", "w") as f:
                f.write(str(process["oomScoreAdj"]))
        cwd = process.get("cwd") or "/"
        if not os.path.isdir(cwd):
            _mkdir_p(cwd)
        if not os.read(go_r, 1):
            os._exit(127)  # the shim failed to move us into the cgroup: it says why
        os.close(go_r)
        trace.mark("init:in-cgroup")
        _enter_namespaces(linux, ("cgroup",))
        trace.mark("init:cgroupns")
        apply_security(process, linux, last_cap)
        trace.mark("init:security")
        if use_init:
            child = os.fork()
            if child:
                os.close(error_w)
                _reaper(child)
            os.setpgid(0, 0)
        exec_process(process)
    except BaseException as e:
        _report(error_w, e)


def _loopback_up() -> None:
    """A new network namespace starts with `lo` down; containers expect it up."""
    import _socket  # the C module: `socket` would import enum and friends
    import fcntl
    import struct

    sock = _socket.socket(_socket.AF_INET, _socket.SOCK_DGRAM)
    try:
        ifreq = struct.pack("16sH14x", b"lo", 0)
        flags = struct.unpack("16sH14x", fcntl.ioctl(sock, 0x8913, ifreq))[1]  # SIOCGIFFLAGS
        fcntl.ioctl(sock, 0x8914, struct.pack("16sH14x", b"lo", flags | 1))  # SIOCSIFFLAGS
    finally:
        sock.close()


# ---- joining a running container (exec, healthchecks) ---------------------------------------

JOIN_ORDER = ("cgroup", "ipc", "uts", "net", "pid", "mnt")


def join(pid: int, cgroup: cgroups.Cgroup | None) -> None:
    """Moves the calling (single-threaded) process into the cgroup and namespaces of `pid`.
    The PID namespace applies to children: fork after this."""
    fds = []
    for name in JOIN_ORDER:
        mine = os.stat(f"/proc/self/ns/{name}")
        theirs = os.stat(f"/proc/{pid}/ns/{name}")
        if (mine.st_dev, mine.st_ino) != (theirs.st_dev, theirs.st_ino) or name == "pid":
            fds.append((name, os.open(f"/proc/{pid}/ns/{name}", os.O_RDONLY | os.O_CLOEXEC)))
    if cgroup is not None:
        cgroup.add(os.getpid())
    for _name, fd in fds:
        S.setns(fd, 0)
        os.close(fd)


def run_in(pid: int, cgroup: cgroups.Cgroup | None, spec: dict, process: dict,
           stdio: tuple[int, int, int], error_w: int, tty: bool = False) -> None:
    """In a fresh child: join `pid`'s container and exec `process` (a spec process object,
    already merged with the container's); the caller forks first. Never returns."""
    try:
        _reset_signals()
        linux = spec.get("linux") or {}
        last_cap = kernel_last_cap()
        if linux.get("seccomp"):
            seccomp.program(linux["seccomp"])  # before setns: libseccomp is on the host
        join(pid, cgroup)
        child = os.fork()  # enters the PID namespace
        if child:
            os.close(error_w)
            _wait_and_exit(child)
        S.prctl(S.PR_SET_PDEATHSIG, signal.SIGKILL)
        if tty:
            os.setsid()
        user = process.get("user") or {}
        _stdio(stdio, tty, int(user.get("uid", 0)), int(user.get("gid", 0)))
        _rlimits(process)
        apply_security(process, linux, last_cap)
        exec_process(process)
    except BaseException as e:
        _report(error_w, e)


def _wait_and_exit(child: int) -> None:
    def forward(signum: int, _frame: object) -> None:
        try:
            os.kill(child, signum)
        except ProcessLookupError:
            pass

    _close_extra_fds()
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1,
                signal.SIGUSR2, signal.SIGWINCH):
        signal.signal(sig, forward)
    _, status = os.waitpid(child, 0)
    code = os.waitstatus_to_exitcode(status)
    os._exit(code if code >= 0 else 128 - code)
