"""The engine's side of the runtime: create, start, observe and control containers.

A container directory holds config.json (the OCI spec; `root.path` may be relative to it),
shim.json (`spec.shim_options`), and once started state.json, ctl.sock, shim.log and the
json-file log `<id>-json.log`. Every namespace/mount operation happens in fresh
single-threaded child processes (the shim, nsexec), never in the caller, which may have
threads.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal as signals
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from engine.errors import Conflict, Error, NotFound
from engine.runtime import cgroups
from engine.runtime import state as st

HERE = Path(__file__).resolve().parent
SHIM = HERE / "shim.py"
NSEXEC = HERE / "nsexec.py"
# Imported rather than run as a script: a script is compiled from source on every start
# (no .pyc for __main__), which costs time and leaves ~2 MB of compiler garbage in each shim.
SHIM_MAIN = f"import sys; sys.path[:0] = [{str(HERE)!r}]; import shim; shim.main()"
# The fork server imports what each shim (syscalls) and its init child would import anyway:
# the children share it instead of each building its own.
FORKSERVER_MAIN = (f"import sys; sys.path[:0] = [{str(HERE)!r}]; "
                   "import shim, syscalls, init, forkserver; "
                   "forkserver.serve(int(sys.argv[-1]), float(sys.argv[-2]))")
# What `delete` removes: the run's leftovers. The bundle (config.json, shim.json, /etc
# files) and the log stay; the engine owns the directory and removes it with the container.
RUN_FILES = ("state.json", "ctl.sock", "shim.log")


class StartError(Error):
    """The container could not start; the message says why (from init or the shim)."""

    exit_code = 127


class ExecError(Error):
    """A process could not be executed in the container."""

    exit_code = 126


@dataclass(frozen=True, slots=True)
class HealthResult:
    """One healthcheck probe: when it ran, its exit code and output."""

    start: str
    end: str
    exit_code: int
    output: str


@dataclass(frozen=True, slots=True)
class Health:
    """A container's health: status, failing streak, recent probes."""

    status: str   # starting | healthy | unhealthy
    failing_streak: int
    log: tuple[HealthResult, ...]


@dataclass(frozen=True, slots=True)
class State:
    """A container's runtime state, as its monitor records it."""

    id: str
    status: str   # created | running | paused | restarting | exited | dead
    pid: int
    shim_pid: int
    exit_code: int
    started_at: str
    finished_at: str
    restart_count: int
    error: str
    health: Health | None

    @property
    def running(self) -> bool:
        return self.status in st.LIVE

    @classmethod
    def from_dict(cls, d: dict) -> State:
        h = d.get("health")
        health = None if not h else Health(h["status"], h["failing_streak"], tuple(
            HealthResult(r["start"], r["end"], r["exit_code"], r["output"]) for r in h["log"]))
        return cls(d.get("id", ""), d.get("status", "created"), d.get("pid") or 0,
                   d.get("shim_pid") or 0, d.get("exit_code") or 0, d.get("started_at", ""),
                   d.get("finished_at", ""), d.get("restart_count") or 0, d.get("error", ""),
                   health)


def _dir(container_dir: str | os.PathLike[str]) -> str:
    path = os.fspath(container_dir)
    if not os.path.isfile(os.path.join(path, "config.json")):
        raise NotFound(f"no container at {path} (config.json is missing)")
    return path


# ---- create / start ---------------------------------------------------------------------

def _default_resolv_conf() -> str:
    try:
        lines = Path("/etc/resolv.conf").read_text().splitlines()
    except OSError:
        lines = []
    kept = [ln for ln in lines if not (ln.startswith("nameserver") and
                                       (" 127." in ln or " ::1" in ln))]
    if not any(ln.startswith("nameserver") for ln in kept):
        kept += ["nameserver 8.8.8.8", "nameserver 8.8.4.4"]
    return "\n".join(kept) + "\n"


def create(container_dir: str | os.PathLike[str], spec: dict, options: dict) -> None:
    """Writes the bundle: config.json and shim.json. When the spec binds no /etc/hosts,
    /etc/hostname or /etc/resolv.conf, writes defaults here and binds them (so `runc run`
    of the same bundle sees the same files)."""
    path = os.fspath(container_dir)
    os.makedirs(path, exist_ok=True)
    spec = dict(spec, mounts=list(spec.get("mounts") or []))
    bound = {m["destination"] for m in spec["mounts"]}
    hostname = spec.get("hostname") or ""
    defaults = {
        "/etc/hosts": ("hosts", "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost "
                       "ip6-loopback\n" + (f"127.0.0.1\t{hostname}\n" if hostname else "")),
        "/etc/hostname": ("hostname", hostname + "\n"),
        "/etc/resolv.conf": ("resolv.conf", None),
    }
    for dest, (name, text) in defaults.items():
        if dest in bound or (dest == "/etc/hostname" and not hostname):
            continue
        file = os.path.join(path, name)
        Path(file).write_text(_default_resolv_conf() if text is None else text)
        spec["mounts"].append({"destination": dest, "type": "bind", "source": file,
                               "options": ["rbind", "rprivate"]})
    st.write_json(os.path.join(path, "config.json"), spec)
    st.write_json(os.path.join(path, "shim.json"), options)
    st.write(path, {"id": options.get("id", ""), "status": "created"})


def start(container_dir: str | os.PathLike[str], timeout: float = 60.0,
          waited: bool = False) -> State:
    """Spawns the shim and returns once the container's process runs (has exec'd). Raises
    StartError with init's message (e.g. `exec "/nope": no such file in the image`).

    `waited`: this process will `wait` for the container's end. The start's own connection
    to the shim then becomes that wait, from before the process can end (a `wait` that
    connects afterwards can come too late for a short-lived one): the shim leaves the
    release to us instead of running the exit hook (a fresh interpreter that would hold the
    container's lock while we wait for it), and `wait` hears the end at once."""
    path = _dir(container_dir)
    current = st.read(path) or {}
    shim = current.get("shim_pid"), current.get("shim_start")
    if current.get("status") == "created" and current.get("error") and st.alive(*shim):
        # The shim of a start that failed, on its way out (it wrote why, then removes its
        # cgroup and exits): a start right after that one waits for it.
        _wait_shim_gone(current, timeout=5.0)
    if current.get("status") in st.ACTIVE and st.alive(*shim):
        raise Conflict(f"container {current.get('id', '')[:12]} is already running")
    # A socket pair rather than a pipe: the shim waits for our acknowledgement before it
    # goes on, so whether the start happened is decided here alone (a report we did not
    # read in time, or never acknowledged, makes the shim stop what it started).
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    held = False
    try:
        w = theirs.fileno()
        try:
            server = _forkserver
            if server is None or not server.spawn(path, w):
                proc = subprocess.Popen(
                    # shim.py's path rides along in argv so `ps` (and leak checks) can
                    # tell shims
                    [sys.executable, "-I", "-S", "-c", SHIM_MAIN, str(SHIM), path, str(w)],
                    pass_fds=(w,),
                    stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL, start_new_session=True, close_fds=True)
                proc.wait()  # the first process forks the shim and exits at once
        except OSError as e:
            raise StartError(f"container shim failed to start: {e}") from None
        finally:
            theirs.close()
        raw = _read_report(ours, timeout)
        if raw is None:  # a shim that hangs must not hang the command with it
            raise StartError(f"container shim did not report within {timeout:g}s")
        # A report cut short (or none) is a shim that died: no acknowledgement then.
        reply = st.loads(raw) if raw.endswith(b"\n") else None
        if reply is not None:
            with contextlib.suppress(OSError):
                ours.send(b"w" if waited else b"k", socket.MSG_NOSIGNAL)
                # (a failed start's shim reads no acknowledgement and keeps nothing)
                held = waited and not reply.get("error")  # type: ignore[union-attr]
    finally:
        if held:
            _held_waits[path] = ours
        else:
            ours.close()
    if reply is None:
        log = _tail(os.path.join(path, "shim.log"))
        raise StartError(f"container shim failed to start{': ' + log if log else ''}")
    if reply.get("error"):  # type: ignore[union-attr]
        raise StartError(reply["error"])  # type: ignore[index]
    return state(path)


def _read_report(sock: socket.socket, timeout: float) -> bytes | None:
    """The shim's one-line report (shorter if it died first); None if none came in time."""
    deadline = time.monotonic() + timeout
    raw = b""
    while not raw.endswith(b"\n"):
        ready, _, _ = select.select([sock], [], [], max(0.0, deadline - time.monotonic()))
        if not ready:
            return None
        try:
            chunk = sock.recv(4096)
        except OSError:
            chunk = b""
        if not chunk:
            break
        raw += chunk
    return raw


# container directory -> the connection a `start(..., waited=True)` kept for `wait`.
_held_waits: dict[str, socket.socket] = {}

_forkserver = None   # forkserver.Client while a `forkserver()` scope is open
_forkserver_users = 0
_forkserver_lock = threading.Lock()


@contextlib.contextmanager
def forkserver(idle: float | None = None) -> Iterator[None]:
    """Within this scope (from any thread), `start` has one fork server fork the shims
    instead of starting a fresh interpreter for each: for commands that start several
    containers. The server starts now (it boots while the caller goes on) and ends with
    the outermost scope, or after `idle` seconds without a request (starts then go back
    to fresh interpreters)."""
    _enter_forkserver(idle)
    try:
        yield
    finally:
        _leave_forkserver(wait=True)


@contextlib.contextmanager
def warm_forkserver() -> Iterator[None]:
    """Starts the fork server ahead of the starts that may come in this scope, so that its
    interpreter boots on a CPU the caller leaves idle while it observes and plans (`up`:
    ~35 ms of CPU that would otherwise compete with the starts), and a single start uses
    it too. A `forkserver()` scope inside shares it. Leaving normally does not wait for a
    server still booting (it reads the EOF when it is done: a command with nothing to
    start is not held up); leaving on an error does, so a failed command leaves nothing."""
    _enter_forkserver(None)
    try:
        yield
    except BaseException:
        _leave_forkserver(wait=True)
        raise
    _leave_forkserver(wait=False)


def _enter_forkserver(idle: float | None) -> None:
    global _forkserver, _forkserver_users
    from engine.runtime.forkserver import IDLE, Client

    with _forkserver_lock:
        if _forkserver_users == 0:
            try:
                _forkserver = Client(FORKSERVER_MAIN, str(SHIM),
                                     IDLE if idle is None else idle)
            except OSError:
                _forkserver = None  # starts fall back to fresh shims
        _forkserver_users += 1


def _leave_forkserver(wait: bool) -> None:
    global _forkserver, _forkserver_users
    with _forkserver_lock:
        _forkserver_users -= 1
        server = _forkserver if _forkserver_users == 0 else None
        if server is not None:
            _forkserver = None
    if server is not None:
        server.close(wait=wait)


def _forkserver_after_fork() -> None:
    """In a forked child (compose/helpers.py's, forked inside `up`'s warm_forkserver scope):
    the server is the parent's. A copy of its socket kept here would hold off the EOF of
    the parent's close while the child lives, and two processes' requests would share one
    socket; the child's starts use fresh shims."""
    global _forkserver, _forkserver_lock
    _forkserver_lock = threading.Lock()  # one another thread held is not coming back
    if _forkserver is not None:
        _forkserver.forget()
        _forkserver = None


os.register_at_fork(after_in_child=_forkserver_after_fork)


def _tail(file: str, lines: int = 3) -> str:
    try:
        return " | ".join(Path(file).read_text().strip().splitlines()[-lines:])
    except OSError:
        return ""


# ---- observe ------------------------------------------------------------------------------

def state(container_dir: str | os.PathLike[str]) -> State:
    """The recorded state ("created" before any start); an active container whose shim is
    gone reads as "dead"."""
    path = os.fspath(container_dir)
    if not os.path.isdir(path):
        raise NotFound(f"no container at {path}")
    return _interpret(st.read(path))


def _interpret(recorded: dict | None) -> State:
    """The State a recorded state.json document stands for (see `state`)."""
    d = recorded or {"status": "created"}
    if d.get("status") in st.LIVE and not st.alive(
            d.get("shim_pid"), d.get("shim_start")):
        d = dict(d, status="dead")
    return State.from_dict(d)


def _cgroup(path: str) -> cgroups.Cgroup:
    # The mount table is long with containers up (~0.5 ms to read): once per command.
    cgroups.remember_hierarchies()
    spec = st.read_json(os.path.join(path, "config.json")) or {}
    return cgroups.Cgroup(spec["linux"]["cgroupsPath"])


def top(container_dir: str | os.PathLike[str]) -> list[dict]:
    """The container's processes (host pids): pid, ppid, uid, state, cmd."""
    path = _dir(container_dir)
    out = []
    for pid in sorted(_cgroup(path).pids()):
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
            status = Path(f"/proc/{pid}/status").read_text()
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().rstrip(b"\0").replace(b"\0", b" ")
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        uid = next(int(ln.split()[1]) for ln in status.splitlines() if ln.startswith("Uid:"))
        out.append({"pid": pid, "ppid": int(fields[1]), "uid": uid, "state": fields[0],
                    "cmd": cmd.decode(errors="replace") or stat.split("(", 1)[1].rsplit(")")[0]})
    return out


# ---- control ------------------------------------------------------------------------------

@contextlib.contextmanager
def _connected(path: str, timeout: float | None = None) -> Iterator[socket.socket]:
    """A connection to the shim's control socket. Raises Conflict if no shim listens."""
    dirfd = os.open(path, os.O_PATH | os.O_CLOEXEC)
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC) as sock:
            sock.settimeout(timeout)
            try:
                # /proc/self/fd/N/... keeps the path short: sun_path holds only 108 bytes
                sock.connect(f"/proc/self/fd/{dirfd}/ctl.sock")
            except (FileNotFoundError, ConnectionRefusedError):
                raise Conflict("container is not running (no shim)") from None
            yield sock
    finally:
        os.close(dirfd)


def _request(path: str, request: dict, timeout: float | None = None) -> dict:
    """One request over the shim's control socket. Raises Conflict if no shim listens."""
    with _connected(path, timeout) as sock:
        sock.sendall((st.dumps(request) + "\n").encode())
        chunks = []
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            chunks.append(chunk)
    raw = b"".join(chunks)
    if not raw:
        return {"error": "shim exited"}
    reply = st.loads(raw)
    if reply.get("error"):  # type: ignore[union-attr]
        raise Conflict(reply["error"])  # type: ignore[index]
    return reply  # type: ignore[return-value]


def _wait_shim_gone(d: dict, timeout: float = 10.0) -> None:
    pid, started = d.get("shim_pid"), d.get("shim_start")
    if not pid:
        return
    try:
        # A pidfd, checked to still be that shim once open (not a reused pid), becomes
        # readable when it exits: no polling.
        fd = os.pidfd_open(pid)
    except OSError:
        return  # gone already
    try:
        if st.alive(pid, started):
            select.select([fd], [], [], timeout)
    finally:
        os.close(fd)


def stop(container_dir: str | os.PathLike[str], timeout: float | None = None) -> State:
    """Stop signal, `timeout` seconds of grace (default: the container's), then SIGKILL.
    The restart policy does not apply. Returns the final state."""
    path = _dir(container_dir)
    before = st.read(path) or {}
    now = _interpret(before)
    if now.running:
        request: dict = {"op": "stop"}
        if timeout is not None:
            request["timeout"] = timeout
        # (A shim already stopping, asked before, may close on us: ConnectionError.)
        with contextlib.suppress(Conflict, ConnectionError):
            _request(path, request)
        _wait_shim_gone(before)
    elif now.status == "dead":
        _kill_leftovers(path)
    return state(path)


def request_stop(container_dir: str | os.PathLike[str], timeout: float | None = None) -> None:
    """Asks the shim to stop the container (as `stop` does: stop signal, `timeout` seconds
    of grace, SIGKILL) and returns at once; `stop` later waits for it. Nothing happens when
    no shim runs."""
    request: dict = {"op": "stop"}
    if timeout is not None:
        request["timeout"] = timeout
    # (A bounded wait: it runs before the walk's steps, which a stuck shim must not hold.)
    with contextlib.suppress(Conflict, OSError), \
            _connected(os.fspath(container_dir), timeout=1.0) as sock:
        sock.sendall((st.dumps(request) + "\n").encode())


def attach_stdin(container_dir: str | os.PathLike[str]) -> int:
    """The running container's input, as an fd the caller owns: its pty's master (with a
    TTY; write keystrokes there, set the window size on it) or its stdin pipe's write end
    (closing it ends the container's input; one caller gets it). Its output stays in the
    log. Raises Conflict when the container runs without open stdin."""
    with _connected(_dir(container_dir)) as sock:
        try:
            sock.sendall((st.dumps({"op": "stdin"}) + "\n").encode())
            raw, fds, _, _ = socket.recv_fds(sock, 4096, 1)
        except OSError:  # the shim went away meanwhile (the container ended)
            raw, fds = b"", []
    reply = st.loads(raw) if raw else {"error": "container is not running (shim exited)"}
    if reply.get("error") or not fds:  # type: ignore[union-attr]
        for fd in fds:
            os.close(fd)
        raise Conflict(reply.get("error") or "no stdin was passed")  # type: ignore[union-attr]
    os.set_inheritable(fds[0], False)
    return fds[0]


def kill(container_dir: str | os.PathLike[str], sig: int | str = signals.SIGKILL) -> None:
    """Sends `sig` (number or name: "KILL", "SIGHUP", "15") to the container's first
    process. The restart policy no longer applies (as after `docker kill`)."""
    from engine.spec import signal_number

    path = _dir(container_dir)
    number = signal_number(sig)
    if not state(path).running:
        raise Conflict("container is not running")
    _request(path, {"op": "kill", "signal": number})


def pause(container_dir: str | os.PathLike[str]) -> None:
    _request(_dir(container_dir), {"op": "pause"})


def unpause(container_dir: str | os.PathLike[str]) -> None:
    _request(_dir(container_dir), {"op": "resume"})


def end_fd(container_dir: str | os.PathLike[str]) -> int | None:
    """A descriptor that turns readable when the container has stopped for good, when this
    process holds its start's connection (`start(..., waited=True)`), else None. Not to be
    read: `wait` does."""
    held = _held_waits.get(_dir(container_dir))
    return held.fileno() if held is not None else None


def drop_wait(container_dir: str | os.PathLike[str]) -> None:
    """Gives up the connection a `start(..., waited=True)` kept, for a caller that will not
    `wait` after all (it failed on the way): a shim that ends from now on hears no waiter
    and runs the exit hook. One that ended before sent its answer here, and counts on the
    caller to release (`Containers.release` of a container no longer running)."""
    held = _held_waits.pop(_dir(container_dir), None)
    if held is not None:
        held.close()


def wait(container_dir: str | os.PathLike[str], timeout: float | None = None) -> int:
    """Blocks until the container has stopped for good (no restart pending); its exit code.
    A container whose shim died reads as exit code 255."""
    path = _dir(container_dir)
    before = st.read(path) or {}
    held = _held_waits.pop(path, None)
    if held is not None:  # the start's connection (see `start(..., waited=True)`)
        ready, _, _ = select.select([held], [], [], timeout)
        if not ready:
            _held_waits[path] = held  # still ours, for the next wait
            raise Conflict(f"container still running after {timeout}s")
        with held, contextlib.suppress(OSError):
            held.recv(4096)  # the exit line, or EOF from a shim that died
        _wait_shim_gone(before)
    elif state(path).running:
        try:
            _request(path, {"op": "wait"}, timeout)
        except (Conflict, ConnectionResetError):
            pass
        except TimeoutError:
            raise Conflict(f"container still running after {timeout}s") from None
        _wait_shim_gone(before)
    final = state(path)
    if final.status == "dead":
        return 255
    return final.exit_code


def _kill_leftovers(path: str) -> None:
    cg = _cgroup(path)
    if any(os.path.isdir(d) for d in cg.dirs()):
        cg.kill()
        cg.remove()


def delete(container_dir: str | os.PathLike[str]) -> None:
    """Removes what the runtime made for a stopped (or dead) container: leftover processes
    and cgroup, and the run's files (RUN_FILES). A directory never started is left alone."""
    path = os.fspath(container_dir)
    if not os.path.isfile(os.path.join(path, "config.json")):
        return
    current = state(path)
    if current.running:
        raise Conflict(f"container {current.id[:12]} is {current.status}: stop it first")
    _kill_leftovers(path)
    for name in RUN_FILES:
        with contextlib.suppress(FileNotFoundError, IsADirectoryError):
            os.unlink(os.path.join(path, name))


# ---- exec ---------------------------------------------------------------------------------

def exec(container_dir: str | os.PathLike[str], argv: list[str],
         env: list[str] | None = None, user: str | None = None, workdir: str | None = None,
         tty: bool = False, detach: bool = False, stdin: object = None, stdout: object = None,
         stderr: object = None) -> int:
    """Runs argv in the running container (its namespaces, cgroup, capabilities, seccomp)
    and returns its exit code (0 once started, when detached). env items are "K=V",
    overlaying the container's; user is "name[:group]" or "uid[:gid]" resolved in the
    container's /etc/passwd. stdio default to the caller's. Raises ExecError."""
    from engine import spec as specs

    path = _dir(container_dir)
    status = state(path).status
    if status == "paused":
        raise Conflict("container is paused: unpause it before exec")
    if status != "running":
        raise Conflict("container is not running")
    request: dict = {"argv": list(argv), "env": list(env or []), "tty": tty, "detach": detach,
                     "workdir": workdir}
    if user:
        config = st.read_json(os.path.join(path, "config.json")) or {}
        root = os.path.join(path, config["root"]["path"])

        def etc(name: str) -> str | None:
            try:
                return Path(root, "etc", name).read_text()
            except OSError:
                return None

        uid, gid, extra, _home = specs.resolve_user(user, etc("passwd"), etc("group"))
        request["user"] = {"uid": uid, "gid": gid, "additionalGids": extra}
    r, w = os.pipe()
    devnull = subprocess.DEVNULL
    try:
        proc = subprocess.Popen(
            [sys.executable, "-I", "-S", str(NSEXEC), path, st.dumps(request), str(w)],
            pass_fds=(w,), stdin=devnull if detach else stdin,
            stdout=devnull if detach else stdout, stderr=devnull if detach else stderr)
    finally:
        os.close(w)
    with os.fdopen(r, "rb") as f:
        message = f.read().decode(errors="replace")
    code = proc.wait()
    if message:
        raise ExecError(message)
    return code


def exec_output(container_dir: str | os.PathLike[str], argv: list[str],
                **kwargs: object) -> tuple[int, str]:
    """exec() capturing stdout+stderr as text (for probes and tests)."""
    import tempfile

    with tempfile.TemporaryFile() as out:
        code = exec(container_dir, argv, stdout=out, stderr=out, stdin=subprocess.DEVNULL,
                    **kwargs)  # type: ignore[arg-type]
        out.seek(0)
        return code, out.read().decode(errors="replace")
