"""The shim's control socket `ctl.sock` and the stop/kill/pause requests. Stdlib only.

A mixin of `shim.Shim` (imported by path as its sibling), which provides the event loop
(`watch`, `unwatch`, `set_timer`, `timers`), the container (`pid`, `cgroup`, `state`, `opts`,
`own_pid_namespace`, `save`, `finish`) and `waiters` (connections answered when the
container stopped for good).
One JSON request line per connection, one JSON reply line:
{"op": "stop", "timeout": s}, {"op": "kill", "signal": n}, {"op": "pause"}, {"op": "resume"},
{"op": "wait"} (reply when the container stopped for good), {"op": "state"},
{"op": "stdin"}: the container's input, passed with the reply (SCM_RIGHTS): the pty's
master with a TTY (the caller writes keystrokes there; the output still comes through the
log), else the write end of its stdin pipe, which the shim then gives up (the caller's
closing it is the container's end of input; one taker; a restart then gets no input).
"""

from __future__ import annotations

import _signal as signal  # the C module: `signal` imports enum (~1 MB per shim)
import _socket  # the C module: `socket` imports enum and more
import os
import sys
import time

import state as st


class Control:
    listener: _socket.socket
    conns: dict[int, list]
    own_pid_namespace: bool
    stop_asked: bool

    def serve(self) -> None:
        try:
            os.unlink("ctl.sock")
        except FileNotFoundError:
            pass
        sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM | _socket.SOCK_CLOEXEC)
        sock.bind("ctl.sock")
        sock.listen(16)
        sock.setblocking(False)
        self.listener = sock
        self.conns = {}
        self.watch(sock.fileno(), self.on_accept)

    def on_accept(self, _fd: int) -> None:
        try:
            fd, _ = self.listener._accept()
        except BlockingIOError:
            return
        conn = _socket.socket(fileno=fd)
        self.conns[fd] = [conn, b""]
        self.watch(fd, self.on_request)

    def on_request(self, fd: int) -> None:
        conn, buf = self.conns[fd]
        try:
            data = conn.recv(4096)
        except OSError:
            data = b""
        if not data:
            self.drop(conn)
            return
        buf += data
        self.conns[fd][1] = buf
        if b"\n" not in buf:
            return
        self.unwatch(fd)
        try:
            request = st.loads(buf.split(b"\n", 1)[0])
            self.handle(conn, request)  # type: ignore[arg-type]
        except Exception as e:  # a bad request must not take the shim down
            self.respond(conn, st.dumps({"error": f"{type(e).__name__}: {e}"}) + "\n")

    def respond(self, conn: object, line: str) -> bool:
        """Answers and closes `conn`; whether the answer went out (False: the asker left)."""
        try:
            conn.sendall(line.encode())  # type: ignore[attr-defined]
            sent = True
        except OSError:
            sent = False
        self.drop(conn)
        return sent

    def drop(self, conn: object) -> None:
        fd = conn.fileno()  # type: ignore[attr-defined]
        self.unwatch(fd)
        self.conns.pop(fd, None)
        conn.close()  # type: ignore[attr-defined]

    def handle(self, conn: object, request: dict) -> None:
        op = request.get("op")
        ok = st.dumps({"ok": True}) + "\n"
        if op == "state":
            self.respond(conn, st.dumps(self.state) + "\n")
        elif op == "wait":
            self.waiters.append(conn)
        elif op == "stop":
            self.stop_asked = True
            self.waiters.append(conn)
            self.stop(float(request.get("timeout", self.opts.get("stop_timeout", 10))))
        elif op == "kill":
            self.manual_stop = True
            sig = int(request.get("signal", signal.SIGKILL))
            if self.pid:
                self.signal_init(sig)
            elif self.state["status"] == "restarting":
                self.timers.pop("restart", None)
                self.finish("exited")
            self.respond(conn, ok)
        elif op == "stdin":
            self.hand_stdin(conn)
        elif op in ("pause", "resume"):
            if not self.pid:
                self.respond(conn, st.dumps({"error": "container is not running"}) + "\n")
                return
            if op == "pause":
                self.cgroup.freeze()
                self.state["status"] = "paused"
            else:
                self.cgroup.thaw()
                self.state["status"] = "running"
            self.save()
            self.respond(conn, ok)
        else:
            self.respond(conn, st.dumps({"error": f"unknown op {op!r}"}) + "\n")

    def hand_stdin(self, conn: object) -> None:
        if self.opts.get("tty"):
            fd = next((fd for fd, (name, _) in self.streams.items() if name == "stdout"), -1)
        else:
            fd = self.stdin_w
        if fd < 0 or not self.pid:
            self.respond(conn, st.dumps({"error": "the container's stdin is not open"}) + "\n")
            return
        try:
            conn.sendmsg([(st.dumps({"ok": True}) + "\n").encode()],  # type: ignore[attr-defined]
                         [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS, fd.to_bytes(4, sys.byteorder))])
        except OSError:
            pass
        else:
            if fd == self.stdin_w:
                os.close(self.stdin_w)
                self.stdin_w = -1
                # Its input was the caller's, and ended with it: a restart reads no more
                # (a pipe no one holds the other end of would only hang its reader).
                self.opts["stdin_open"] = False
        self.drop(conn)

    def stop(self, timeout: float) -> None:
        stopping = self.manual_stop and "kill" in self.timers  # asked before, in its grace
        self.manual_stop = True
        if self.state["status"] == "restarting":
            self.timers.pop("restart", None)
            self.finish("exited")
            return
        if not self.pid:
            return
        if timeout == 0:
            self.hard_kill()
            return
        if stopping:
            # The stop signal went once (a second one means "quit now" to some programs);
            # the sooner deadline holds (`down` asks ahead, then each step asks again).
            if timeout > 0 and time.monotonic() + timeout < self.timers["kill"][0]:
                self.set_timer("kill", timeout, self.hard_kill)
            return
        try:
            os.kill(self.pid, int(self.opts.get("stop_signal", signal.SIGTERM)))
        except ProcessLookupError:
            pass
        if self.cgroup.frozen():
            self.cgroup.thaw()
        if timeout > 0:
            self.set_timer("kill", timeout, self.hard_kill)

    def hard_kill(self) -> None:
        """SIGKILL for every process of the container. As PID 1 of a namespace of its own,
        the container's init takes the rest of that namespace with it (the kernel kills
        them as it exits), so the cgroup-wide kill is only for a shared namespace: on
        cgroup v1 it freezes the cgroup first, and freezing flips a kernel static key,
        which patches kernel text on every CPU (5-25 ms a time on a VM, both CPUs
        stalled; `down -t 0` of 20 did it 20 times)."""
        if not self.pid:
            return
        if not self.own_pid_namespace:
            self.cgroup.kill()
        try:
            self.signal_init(signal.SIGKILL)
        except ProcessLookupError:
            pass

    def signal_init(self, sig: int) -> None:
        """Sends `sig` to the container's init; a SIGKILL thaws a paused container too (a
        frozen task dies only once thawed), whether or not the init was still there."""
        try:
            os.kill(self.pid, sig)
        finally:
            if sig == signal.SIGKILL and self.cgroup.frozen():
                self.cgroup.thaw()
