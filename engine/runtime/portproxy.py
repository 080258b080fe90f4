"""The userland port proxy, served by the shim. Stdlib only, single-threaded.

The engine (engine/ports.py) binds the published host ports in the CLI and writes
`ports.json` in the container directory: {"pid": <CLI pid>, "target": "<container IPv4>",
"udp_idle_timeout": s, "ports": [{"protocol": "tcp"|"udp", "fd": N, "host": "ip:port",
"container_port": P}]}. `Proxy.load` takes copies of those sockets out of the waiting CLI with
pidfd_getfd(2) before the container starts, and registers them in the shim's epoll loop
(`shim.epoll`, `shim.handlers`; a handler is called with its fd when epoll reports it).

TCP: each accepted client gets a connection to target:container_port; bytes flow both ways
through one bounded buffer per direction. A side is read only while the buffer towards the
other side is empty (backpressure: a slow reader stops the writer), and an EOF from one side
becomes a shutdown(SHUT_WR) towards the other once the buffer is flushed (half-close). A
reset on either side resets the other. An fd whose mask would be empty leaves the epoll set,
so a hung-up peer cannot spin the loop.

UDP: one connected socket per client address towards the target; replies go back from the
published socket to that client. A flow idle for `udp_idle_timeout` is forgotten.
"""

from __future__ import annotations

import _socket
import os
import select
import sys
import time

CHUNK = 128 * 1024
ACCEPT_BATCH = 64
UDP_BATCH = 64
UDP_MAX_FLOWS = 4096
UDP_DATAGRAM_MAX = 65535
IN, OUT = select.EPOLLIN, select.EPOLLOUT
LINGER_RESET = (1).to_bytes(4, sys.byteorder) + bytes(4)  # struct linger {1, 0}
AGAIN = (BlockingIOError, InterruptedError)


def _take_fds(pid: int, fds: list[int]) -> list[int]:
    """Copies of `fds` from process `pid` (ours, with FD_CLOEXEC set by the kernel)."""
    try:
        from . import syscalls
    except ImportError:  # imported by path in the shim
        import syscalls  # type: ignore[no-redef]

    pidfd = os.pidfd_open(pid)
    out: list[int] = []
    try:
        for fd in fds:
            try:
                out.append(syscalls.pidfd_getfd(pidfd, fd))
            except OSError as exc:
                for taken in out:
                    os.close(taken)
                raise OSError(exc.errno, "taking the published port sockets from the engine "
                                         f"(pidfd_getfd): {os.strerror(exc.errno)}") from None
    finally:
        os.close(pidfd)
    return out


class Proxy:
    """Every published port of one container, served in the shim's loop."""

    def __init__(self, shim: object, doc: dict) -> None:
        self.shim = shim
        self.epoll: select.epoll = shim.epoll  # type: ignore[attr-defined]
        self.handlers: dict = shim.handlers  # type: ignore[attr-defined]
        self.masks: dict[int, int] = {}      # fds registered by the proxy -> epoll mask
        self.listeners: list = []
        self.pipes: set = set()
        self.udp: list = []
        self.udp_timeout = float(doc.get("udp_idle_timeout") or 90.0)
        target = doc["target"]
        entries = doc.get("ports") or []
        fds = _take_fds(int(doc["pid"]), [int(e["fd"]) for e in entries])
        for entry, fd in zip(entries, fds, strict=True):
            sock = _socket.socket(fileno=fd)
            sock.setblocking(False)
            address = (target, int(entry["container_port"]))
            if entry["protocol"] == "udp":
                udp = UdpPort(self, sock, address)
                self.udp.append(udp)
                self.listeners.append(sock)
                self.set(sock.fileno(), IN, udp.on_datagram)
            else:
                self.listeners.append(sock)
                self.set(sock.fileno(), IN, _Acceptor(self, sock, address).on_accept)

    @classmethod
    def load(cls, shim: object, path: str = "ports.json") -> Proxy | None:
        """The proxy for the container directory (the cwd), or None if nothing is published.
        Raises OSError if the sockets cannot be taken over."""
        import state  # the shim's sibling: its JSON reader spares us `json` and `re`

        doc = state.read_json(path)
        return cls(shim, doc) if doc and doc.get("ports") else None

    # -- epoll registration --------------------------------------------------------------

    def set(self, fd: int, mask: int, handler: object = None) -> None:
        """Registers fd with `mask` (0 = out of the epoll set for now)."""
        if handler is not None:
            self.handlers[fd] = handler
        old = self.masks.get(fd, 0)
        if mask == old:
            return
        if not mask:
            self.epoll.unregister(fd)
            del self.masks[fd]
        elif not old:
            self.epoll.register(fd, mask)
            self.masks[fd] = mask
        else:
            self.epoll.modify(fd, mask)
            self.masks[fd] = mask

    def forget(self, sock: object) -> None:
        fd = sock.fileno()  # type: ignore[attr-defined]
        if fd < 0:
            return
        if self.masks.pop(fd, 0):
            self.epoll.unregister(fd)
        self.handlers.pop(fd, None)
        sock.close()  # type: ignore[attr-defined]

    def close(self) -> None:
        """Closes every listener and connection: the host ports are free afterwards."""
        for pipe in list(self.pipes):
            pipe.close()
        for udp in self.udp:
            udp.close()
        for sock in self.listeners:
            self.forget(sock)
        self.listeners = []


class _Acceptor:
    __slots__ = ("paused", "proxy", "sock", "target")

    def __init__(self, proxy: Proxy, sock: object, target: tuple) -> None:
        self.proxy, self.sock, self.target, self.paused = proxy, sock, target, False

    def on_accept(self, _fd: int) -> None:
        for _ in range(ACCEPT_BATCH):
            try:
                fd, _addr = self.sock._accept()  # type: ignore[attr-defined]
            except AGAIN:
                return
            except OSError as e:
                if e.errno in (24, 23, 105, 12):  # EMFILE, ENFILE, ENOBUFS, ENOMEM
                    self.pause()
                return  # ECONNABORTED and the like: the client is gone already
            client = _socket.socket(fileno=fd)
            try:
                Pipe(self.proxy, client, self.target)
            except OSError:
                client.close()

    def pause(self) -> None:
        """Out of fds: stop accepting for a moment instead of spinning on the backlog."""
        self.proxy.set(self.sock.fileno(), 0)  # type: ignore[attr-defined]
        self.proxy.shim.set_timer(  # type: ignore[attr-defined]
            f"ports-accept-{self.sock.fileno()}", 0.2,  # type: ignore[attr-defined]
            lambda: self.proxy.set(self.sock.fileno(), IN))  # type: ignore[attr-defined]


class Pipe:
    """One proxied TCP connection. Side 0 is the client, side 1 the container."""

    __slots__ = ("closed", "connecting", "eof", "fds", "pending", "proxy", "socks")

    def __init__(self, proxy: Proxy, client: object, target: tuple) -> None:
        upstream = _socket.socket(_socket.AF_INET, _socket.SOCK_STREAM | _socket.SOCK_CLOEXEC)
        upstream.setblocking(False)
        for s in (client, upstream):
            s.setblocking(False)  # type: ignore[attr-defined]
            s.setsockopt(_socket.IPPROTO_TCP, _socket.TCP_NODELAY, 1)  # type: ignore
        err = upstream.connect_ex(target)
        if err not in (0, 115):  # EINPROGRESS
            upstream.close()
            raise OSError(err, os.strerror(err))
        self.proxy = proxy
        self.socks = (client, upstream)
        self.fds = (client.fileno(), upstream.fileno())  # type: ignore[attr-defined]
        self.pending = [b"", b""]    # bytes waiting to be written into side i
        self.eof = [False, False]    # side i sent EOF
        self.connecting = True
        self.closed = False
        proxy.pipes.add(self)
        proxy.set(self.fds[0], 0, self.on_event)
        proxy.set(self.fds[1], OUT, self.on_event)

    def mask(self, i: int) -> int:
        if self.connecting:
            return OUT if i == 1 else 0
        m = IN if not self.eof[i] and not self.pending[1 - i] else 0
        return m | (OUT if self.pending[i] else 0)

    def on_event(self, fd: int) -> None:
        if self.closed:
            return
        i = 0 if fd == self.fds[0] else 1
        if self.connecting:
            err = self.socks[1].getsockopt(_socket.SOL_SOCKET, _socket.SO_ERROR)
            if err:
                self.close()  # the container refused: the client sees the connection end
                return
            self.connecting = False
        else:
            try:
                self.flush(i)
                self.pump(i)
            except OSError:
                self.close(reset=True)
                return
            if self.eof[0] and self.eof[1] and not self.pending[0] and not self.pending[1]:
                self.close()
                return
        self.proxy.set(self.fds[0], self.mask(0))
        self.proxy.set(self.fds[1], self.mask(1))

    def flush(self, i: int) -> None:
        """Writes what waits for side i; once drained, passes on the other side's EOF."""
        data = self.pending[i]
        if not data:
            return
        try:
            n = self.socks[i].send(data)
        except AGAIN:
            return
        self.pending[i] = data[n:]
        if not self.pending[i] and self.eof[1 - i]:
            self.shut(i)

    def pump(self, i: int) -> None:
        """Reads side i (only when nothing waits for the other side) and writes it on."""
        if self.eof[i] or self.pending[1 - i]:
            return
        try:
            data = self.socks[i].recv(CHUNK)
        except AGAIN:
            return
        if not data:
            self.eof[i] = True
            self.shut(1 - i)
            return
        try:
            n = self.socks[1 - i].send(data)
        except AGAIN:
            n = 0
        if n < len(data):
            self.pending[1 - i] = data[n:]

    def shut(self, i: int) -> None:
        try:
            self.socks[i].shutdown(_socket.SHUT_WR)
        except OSError:
            pass  # the peer is gone already; its own error ends the pipe

    def close(self, reset: bool = False) -> None:
        if self.closed:
            return
        self.closed = True
        self.proxy.pipes.discard(self)
        for s in self.socks:
            if reset:
                try:  # linger 0: close sends RST, so the other peer learns of the reset
                    s.setsockopt(_socket.SOL_SOCKET, _socket.SO_LINGER, LINGER_RESET)
                except OSError:
                    pass
            self.proxy.forget(s)


class UdpPort:
    """One published UDP port: a flow (connected socket towards the target) per client."""

    __slots__ = ("by_fd", "flows", "proxy", "sock", "target")

    def __init__(self, proxy: Proxy, sock: object, target: tuple) -> None:
        self.proxy, self.sock, self.target = proxy, sock, target
        self.flows: dict[tuple, list] = {}   # client address -> [socket, last activity]
        self.by_fd: dict[int, tuple] = {}    # flow fd -> client address

    def on_datagram(self, _fd: int) -> None:
        now = time.monotonic()
        for _ in range(UDP_BATCH):
            try:
                data, client = self.sock.recvfrom(UDP_DATAGRAM_MAX)  # type: ignore[attr-defined]
            except AGAIN:
                return
            except OSError:
                continue  # an ICMP error queued on the socket: not ours to act on
            flow = self.flows.get(client) or self.open(client)
            if flow is None:
                continue
            flow[1] = now
            try:
                flow[0].send(data)
            except OSError:
                pass  # full or refused: UDP may drop

    def open(self, client: tuple) -> list | None:
        if len(self.flows) >= UDP_MAX_FLOWS:
            self.sweep(force_oldest=True)
        s = _socket.socket(_socket.AF_INET, _socket.SOCK_DGRAM | _socket.SOCK_CLOEXEC)
        s.setblocking(False)
        try:
            s.connect(self.target)
        except OSError:
            s.close()
            return None
        flow = [s, time.monotonic()]
        self.flows[client] = flow
        self.by_fd[s.fileno()] = client
        self.proxy.set(s.fileno(), IN, self.on_reply)
        if len(self.flows) == 1:
            self.schedule()
        return flow

    def on_reply(self, fd: int) -> None:
        client = self.by_fd.get(fd)
        flow = self.flows.get(client) if client is not None else None
        if flow is None:
            return
        for _ in range(UDP_BATCH):
            try:
                data = flow[0].recv(UDP_DATAGRAM_MAX)
            except AGAIN:
                return
            except OSError:
                continue  # ICMP port unreachable from the container: nothing listens yet
            flow[1] = time.monotonic()
            try:
                self.sock.sendto(data, client)  # type: ignore[attr-defined]
            except OSError:
                pass

    def schedule(self) -> None:
        self.proxy.shim.set_timer(  # type: ignore[attr-defined]
            f"ports-udp-{self.sock.fileno()}", self.udp_check_every(),  # type: ignore
            self.sweep)

    def udp_check_every(self) -> float:
        return max(0.05, self.proxy.udp_timeout / 3)

    def sweep(self, force_oldest: bool = False) -> None:
        """Forgets idle flows; reschedules itself while flows remain."""
        now = time.monotonic()
        idle = [c for c, f in self.flows.items() if now - f[1] >= self.proxy.udp_timeout]
        if force_oldest and not idle and self.flows:
            idle = [min(self.flows, key=lambda c: self.flows[c][1])]
        for client in idle:
            self.drop(client)
        if self.flows and not force_oldest:
            self.schedule()

    def drop(self, client: tuple) -> None:
        flow = self.flows.pop(client)
        self.by_fd.pop(flow[0].fileno(), None)
        self.proxy.forget(flow[0])

    def close(self) -> None:
        for client in list(self.flows):
            self.drop(client)
        self.proxy.shim.timers.pop(  # type: ignore[attr-defined]
            f"ports-udp-{self.sock.fileno()}", None)  # type: ignore[attr-defined]
