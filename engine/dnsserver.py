"""The embedded DNS resolver: one process per engine root, standard library only.

Run as `python -I -S dnsserver.py [--daemon] [--lock-fd N] RUNDIR`. RUNDIR holds:
- records.json   what to answer, rewritten atomically by engine/dns.py:
                 {"port": 53, "upstreams": [[host, port], ...],
                  "networks": {GATEWAY: {"id", "name", "names": {name: [ip, ...]},
                               "ptr": {ip: name}, "links": {src_ip: {alias: [ip, ...]}},
                               "upstreams": {src_ip: [[host, port], ...]}}},
                  "containers": {container_id: [[gateway, ip], ...]}}
- control.sock   a line "reload" re-reads records.json and answers one JSON line
                 {"pid", "networks", "errors": {gateway: message}, "exiting"}
- resolver.pid   the pid, flock()ed for the process's lifetime (one resolver per root)
The resolver listens on every network's gateway address (UDP and TCP, port 53). It knows the
asking container by the query's source address and answers from the records of every network
that container is on (the network whose gateway received the query first; a container never
sees the names of a network it is not on; an unknown source gets the receiving network's): A;
AAAA and other types of known names empty; PTR of container addresses. Other names go to the
upstreams. With no network left it exits. It also re-reads records.json when its mtime
changes (a backstop).

The wire format (RFC 1035) is in engine/dnswire.py; its names are importable from here too.

One thread serves everything that needs no waiting (UDP queries the records answer, the
control socket, reloads) from a `selectors` loop; a query that goes upstream, and each TCP
connection, gets a thread of its own. Not asyncio: importing it took ~60 ms of the
resolver's ~80 ms start, which `up` of a new project waits for before its first container
starts.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import selectors
import signal
import socket
import struct
import sys
import threading
import time
from collections.abc import Callable

# The wire format: as the resolver process (-I -S, this file's directory on the path) there
# is no package, so the sibling file (as runtime/shim.py imports its siblings); imported as
# engine.dnsserver, the package's module.
if __package__:
    from engine import dnswire as wire
else:
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import dnswire as wire

UPSTREAM_TIMEOUT = 1.5
FORWARD_DEADLINE = 3.0
IP_FREEBIND = 15
# Threads at once, for forwarded UDP queries and for TCP connections (each holds a socket
# or two): beyond them a UDP query gets SERVFAIL and a TCP connection is closed, instead
# of a flood running the process out of threads (an exception in the loop) or of file
# descriptors (a listener whose accept fails with EMFILE stays readable: a busy loop).
# Apart, so that idle TCP connections (10 s each) cannot starve the forwarding of UDP.
MAX_FORWARDS = 128
MAX_CONNECTIONS = 64
CONTROL_LINE_MAX = 4096


def __getattr__(name: str) -> object:
    """The wire format's names (TYPE_A, NOERROR, build_query, parse_response, ...) as
    attributes of this module too, for its importers (tests, benchmarks)."""
    try:
        return getattr(wire, name)
    except AttributeError:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None


# ------------------------------------------------------------------------------ records

class View:
    """One network's names, as seen by queries arriving on its gateway."""

    __slots__ = ("id", "links", "name", "names", "ptr", "turn", "upstreams")

    def __init__(self, id: str, name: str, names: dict[str, list[str]], ptr: dict[str, str],
                 links: dict[str, dict[str, list[str]]],
                 upstreams: dict[str, list[tuple[str, int]]]) -> None:
        self.id, self.name, self.names, self.ptr = id, name, names, ptr
        self.links, self.upstreams = links, upstreams
        self.turn: dict[str, int] = {}  # per name: replies given (rotation of replicas)

    @classmethod
    def load(cls, raw: dict) -> View:
        return cls(raw.get("id", ""), raw.get("name", "").lower(),
                   {k.lower(): v for k, v in raw.get("names", {}).items()},
                   raw.get("ptr", {}),
                   {src: {k.lower(): v for k, v in m.items()}
                    for src, m in raw.get("links", {}).items()},
                   {src: [tuple(u) for u in ups] for src, ups in raw.get("upstreams", {}).items()})

    def lookup(self, name: str, source: str) -> list[str] | None:
        """Addresses for `name` asked by `source` (its link aliases first), rotated per query
        so that replicas share the load; None when the name is not ours."""
        ips = self.links.get(source, {}).get(name) or self.names.get(name)
        if ips is None and self.name and name.endswith("." + self.name):
            ips = self.names.get(name[: -len(self.name) - 1])
        if not ips:
            return None
        if len(ips) > 1:
            n = self.turn.get(name, 0)
            self.turn[name] = n + 1
            k = n % len(ips)
            ips = ips[k:] + ips[:k]
        return ips


def answer(view: View, query: wire.Query,
           source: str) -> tuple[int, list[tuple[int, bytes]]] | None:
    """(rcode, answers) from the network's records, or None to forward the query."""
    if query.qclass != wire.CLASS_IN:
        return None
    if query.qtype == wire.TYPE_PTR:
        ip = wire.reverse_ip(query.name)
        target = view.ptr.get(ip) if ip else None
        return (wire.NOERROR, [(wire.TYPE_PTR, wire.encode_name(target))]) if target else None
    ips = view.lookup(query.name, source)
    if ips is None:
        return None
    if query.qtype != wire.TYPE_A:
        return wire.NOERROR, []  # the name exists, with IPv4 addresses only
    return wire.NOERROR, [(wire.TYPE_A, socket.inet_aton(ip)) for ip in ips]


def forward(data: bytes, upstreams: list[tuple[str, int]], tcp: bool) -> bytes | None:
    """The first upstream's reply to the raw query `data`, or None when none answers in time
    (blocking: called in a thread of its own)."""
    deadline = time.monotonic() + FORWARD_DEADLINE
    qid = data[:2]
    for host, port in upstreams:
        remaining = min(UPSTREAM_TIMEOUT, deadline - time.monotonic())
        if remaining <= 0:
            break
        new_id = os.urandom(2)
        query = new_id + data[2:]
        try:
            reply = _ask(host, port, query, tcp, remaining)
        except OSError:  # (refused, unreachable, timed out)
            continue
        if len(reply) >= wire.HEADER.size and reply[:2] == new_id:
            return qid + reply[2:]
    return None


def _ask(host: str, port: int, query: bytes, tcp: bool, timeout: float) -> bytes:
    if tcp:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.sendall(struct.pack("!H", len(query)) + query)
            (length,) = struct.unpack("!H", _read_exactly(sock, 2))
            return _read_exactly(sock, length)
    end = time.monotonic() + timeout
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        sock.connect((host, port))
        sock.send(query)
        while True:
            reply = sock.recv(65535)
            if reply[:2] == query[:2]:
                return reply
            sock.settimeout(max(end - time.monotonic(), 0.001))


def _read_exactly(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise ConnectionResetError("the peer closed the connection")
        data += chunk
    return data


# ------------------------------------------------------------------------------ server

class Resolver:
    def __init__(self, rundir: str) -> None:
        self.rundir = rundir
        self.records = os.path.join(rundir, "records.json")
        self.views: dict[str, View] = {}
        # Whom a query is answered for: (gateway, source) -> the asker's networks as (view,
        # its address there), the receiving one first; `members` is by source alone, for a
        # query sent to the gateway of a network the asker is not on.
        self.scopes: dict[tuple[str, str], list[tuple[View, str]]] = {}
        self.members: dict[str, list[tuple[View, str]]] = {}
        self.upstreams: list[tuple[str, int]] = []
        self.port = 53
        self.listeners: dict[str, tuple[socket.socket, socket.socket]] = {}  # UDP, TCP
        self.errors: dict[str, str] = {}
        self.mtime = 0.0
        # The records, between a reload (the loop's thread) and the threads answering TCP
        # and forwarded queries (the rotation of replicas changes on each answer, too).
        self.lock = threading.Lock()
        self.forwards = threading.BoundedSemaphore(MAX_FORWARDS)
        self.connections = threading.BoundedSemaphore(MAX_CONNECTIONS)
        self.selector: selectors.BaseSelector | None = None
        self.running = True
        self.hangup = False

    def load(self) -> None:
        try:
            self.mtime = os.stat(self.records).st_mtime
            with open(self.records) as f:
                raw = json.load(f)
        except (OSError, ValueError):
            raw = {}
        with self.lock:
            self.port = int(raw.get("port", 53))
            self.upstreams = [tuple(u) for u in raw.get("upstreams", [])]
            old = self.views
            self.views = {gw: View.load(v) for gw, v in raw.get("networks", {}).items()}
            for gw, view in self.views.items():
                if gw in old:
                    view.turn = old[gw].turn
            self.scopes, self.members = {}, {}
            for endpoints in raw.get("containers", {}).values():
                scope = [(self.views[gw], ip) for gw, ip in endpoints if gw in self.views]
                for gw, ip in endpoints:
                    self.members[ip] = scope
                    self.scopes[(gw, ip)] = sorted(scope, key=lambda m, g=gw: m[0] is not
                                                   self.views.get(g))

    def reload(self) -> dict:
        self.load()
        for gw in list(self.listeners):
            if gw not in self.views:
                for sock in self.listeners.pop(gw):
                    self._unwatch(sock)
                    sock.close()
        self.bind_missing()
        exiting = not self.views
        return {"pid": os.getpid(), "networks": len(self.views), "errors": self.errors,
                "exiting": exiting}

    def bind_missing(self) -> None:
        self.errors = {}
        for gw in list(self.views):
            if gw in self.listeners:
                continue
            try:
                udp_sock = _socket(gw, self.port, socket.SOCK_DGRAM)
            except OSError as exc:
                self.errors[gw] = f"cannot listen on {gw}:{self.port}: {exc.strerror}"
                continue
            try:
                tcp_sock = _socket(gw, self.port, socket.SOCK_STREAM)
            except OSError as exc:
                udp_sock.close()
                self.errors[gw] = f"cannot listen on {gw}:{self.port}: {exc.strerror}"
                continue
            tcp_sock.listen(64)
            self.listeners[gw] = (udp_sock, tcp_sock)
            self._watch(udp_sock, (self.on_udp, gw))
            self._watch(tcp_sock, (self.on_tcp, gw))

    def _watch(self, sock: socket.socket, handler: tuple) -> None:
        if self.selector is not None:
            self.selector.register(sock, selectors.EVENT_READ, handler)

    def _unwatch(self, sock: socket.socket) -> None:
        if self.selector is not None:
            with contextlib.suppress(KeyError, ValueError):
                self.selector.unregister(sock)

    def local_reply(self, gateway: str, source: str, data: bytes, tcp: bool
                    ) -> tuple[bytes | None, list[tuple[str, int]], wire.Query | None]:
        """(the reply, [], query) when the records answer (or the query is refused or
        malformed), else (None, upstreams to ask, query)."""
        try:
            query = wire.parse_query(data)
        except wire.WireError:
            return wire.error_response(data, wire.FORMERR), [], None
        with self.lock:
            scope = self.scope(gateway, source)
            if not scope:
                return wire.build_response(query, wire.REFUSED), [], query
            try:
                for view, address in scope:
                    result = answer(view, query, address)
                    if result is not None:
                        limit = 65535 if tcp else wire.UDP_LIMIT
                        return wire.build_response(query, *result, limit=limit), [], query
            except (wire.WireError, UnicodeError):  # a record's name DNS cannot carry
                return wire.build_response(query, wire.SERVFAIL), [], query
            view, address = scope[0]
            return None, view.upstreams.get(address) or self.upstreams, query

    def resolve(self, gateway: str, source: str, data: bytes, tcp: bool) -> bytes | None:
        """The reply to the raw query `data` that `source` sent to `gateway`, from the
        records or the upstreams (blocking while they are asked); None: no reply at all."""
        reply, upstreams, query = self.local_reply(gateway, source, data, tcp)
        if reply is not None or query is None:
            return reply
        forwarded = forward(data, upstreams, tcp) if upstreams else None
        return forwarded if forwarded is not None else wire.build_response(query, wire.SERVFAIL)

    def scope(self, gateway: str, source: str) -> list[tuple[View, str]]:
        """The networks whose names `source` sees, as (view, source's address there)."""
        scope = self.scopes.get((gateway, source)) or self.members.get(source)
        if scope is not None:
            return scope
        view = self.views.get(gateway)  # not a container of ours: the host, say
        return [(view, source)] if view is not None else []

    # -- the loop's handlers (they must not block)

    def on_udp(self, sock: socket.socket, gateway: str) -> None:
        try:
            data, addr = sock.recvfrom(65535)
        except OSError:
            return
        reply, upstreams, query = self.local_reply(gateway, addr[0], data, False)
        if reply is None and query is not None and upstreams and \
                self._spawn(self.forwards, self._forward_udp, sock, addr, data, upstreams, query):
            return
        if reply is None and query is not None:
            reply = wire.build_response(query, wire.SERVFAIL)
        if reply is not None:
            with contextlib.suppress(OSError):
                sock.sendto(reply, addr)

    @staticmethod
    def _spawn(slots: threading.BoundedSemaphore, target: Callable[..., None],
               *args: object) -> bool:
        """Runs `target(*args)` in a thread of its own holding one of `slots`; False when
        none is free (or no thread can be made)."""
        if not slots.acquire(blocking=False):
            return False

        def run() -> None:
            try:
                target(*args)
            finally:
                slots.release()

        try:
            threading.Thread(target=run, daemon=True).start()
        except RuntimeError:  # can't start new thread
            slots.release()
            return False
        return True

    def _forward_udp(self, sock: socket.socket, addr: tuple, data: bytes,
                     upstreams: list[tuple[str, int]], query: wire.Query) -> None:
        reply = forward(data, upstreams, False) or wire.build_response(query, wire.SERVFAIL)
        with contextlib.suppress(OSError):  # (closed meanwhile: its network went)
            sock.sendto(reply, addr)

    def on_tcp(self, listener: socket.socket, gateway: str) -> None:
        try:
            conn, _ = listener.accept()
        except OSError:
            return
        if not self._spawn(self.connections, self.serve_tcp, gateway, conn):
            conn.close()

    def serve_tcp(self, gateway: str, conn: socket.socket) -> None:
        with conn:
            try:
                conn.settimeout(10)
                source = conn.getpeername()[0]
                while True:
                    head = _read_exactly(conn, 2)
                    data = _read_exactly(conn, struct.unpack("!H", head)[0])
                    reply = self.resolve(gateway, source, data, tcp=True)
                    if reply is None:
                        break
                    conn.sendall(struct.pack("!H", len(reply)) + reply)
            except OSError:
                pass

    def on_control(self, listener: socket.socket, _: object) -> None:
        try:
            conn, _addr = listener.accept()
        except OSError:
            return
        conn.setblocking(False)
        self._watch(conn, (self.on_control_data, [b""]))

    def on_control_data(self, conn: socket.socket, pending: list) -> None:
        try:
            chunk = conn.recv(4096)
        except BlockingIOError:
            return
        except OSError:
            chunk = b""
        pending[0] += chunk
        if chunk and b"\n" not in pending[0] and len(pending[0]) <= CONTROL_LINE_MAX:
            return
        self._unwatch(conn)
        with conn:
            if b"\n" not in pending[0]:
                return  # gone before its line (or a line no command is that long)
            line = pending[0].split(b"\n", 1)[0].strip()
            reply = self.reload() if line == b"reload" else {"error": "unknown command"}
            with contextlib.suppress(OSError):
                conn.setblocking(True)
                conn.settimeout(5)
                conn.sendall(json.dumps(reply).encode() + b"\n")
            if reply.get("exiting"):
                self.running = False

    def on_wake(self, sock: socket.socket, _: object) -> None:
        with contextlib.suppress(OSError):
            sock.recv(4096)  # (the signal's handler ran already; see `serve`)

    def tick(self, reload: bool = False) -> None:
        """Reloads when asked (SIGHUP) or when records.json changed (the backstop for a
        missed reload); else binds what failed to bind."""
        if not reload:
            try:
                reload = os.stat(self.records).st_mtime != self.mtime
            except OSError:
                reload = True
        if reload:
            if self.reload()["exiting"]:
                self.running = False
        elif self.errors:
            self.bind_missing()

    def serve(self, ready_fd: int | None) -> None:
        self.selector = selectors.DefaultSelector()
        wake_r, wake_w = socket.socketpair()
        wake_w.setblocking(False)
        signal.set_wakeup_fd(wake_w.fileno())  # a signal ends the loop's wait
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: setattr(self, "running", False))
        signal.signal(signal.SIGHUP, lambda *_: setattr(self, "hangup", True))
        self._watch(wake_r, (self.on_wake, None))
        control_path = os.path.join(self.rundir, "control.sock")
        with contextlib.suppress(FileNotFoundError):
            os.unlink(control_path)
        control = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        control.bind(control_path)
        control.listen(16)
        control.setblocking(False)
        self._watch(control, (self.on_control, None))
        state = self.reload()
        if ready_fd is not None:
            # The engine may have exited without reading (a lone `network create`).
            with contextlib.suppress(OSError):
                os.write(ready_fd, (json.dumps(state) + "\n").encode())
            _close_stdout()
        if state["exiting"]:
            self.running = False
        try:
            self._loop()
        finally:
            control.close()
            with contextlib.suppress(FileNotFoundError):
                os.unlink(control_path)
            for udp, tcp in self.listeners.values():
                udp.close()
                tcp.close()

    def _loop(self) -> None:
        assert self.selector is not None
        next_tick = time.monotonic() + 1.0
        while self.running:
            for key, _ in self.selector.select(max(next_tick - time.monotonic(), 0)):
                handler, arg = key.data
                _survive(handler, key.fileobj, arg)
            if self.hangup:
                self.hangup = False
                _survive(self.tick, True)
            if time.monotonic() >= next_tick:
                next_tick = time.monotonic() + 1.0
                _survive(self.tick)


def _survive(step: Callable[..., object], *args: object) -> None:
    """Runs one step of the loop (a handler, a reload). A surprise (one query's, one
    client's, a records.json that is no longer what the engine writes) must not take the
    names of every network down: it goes to resolver.log, and the loop goes on. (A handler
    has read what woke it before it can fail, and a reload has noted the records' mtime:
    nothing repeats without new input.)"""
    try:
        step(*args)
    except Exception:
        sys.excepthook(*sys.exc_info())


def _socket(address: str, port: int, kind: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, kind)
    try:
        # FREEBIND: the bridge address may appear a moment after the records do.
        sock.setsockopt(socket.SOL_IP, IP_FREEBIND, 1)
        if kind == socket.SOCK_STREAM:
            # Only TCP needs it (TIME_WAIT); for UDP it would let a second resolver share
            # the address silently instead of failing.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((address, port))
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


def _close_stdout() -> None:
    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 1)
    os.close(null)


def main(argv: list[str]) -> int:
    daemon = "--daemon" in argv
    args = [a for a in argv if a != "--daemon"]
    held = None  # the engine took the pid file's lock for us and passed it (--lock-fd N)
    if len(args) == 3 and args[0] == "--lock-fd" and args[1].isdigit():
        held, args = int(args[1]), args[2:]
    if len(args) != 1:
        print("usage: dnsserver.py [--daemon] [--lock-fd N] RUNDIR", file=sys.stderr)
        return 2
    rundir = args[0]
    if daemon and os.fork() != 0:
        os._exit(0)  # the engine waits for this parent; the child is adopted by init
    if held is not None:
        lock = held
    else:
        lock = os.open(os.path.join(rundir, "resolver.pid"), os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in (errno.EWOULDBLOCK, errno.EACCES):
                raise
            with contextlib.suppress(OSError):  # nobody may be reading any more
                os.write(1, b'{"running": true}\n')
            return 0
    os.ftruncate(lock, 0)
    os.write(lock, f"{os.getpid()}\n".encode())
    try:
        Resolver(rundir).serve(1 if daemon else None)
    finally:
        os.ftruncate(lock, 0)
    return 0


def run(argv: list[str]) -> None:
    """The process: `main`, then an exit without the interpreter's teardown (the engine
    waits for this process to be gone when it takes the last network down)."""
    code = main(argv)
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    os._exit(code)


if __name__ == "__main__":
    run(sys.argv[1:])
