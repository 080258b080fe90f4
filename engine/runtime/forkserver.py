"""A shim fork server: one `python -I -S` with the shim imported, forking a shim per request.

Starting a shim as a fresh interpreter costs ~35 ms of CPU; a command that starts many
containers (`up`) instead starts this server once and has it fork each shim (~1 ms). The
engine may have threads, so it never forks shims itself: this process is single-threaded.

Protocol (one SOCK_SEQPACKET socket inherited as the last argv item, the idle limit before
it): a request is one message, the container directory, carrying the shim's status fd
(SCM_RIGHTS); the reply is one message "<pid> 0" of the shim, forked at once: it setsid()s,
keeps only stdio and the status fd, and runs the shim as `launch.start` runs a fresh one,
minus the second fork (nobody waits for it: the server ignores SIGCHLD, so the kernel reaps
the shims that end while it lives, and init adopts the others when it exits); or "error
<message>". The server exits at EOF (the engine closed its end, or died) or after IDLE
seconds without a request (it then shuts its end for reading, so later sends fail at once,
and serves what was already queued). Before serving it computes what every shim would
(`_prepare`): the children inherit it.

Server side: stdlib C modules only (the shims inherit its memory). Client side: `Client`.
"""

from __future__ import annotations

import _socket
import os
import sys

IDLE = 60.0
MAXFD = 1 << 20


# ---- the server (runs in the helper process) ---------------------------------------------

def serve(fd: int, idle: float = IDLE) -> None:
    import _signal
    import gc

    import shim  # already imported by the -c code; what every child runs

    sock = _socket.socket(fileno=fd)
    sock.settimeout(idle)
    _prepare()
    # The shims are our children until we exit: the kernel reaps them (each resets this).
    _signal.signal(_signal.SIGCHLD, _signal.SIG_IGN)
    gc.freeze()  # the children share what exists now: keep the collector off those pages
    while True:
        try:
            request = sock.recvmsg(4096, _socket.CMSG_SPACE(4))
        except TimeoutError:
            # Idle: refuse new requests (the engine's sends fail, and it starts its shims
            # itself), then serve those already queued, so that none is lost.
            sock.shutdown(_socket.SHUT_RD)
            sock.setblocking(False)
            continue
        except OSError:  # BlockingIOError once drained, or the engine is gone
            break
        if not request[0] and not request[1]:
            break  # EOF: the engine is done
        _handle(sock, shim, request)
    sock.close()


def _prepare() -> None:
    """What every shim and container would otherwise compute for itself, done once here:
    the cgroup hierarchies (from the mount table) and the host's cgroup symlinks, the
    kernel's last capability, and the BPF program of the default seccomp profile
    (libseccomp takes ~1 ms per profile). Imports what the shims import later on (init
    brings init_rootfs), so that no child imports after the fork."""
    import caps
    import cgroups
    import init
    import seccomp
    import shim_health  # noqa: F401  (imported by a shim when its container has a healthcheck)

    try:
        cgroups.remember_hierarchies()
        init.kernel_last_cap()
        init.host_cgroup_links()
        seccomp.program(seccomp.profile(caps.DEFAULT, os.uname().machine))
    except OSError:
        pass  # each shim finds out for itself, and reports it


def _handle(sock: object, shim: object, request: tuple) -> None:
    msg, ancillary, _flags, _ = request
    fds = _fds(ancillary)
    if not msg or len(fds) != 1:
        for received in fds:
            os.close(received)
        _reply(sock, "error bad request")
        return
    status_fd = fds[0]
    import tracing as trace
    trace.mark("server:request")
    try:
        pid = os.fork()
    except OSError as e:
        os.close(status_fd)
        _reply(sock, f"error {e}")
        return
    if pid == 0:
        _child(shim, msg.decode(), status_fd)
    os.close(status_fd)
    _reply(sock, f"{pid} 0")
    trace.mark("server:forked")


def _fds(ancillary: list) -> list[int]:
    out: list[int] = []
    for level, kind, data in ancillary:
        if level == _socket.SOL_SOCKET and kind == _socket.SCM_RIGHTS:
            usable = len(data) - len(data) % 4
            out += [int.from_bytes(data[i:i + 4], sys.byteorder, signed=True)
                    for i in range(0, usable, 4)]
    return out


def _reply(sock: object, text: str) -> None:
    try:
        sock.send(text.encode())  # type: ignore[attr-defined]
    except OSError:
        pass


def _child(shim: object, container_dir: str, status_fd: int) -> None:
    """The shim: as fresh a start as a new interpreter's, in a session of its own. Never
    returns."""
    code = 1
    try:
        import _signal

        os.setsid()
        # Nothing of the server or of other containers: stdio and the status fd only.
        if status_fd != 3:
            os.dup2(status_fd, 3)
            os.close(status_fd)
        import tracing as trace
        if trace._fd > 4:
            os.closerange(4, trace._fd)
            os.closerange(trace._fd + 1, MAXFD)
        else:
            os.closerange(4, MAXFD)
        trace.mark("shim:forked")
        _signal.set_wakeup_fd(-1)
        _signal.signal(_signal.SIGCHLD, _signal.SIG_DFL)
        _signal.pthread_sigmask(_signal.SIG_SETMASK, [])
        shim.start(container_dir, 3, detached=True)  # type: ignore[attr-defined]
        code = 0
    except BaseException:
        code = 1
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except BaseException:
                pass
        os._exit(code)


# ---- the client (the engine's side) ------------------------------------------------------

class Client:
    """One fork server for this process's threads; `spawn` is thread-safe. Started at once
    (its interpreter boots while the caller goes on); `close` ends it."""

    def __init__(self, code: str, shim_path: str, idle: float = IDLE) -> None:
        import socket
        import subprocess
        import threading

        self._lock = threading.Lock()
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            # shim.py's path rides along in argv (the shims it forks show this command line
            # too), so `ps` and leak checks can tell them
            self._proc = subprocess.Popen(
                [sys.executable, "-I", "-S", "-c", code, shim_path, "--forkserver",
                 repr(float(idle)), str(theirs.fileno())],
                pass_fds=(theirs.fileno(),), stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                start_new_session=True, close_fds=True)
        finally:
            theirs.close()
        self._sock = ours
        self.broken = False

    def spawn(self, container_dir: str, status_fd: int) -> bool:
        """Has the server fork a shim for `container_dir` writing to `status_fd` (the
        caller keeps its copy). False if the server is gone (the caller starts the shim
        itself); OSError if the fork failed."""
        import array
        import socket

        with self._lock:
            if self.broken:
                return False
            try:
                self._sock.sendmsg([os.fsencode(container_dir)], [(
                    socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [status_fd]))],
                    socket.MSG_NOSIGNAL)
            except OSError:  # gone (idle, or killed) before it took the request
                self.broken = True
                return False
            try:
                reply = self._sock.recv(4096).decode()
            except OSError:
                reply = ""
            if not reply:
                # It died holding the request: whether a shim got forked, only the status
                # socket can tell (never start a second shim for the same container).
                self.broken = True
                return True
        if reply.startswith("error "):
            raise OSError(f"fork server: {reply[6:]}")
        return True

    def forget(self) -> None:
        """In a process forked from the one that started the server: closes this process's
        copy of its socket (no lock: a thread that held it is not here), so the server
        hears its parent's EOF alone and answers its requests alone."""
        self.broken = True
        self._sock.close()

    def close(self, wait: bool = True) -> None:
        """Ends the server (EOF on its socket) and reaps it; without `wait`, leaves it to end
        on its own (a server still booting reads the EOF when it is done), reaped when it
        has by the next `subprocess` call or by init after our exit."""
        import subprocess

        with self._lock:
            self.broken = True
            self._sock.close()
        if not wait:
            return
        try:
            self._proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
