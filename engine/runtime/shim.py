"""The per-container monitor ("shim"). Stdlib only; imports its siblings by path.

Started by `launch.start` as `python -I -S -c "...import shim; shim.main()" <path of
shim.py> <container dir> <status fd>` (imported, so its cached bytecode is used), where it
forks once more so it outlives the caller, or forked by a fork server (forkserver.py) as a
session of its own, which needs no second fork. Then (cwd = container dir, SIGHUP ignored):
  - reads config.json (OCI spec) and shim.json (restart, healthcheck, stop signal, stdio);
  - creates the cgroup and applies limits; is a child subreaper;
  - forks the container's first process straight into its PID namespace (init.start),
    and moves it into the cgroup (on v1 that may wait ~10 ms for an RCU grace period)
    while it sets up its namespaces and rootfs; then lets it go on to execve;
  - writes one JSON line to the status fd: {"pid": N} or {"error": "..."} and closes it;
  - owns stdio: pipes (or a pty with `tty`) -> <id>-json.log in Docker's json-file format
    (shim_stdio.py);
  - records state.json atomically on every change;
  - applies the restart policy with Docker's back-off (100 ms doubling, reset after 10 s up);
  - runs healthchecks in processes that join the container's namespaces and cgroup
    (shim_health.py);
  - serves a control socket `ctl.sock`: stop, kill, pause, resume, wait, state
    (shim_control.py);
  - serves the published ports (portproxy.py, when the engine wrote ports.json);
  - when the container has stopped for good: final state, listeners closed, cgroup
    removed, exit; then, unless an engine command waited for that stop, runs the engine's
    exit hook (shim.json's "exit_hook") to release the network.
One epoll loop, no threads; SIGCHLD and SIGTERM arrive through the wakeup fd.
"""

from __future__ import annotations

import _signal as signal  # the C module: `signal` imports enum (~1 MB per shim)
import _socket
import gc
import os
import select
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import cgroups
import state as st
import tracing as trace
from shim_control import Control
from shim_stdio import Output

# `init`, `syscalls` and `seccomp` (ctypes) are imported when the shim starts a container,
# `shim_health` when it has a healthcheck (a fork server has them imported already).

IN = select.EPOLLIN | select.EPOLLHUP | select.EPOLLERR


class Shim(Output, Control):
    """The monitor's state and event loop, and the container's life (start, exit,
    restart policy, final stop). Its output goes to the log (shim_stdio.Output), requests
    come through the control socket (shim_control.Control), healthchecks run in
    shim_health.Health."""

    def __init__(self, container_dir: str) -> None:
        self.dir = container_dir
        self.spec: dict = st.read_json("config.json")  # type: ignore[assignment]
        self.opts: dict = st.read_json("shim.json") or {}  # type: ignore[assignment]
        self.id = self.opts.get("id") or os.path.basename(container_dir)
        self.cgroup = cgroups.Cgroup(self.spec["linux"]["cgroupsPath"])
        # Its init is PID 1 of a namespace of its own (not one it joins by path)
        pid_ns = pid_namespace_entry(self.spec["linux"])
        self.own_pid_namespace = pid_ns is not None and not pid_ns.get("path")
        self.epoll = select.epoll()
        self.handlers: dict[int, object] = {}
        self.timers: dict[str, tuple[float, object]] = {}
        self.waiters: list = []
        prev = st.read(".") or {}
        self.state = {"id": self.id, "status": "created", "pid": 0, "shim_pid": os.getpid(),
                      "shim_start": st.start_time(os.getpid()), "exit_code": 0,
                      "started_at": prev.get("started_at", ""),
                      "finished_at": prev.get("finished_at", ""),
                      "restart_count": 0, "error": "", "health": None}
        self.pid = 0
        self.streams: dict[int, list] = {}   # fd -> [stream name, partial bytes]
        self.stdin_w = -1
        self.manual_stop = False
        self.backoff = 0.1
        self.started_mono = 0.0
        self.health = None         # shim_health.Health when there is a healthcheck
        self.done = False
        self.proxy = None          # portproxy.Proxy when ports are published
        self.engine_releases = False
        self.stop_asked = False  # an engine command asked for the stop (see finish)
        self.log_fd = os.open(f"{self.id}-json.log",
                              os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)

    # -- plumbing -------------------------------------------------------------------------

    def watch(self, fd: int, handler: object) -> None:
        self.handlers[fd] = handler
        self.epoll.register(fd, IN)

    def unwatch(self, fd: int) -> None:
        if self.handlers.pop(fd, None) is not None:
            self.epoll.unregister(fd)

    def save(self) -> None:
        st.write(".", self.state)

    def set_timer(self, name: str, delay: float, fn: object) -> None:
        self.timers[name] = (time.monotonic() + delay, fn)

    def run(self) -> None:
        while not self.done:
            timeout = -1.0
            if self.timers:
                timeout = max(0.0, min(d for d, _ in self.timers.values()) - time.monotonic())
            for fd, _events in self.epoll.poll(timeout):
                handler = self.handlers.get(fd)
                if handler is not None:
                    handler(fd)  # type: ignore[operator]
                if self.done:
                    return
            now = time.monotonic()
            for name, (deadline, fn) in list(self.timers.items()):
                if deadline <= now and self.timers.get(name, (None,))[0] == deadline:
                    del self.timers[name]
                    fn()  # type: ignore[operator]

    # -- signals --------------------------------------------------------------------------

    def setup_signals(self) -> None:
        r, w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        signal.set_wakeup_fd(w)
        for sig in (signal.SIGCHLD, signal.SIGTERM):
            signal.signal(sig, lambda *_: None)
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        self.watch(r, self.on_signal)

    def on_signal(self, fd: int) -> None:
        try:
            received = os.read(fd, 512)
        except BlockingIOError:
            received = b""
        if signal.SIGTERM in received:
            self.stop(float(self.opts.get("stop_timeout", 10)))
        self.reap()

    def reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            code = os.waitstatus_to_exitcode(status)
            code = code if code >= 0 else 128 - code
            if pid == self.pid:
                self.exited(code)
            elif self.health is not None and pid == self.health.pid:
                self.health.done(code)

    # -- the container ----------------------------------------------------------------------

    def begin(self) -> tuple:
        """Forks the container's first process into its PID namespace (`init.start`); it
        sets up its namespaces and rootfs while `complete` moves it into the cgroup. Raises
        OSError (nothing forked, nothing left open) if that cannot begin."""
        tty = bool(self.opts.get("tty"))
        ours: list[tuple[int, str]] = []
        theirs: list[int] = []
        pipes: list[int] = []
        try:
            if tty:
                master, slave = os.openpty()
                rows, columns = self.opts.get("console_size") or (0, 0)
                if rows and columns:  # sized before the process runs (it may ask at once)
                    import termios
                    termios.tcsetwinsize(master, (rows, columns))
                ours.append((master, "stdout"))
                theirs.append(slave)
                stdio = (slave, slave, slave)
                tty_name: str | None = os.ttyname(slave)
            else:
                out_r, out_w = os.pipe()
                ours.append((out_r, "stdout"))
                theirs.append(out_w)
                err_r, err_w = os.pipe()
                ours.append((err_r, "stderr"))
                theirs.append(err_w)
                if self.opts.get("stdin_open"):
                    if self.stdin_w >= 0:  # a restart: the last run's input ends here
                        os.close(self.stdin_w)
                    in_r, self.stdin_w = os.pipe()
                else:
                    in_r = os.open("/dev/null", os.O_RDONLY | os.O_CLOEXEC)
                theirs.append(in_r)
                stdio = (in_r, out_w, err_w)
                tty_name = None
            linux = self.spec.get("linux") or {}
            if linux.get("seccomp"):
                # once per shim (a hit when the fork server has it): restarts and
                # healthchecks reuse it, and the child need not open libseccomp
                import seccomp
                seccomp.program(linux["seccomp"])
            error_r, error_w = os.pipe()
            pipes += (error_r, error_w)
            go_r, go_w = os.pipe()
            pipes += (go_r, go_w)
            own_pidns = pid_namespace(linux)
            try:
                child = os.fork()
                if child == 0:
                    try:
                        signal.set_wakeup_fd(-1)  # a signal here must not look like the shim's
                        os.close(go_w)
                        os.close(error_r)
                        import init  # a fork server's shims have it already
                        init.start(self.spec, ".", self.cgroup, stdio, error_w, go_r,
                                   tty_name, bool(self.opts.get("init")))
                    except BaseException as e:
                        os.write(error_w, f"{e}".encode())
                    os._exit(127)
            finally:
                restore_pid_namespace(own_pidns)
        except BaseException:
            # (a child forked already reads EOF on `go` and exits; `reap` collects it)
            for fd in (*pipes, *theirs, *(fd for fd, _ in ours)):
                os.close(fd)
            if self.stdin_w >= 0:
                os.close(self.stdin_w)
                self.stdin_w = -1
            raise
        for fd in (error_w, go_r, *theirs):
            os.close(fd)
        return child, error_r, go_w, ours

    def complete(self, pending: tuple) -> str | None:
        """Moves the child into the cgroup (the slow step: on v1 ~10 ms for an RCU grace
        period, while the child prepares its rootfs) and lets it go on; returns an error
        message if the container failed before execve, else records it running."""
        child, error_r, go_w, ours = pending
        moved: OSError | None = None
        try:
            self.cgroup.add(child)
        except OSError as e:
            moved = e
        trace.mark("shim:moved")
        try:
            if moved is None:
                os.write(go_w, b"g")
            else:
                os.kill(child, signal.SIGKILL)
        except (BrokenPipeError, ProcessLookupError):
            pass  # it failed on its own: its message is in the pipe
        os.close(go_w)
        message = st.read_all(error_r).decode(errors="replace")  # EOF: execve, or exit
        os.close(error_r)
        trace.mark("shim:init-execd")
        error = message or (str(moved) if moved is not None else None)
        if error:
            try:
                os.waitpid(child, 0)
            except ChildProcessError:
                pass
            for fd, _ in ours:
                os.close(fd)
            return error
        for fd, name in ours:
            os.set_blocking(fd, False)
            self.streams[fd] = [name, b""]
            self.watch(fd, self.on_output)
        self.pid = child
        self.started_mono = time.monotonic()
        self.state.update(status="running", pid=child, started_at=st.now(), error="",
                          exit_code=0)
        if self.opts.get("healthcheck"):
            if self.health is None:
                import shim_health  # a fork server's shims have it already
                self.health = shim_health.Health(self)
            self.state["health"] = {"status": "starting", "failing_streak": 0, "log": []}
            self.health.schedule()
        self.save()
        return None

    def launch(self) -> str | None:
        """Starts the container again (a restart); returns an error message if it failed
        before execve, or could not begin (e.g. the PID namespace it joins is gone)."""
        try:
            pending = self.begin()
        except OSError as e:
            return str(e)
        return self.complete(pending)

    def exited(self, code: int) -> None:
        self.drain()
        self.pid = 0
        if self.health is not None:
            self.health.cancel()
        self.timers.pop("kill", None)
        self.state.update(pid=0, exit_code=code, finished_at=st.now())
        if self.cgroup.frozen():
            self.cgroup.thaw()
        if not self.manual_stop and self.should_restart(code):
            if time.monotonic() - self.started_mono >= 10:
                self.backoff = 0.1
            self.state["status"] = "restarting"
            self.save()
            self.set_timer("restart", self.backoff, self.restart)
            self.backoff = min(self.backoff * 2, 60.0)
            return
        self.finish("exited")

    def should_restart(self, code: int) -> bool:
        policy = self.opts.get("restart") or {}
        name = policy.get("name", "no")
        if name in ("always", "unless-stopped"):
            return True
        if name == "on-failure" and code != 0:
            limit = int(policy.get("max_retries") or 0)
            return limit == 0 or self.state["restart_count"] < limit
        return False

    def restart(self) -> None:
        self.state["restart_count"] += 1
        error = self.launch()
        if error:
            self.state["error"] = error
            self.exited(127)

    def finish(self, status: str) -> None:
        """The container stopped for good: final state, answer waiters, clean up, exit."""
        self.state["status"] = status
        if self.state.get("health"):
            self.state["health"]["status"] = "unhealthy" \
                if self.state["health"]["status"] == "unhealthy" else "starting"
        self.save()
        if self.proxy is not None:
            self.proxy.close()  # the host ports are free once a waiter hears we stopped
        # The engine releases the container's network itself after a `stop` (the command
        # that asked goes on to release or remove it, even one that asked and left: `down`
        # asks its containers to stop ahead), or when a waiter (`wait`, a waited start)
        # hears this; else the exit hook does (_exit_hook): a waiter gone before the end (a
        # killed `run`) does not count.
        reply = st.dumps({"exit_code": self.state["exit_code"], "status": status}) + "\n"
        heard = [self.respond(conn, reply) for conn in self.waiters]
        self.engine_releases = self.stop_asked or any(heard)
        self.waiters = []
        try:
            self.cgroup.remove()
        except OSError as e:
            sys.stderr.write(f"shim: removing cgroup: {e}\n")
        self.done = True


def pid_namespace_entry(linux: dict) -> dict | None:
    """The spec's PID namespace (None: the shim's own, the host's)."""
    return next((n for n in linux.get("namespaces") or [] if n["type"] == "pid"), None)


def pid_namespace(linux: dict) -> int:
    """Makes the shim's next children start in the spec's PID namespace (a new one, of
    which the next child is PID 1, or the one at its path); returns an fd of the shim's
    own one for `restore_pid_namespace`, or -1 if nothing changed. Just around a fork."""
    import syscalls as sc

    ns = pid_namespace_entry(linux)
    if ns is None:
        return -1
    own = os.open("/proc/self/ns/pid_for_children", os.O_RDONLY | os.O_CLOEXEC)
    try:
        if ns.get("path"):
            try:  # one clean line for the user, as init's own namespace errors
                fd = os.open(ns["path"], os.O_RDONLY | os.O_CLOEXEC)
                try:
                    sc.setns(fd, sc.CLONE_NEWPID)
                finally:
                    os.close(fd)
            except OSError as e:
                raise OSError(f"join pid namespace {ns['path']}: "
                              f"{os.strerror(e.errno or 0)}") from None
        else:
            sc.unshare(sc.CLONE_NEWPID)
    except BaseException:
        os.close(own)
        raise
    return own


def restore_pid_namespace(own: int) -> None:
    """Back to the shim's own PID namespace for its children (healthchecks, restarts)."""
    if own >= 0:
        import syscalls as sc

        try:
            sc.setns(own, sc.CLONE_NEWPID)
        finally:
            os.close(own)


def daemonize(container_dir: str, fork: bool = True) -> None:
    """Second fork (the caller reaps the first one at once, the shim lives on on its own),
    then the shim's cwd and stdio."""
    if fork and os.fork():
        os._exit(0)
    os.chdir(container_dir)
    null = os.open("/dev/null", os.O_RDWR)
    os.dup2(null, 0)
    os.dup2(null, 1)
    log = os.open("shim.log", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
    os.dup2(log, 2)
    os.close(null)
    os.close(log)


def main() -> None:
    start(sys.argv[-2], int(sys.argv[-1]))
    # Over: exit as a fork server's shims do, without the interpreter's teardown (it would
    # free every object one by one: 10-30 ms of CPU, while `down` needs the CPUs)
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    os._exit(0)


def start(container_dir: str, status_fd: int, detached: bool = False) -> None:
    """The shim's life, from a fresh interpreter (`main`) or a fork server's child: forks
    once more to outlive the caller (unless `detached`: a fork server's child is a new
    session already, which nobody waits for), starts the container, reports on
    `status_fd`, serves until the container stopped for good. Returns in the monitor when
    it is all over."""
    os.set_inheritable(status_fd, False)
    daemonize(container_dir, fork=not detached)
    trace.mark("shim:daemonized")
    shim = None
    pending = None
    try:
        shim = Shim(container_dir)
        trace.mark("shim:config")
        shim.setup_signals()
        if os.path.exists("ports.json"):
            import portproxy
            shim.proxy = portproxy.Proxy.load(shim)
        shim.cgroup.create()
        shim.cgroup.apply((shim.spec.get("linux") or {}).get("resources") or {})
        trace.mark("shim:cgroup")
        import syscalls
        # the container's orphans come to us when it shares our PID namespace (`pid: host`)
        syscalls.prctl(syscalls.PR_SET_CHILD_SUBREAPER, 1)
        pending = shim.begin()
        trace.mark("shim:forked-init")
        shim.serve()
        trace.mark("shim:serving")
        error = shim.complete(pending)
        pending = None
    except Exception as e:
        error = f"{type(e).__name__}: {e}" if not isinstance(e, OSError) else str(e)
        if pending is not None:  # its process must not outlive the failed start
            _kill_and_reap(pending[0])
    if not error:
        ack = _report(status_fd, {"pid": shim.pid}, acknowledged=True)
        if ack == WAITED:
            # The engine waits for the exit on this very connection (`launch.start(...,
            # waited=True)`): a waiter from the start, before the process can end.
            shim.waiters.append(_socket.socket(fileno=status_fd))
        elif not ack:
            # The engine stopped waiting (its start timed out and said the start failed),
            # or went away before it took the report: the container must not run behind
            # its back. (_report closed the fd.)
            shim.cgroup.kill()
            _kill_and_reap(shim.pid)
            error, status_fd = "the engine stopped waiting for the start", -1
    if error:
        if shim is not None:
            shim.state.update(status="created", exit_code=127, error=error, pid=0)
            shim.save()
            try:
                shim.cgroup.remove()
            except OSError:
                pass
        if status_fd >= 0:
            _report(status_fd, {"error": error})
        _cleanup()
        os._exit(1)
    trace.mark("shim:reported")
    gc.freeze()  # what exists now lives as long as the shim: keep the collector off it
    shim.run()
    _cleanup()
    if not shim.engine_releases:
        _exit_hook(shim.opts.get("exit_hook"))


# The engine's acknowledgement of a start's report: go on; or go on, and answer this
# connection as a waiter when the container has stopped for good (the fd is kept then).
ACK, WAITED = b"k", b"w"


def _report(status_fd: int, doc: dict, acknowledged: bool = False) -> bytes:
    """Tells the engine's `start` how the start went; b"" when it is no longer there to
    hear it (it closed its end when its wait timed out), or, if the report must be
    `acknowledged`, when it closed its end without acknowledging; else the acknowledgement
    (ACK, or WAITED: then `status_fd` stays open, the caller's to keep)."""
    ack = b""
    try:
        os.write(status_fd, (st.dumps(doc) + "\n").encode())
        ack = os.read(status_fd, 1) if acknowledged else ACK
        return ack if ack in (ACK, WAITED) else b""
    except OSError:  # EPIPE, or ECONNRESET: closed with the report unread
        return b""
    finally:
        if ack != WAITED:
            os.close(status_fd)


def _kill_and_reap(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    except (ProcessLookupError, ChildProcessError):
        pass


def _exit_hook(argv: list[str] | None) -> None:
    """Runs the engine's exit hook (shim.json's "exit_hook" argv, + the lock fd) detached,
    holding the container's lock for it, so the network is released when the container
    stops for good on its own. If the engine holds the lock, it is preparing or releasing:
    nothing to do."""
    if not argv:
        return
    import fcntl

    fd = os.open("lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return
    pid = os.fork()
    if pid == 0:
        try:
            os.setsid()
            if os.fork() == 0:
                os.set_inheritable(fd, True)
                os.execv(argv[0], [*argv, str(fd)])
        finally:
            os._exit(0)
    os.waitpid(pid, 0)
    os.close(fd)


def _cleanup() -> None:
    try:
        os.unlink("ctl.sock")
    except FileNotFoundError:
        pass


if __name__ == "__main__":
    main()
