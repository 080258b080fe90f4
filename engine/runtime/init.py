"""The code that becomes the container (stdlib only; runs in children forked by the shim).

Lifecycle, driven by the single-threaded shim (shim.Shim.begin/complete):

  shim: `pid_namespace` (unshare or setns for its children only), fork, restore; the child
        is the container's first process (PID 1 of a new PID namespace), the shim's own
        child, so no second fork and no adoption. The shim then moves it into the cgroup
        (on cgroup v1 that may wait ~10 ms for an RCU grace period) while it works:
  child (`start`): own session (setsid), joins/creates its other namespaces (network, ipc,
        uts, mount), stdio, rootfs (init_rootfs.py): private propagation, spec mounts,
        /dev nodes and links, /sys/fs/cgroup, pivot_root, sysctls, masked and read-only
        paths, read-only root, hostname, rlimits; then waits until it is in the cgroup,
        creates the cgroup namespace (rooted there), and the process: capability bounding
        set, user and groups, capabilities, no_new_privs, seccomp (a BPF program compiled
        once per profile), cwd, execve.
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
    from . import caps, cgroups, init_rootfs, seccomp, syscalls
    from . import tracing as trace
except ImportError:  # imported by path from the shim
    import caps  # type: ignore[no-redef]
    import cgroups  # type: ignore[no-redef]
    import init_rootfs  # type: ignore[no-redef]
    import seccomp  # type: ignore[no-redef]
    import syscalls  # type: ignore[no-redef]
    import tracing as trace  # type: ignore[no-redef]

InitError = init_rootfs.InitError
_mkdir_p = init_rootfs._mkdir_p
finish_rootfs = init_rootfs.finish_rootfs
host_cgroup_links = init_rootfs.host_cgroup_links
parse_options = init_rootfs.parse_options
prepare_rootfs = init_rootfs.prepare_rootfs

# init_rootfs's public names are re-exported: `init` is what the shim, nsexec, the fork
# server and tests import.
__all__ = ["JOIN_ORDER", "OWN_NAMESPACES", "InitError", "apply_security", "exec_process",
           "find_executable", "finish_rootfs", "host_cgroup_links", "join", "kernel_last_cap",
           "parse_options", "prepare_rootfs", "run_in", "start"]

S = syscalls
TIOCSCTTY = 0x540E


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
