"""The code that becomes the container (stdlib only; runs in children forked by the shim).

Lifecycle, driven by the single-threaded shim (shim.Shim.begin/complete):

  shim --fork--> stage 1: joins the cgroup, joins/creates namespaces (unshare), forks
                 stage 2 (the first process of the new PID namespace), reports its pid
                 over a pipe and exits; the shim, a child subreaper, adopts stage 2.
  stage 2 (PID 1): own session (setsid), stdio, rootfs: private propagation, spec mounts,
                 /dev nodes and links, /sys/fs/cgroup, pivot_root, sysctls, masked and
                 read-only paths, read-only root, hostname; then the process: rlimits,
                 capability bounding set, user and groups, capabilities, no_new_privs,
                 seccomp, cwd, execve.
  With `init: true` stage 2 forks the container process and stays as PID 1: it forwards
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


def secure_join(root: str, path: str) -> str:
    """`path` inside `root`, resolving symlinks as if `root` were `/` (no escape)."""
    parts = [p for p in path.split("/") if p and p != "."]
    resolved: list[str] = []
    hops = 0
    while parts:
        part = parts.pop(0)
        if part == "..":
            if resolved:
                resolved.pop()
            continue
        candidate = os.path.join(root, *resolved, part)
        try:
            target = os.readlink(candidate)
        except OSError:
            resolved.append(part)
            continue
        hops += 1
        if hops > 255:
            raise InitError(f"too many levels of symbolic links in {path}")
        if target.startswith("/"):
            resolved = []
        parts = [p for p in target.split("/") if p and p != "."] + parts
    return os.path.join(root, *resolved)


def _mkdir_p(path: str, mode: int = 0o755) -> None:
    os.makedirs(path, mode=mode, exist_ok=True)


def _touch(path: str) -> None:
    if not os.path.exists(path):
        _mkdir_p(os.path.dirname(path))
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC, 0o644))


# ---- rootfs -------------------------------------------------------------------------------

def _mount_one(root: str, m: dict, cgroup_path: str) -> None:
    kind = m.get("type") or ""
    options = list(m.get("options") or [])
    dest = secure_join(root, m["destination"])
    flags, propagation, data = parse_options(options)
    if kind == "cgroup":
        _mount_cgroups(dest, flags, cgroup_path)
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


def _mount_cgroups(dest: str, flags: int, cgroup_path: str) -> None:
    """A tmpfs at /sys/fs/cgroup holding a bind of the container's own cgroup directory of
    each hierarchy (named as on the host), read-only like the spec asks."""
    _mkdir_p(dest)
    S.mount("tmpfs", dest, "tmpfs", S.MS_NOSUID | S.MS_NODEV | S.MS_NOEXEC, "mode=755")
    mounts = cgroups.hierarchies()
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
        for entry in os.listdir(host_base):
            full = os.path.join(host_base, entry)
            if os.path.islink(full):
                os.symlink(os.readlink(full), os.path.join(dest, entry))
    except OSError:
        pass
    if flags & S.MS_RDONLY:
        S.mount(None, dest, None, S.MS_REMOUNT | S.MS_RDONLY | S.MS_NOSUID | S.MS_NODEV
                | S.MS_NOEXEC)


def _create_devices(root: str, spec: dict, console: str | None) -> None:
    dev = os.path.join(root, "dev")
    devices = [(d["path"].rsplit("/", 1)[-1] if d["path"].startswith("/dev/") else None,
                d) for d in (spec.get("linux") or {}).get("devices") or []]
    for name, major, minor in DEFAULT_DEVICES:
        devices.append((name, {"path": f"/dev/{name}", "type": "c", "major": major,
                               "minor": minor, "fileMode": 0o666}))
    done = set()
    for _, d in devices:
        path = secure_join(root, d["path"])
        if path in done:
            continue
        done.add(path)
        kind = stat.S_IFBLK if d.get("type") == "b" else stat.S_IFCHR
        mode = d.get("fileMode", 0o666)
        _mkdir_p(os.path.dirname(path))
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


def prepare_rootfs(spec: dict, bundle: str, cgroup_path: str, console: str | None) -> None:
    """Mounts everything in the new mount namespace and pivots into the root."""
    linux = spec.get("linux") or {}
    root = os.path.realpath(os.path.join(bundle, spec["root"]["path"]))
    S.mount(None, "/", None, PROPAGATION.get(linux.get("rootfsPropagation") or "rprivate",
                                             S.MS_PRIVATE | S.MS_REC))
    S.mount(root, root, None, S.MS_BIND | S.MS_REC)
    for m in spec.get("mounts") or []:
        _mount_one(root, m, cgroup_path)
    _create_devices(root, spec, console)
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
            if os.path.isdir(path):
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


def stage2(spec: dict, bundle: str, cgroup_path: str, stdio: tuple[int, int, int],
           error_w: int, tty_name: str | None, use_init: bool) -> None:
    """PID 1 of the container. Never returns."""
    try:
        os.setsid()
        process = spec["process"]
        user = process.get("user") or {}
        _stdio(stdio, bool(tty_name), int(user.get("uid", 0)), int(user.get("gid", 0)))
        linux = spec.get("linux") or {}
        with open("/proc/sys/kernel/cap_last_cap") as f:
            last_cap = int(f.read())
        if linux.get("seccomp"):
            seccomp.preload()  # libseccomp lives on the host, not in the image
        new_ns = {n["type"] for n in linux.get("namespaces") or [] if not n.get("path")}
        if "mount" in new_ns:
            prepare_rootfs(spec, bundle, cgroup_path, tty_name)
            finish_rootfs(spec)
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
        apply_security(process, linux, last_cap)
        if use_init:
            child = os.fork()
            if child:
                os.close(error_w)
                _reaper(child)
            os.setpgid(0, 0)
        exec_process(process)
    except BaseException as e:
        _report(error_w, e)


def stage1(spec: dict, bundle: str, cgroup: cgroups.Cgroup, stdio: tuple[int, int, int],
           error_w: int, pid_w: int, tty_name: str | None, use_init: bool,
           joined: bool = False) -> None:
    """Runs in the shim's child: cgroup (unless already `joined`), namespaces, fork of
    PID 1, whose pid goes to `pid_w`. The caller must be a child subreaper. Never returns."""
    try:
        _reset_signals()
        if not joined:
            cgroup.add(os.getpid())
        linux = spec.get("linux") or {}
        flags = 0
        network_given = False
        for ns in linux.get("namespaces") or []:
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
            network_given |= ns["type"] == "network"
        S.unshare(flags)
        if flags & S.CLONE_NEWNET:
            _loopback_up()
        child = os.fork()
        if child == 0:
            os.close(pid_w)
            stage2(spec, bundle, cgroup.path, stdio, error_w, tty_name, use_init)
        os.write(pid_w, str(child).encode())
        os._exit(0)
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
        with open("/proc/sys/kernel/cap_last_cap") as f:
            last_cap = int(f.read())
        if linux.get("seccomp"):
            seccomp.preload()
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
