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
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import json
import os
import random
import signal
import socket
import struct
import sys
from dataclasses import dataclass, field

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


def __getattr__(name: str) -> object:
    """The wire format's names (TYPE_A, NOERROR, build_query, parse_response, ...) as
    attributes of this module too, for its importers (tests, benchmarks)."""
    try:
        return getattr(wire, name)
    except AttributeError:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None


# ------------------------------------------------------------------------------ records

@dataclass(slots=True)
class View:
    """One network's names, as seen by queries arriving on its gateway."""

    id: str
    name: str
    names: dict[str, list[str]]
    ptr: dict[str, str]
    links: dict[str, dict[str, list[str]]]
    upstreams: dict[str, list[tuple[str, int]]]
    turn: dict[str, int] = field(default_factory=dict)

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


async def forward(data: bytes, upstreams: list[tuple[str, int]], tcp: bool) -> bytes | None:
    """The first upstream's reply to the raw query `data`, or None when none answers in time."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + FORWARD_DEADLINE
    qid = data[:2]
    for host, port in upstreams:
        remaining = min(UPSTREAM_TIMEOUT, deadline - loop.time())
        if remaining <= 0:
            break
        new_id = struct.pack("!H", random.getrandbits(16))
        query = new_id + data[2:]
        try:
            reply = await asyncio.wait_for(_ask(loop, host, port, query, tcp), remaining)
        except (OSError, TimeoutError, asyncio.IncompleteReadError):
            continue
        if len(reply) >= wire.HEADER.size and reply[:2] == new_id:
            return qid + reply[2:]
    return None


async def _ask(loop: asyncio.AbstractEventLoop, host: str, port: int, query: bytes,
               tcp: bool) -> bytes:
    if tcp:
        reader, writer = await asyncio.open_connection(host, port)
        try:
            writer.write(struct.pack("!H", len(query)) + query)
            await writer.drain()
            (length,) = struct.unpack("!H", await reader.readexactly(2))
            return await reader.readexactly(length)
        finally:
            writer.close()
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        sock.setblocking(False)
        await loop.sock_connect(sock, (host, port))
        await loop.sock_sendall(sock, query)
        while True:
            reply = await loop.sock_recv(sock, 65535)
            if reply[:2] == query[:2]:
                return reply


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
        self.listeners: dict[str, tuple[asyncio.DatagramTransport, asyncio.Server]] = {}
        self.errors: dict[str, str] = {}
        self.mtime = 0.0
        self.done: asyncio.Event | None = None

    def load(self) -> None:
        try:
            self.mtime = os.stat(self.records).st_mtime
            with open(self.records) as f:
                raw = json.load(f)
        except (OSError, ValueError):
            raw = {}
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

    async def reload(self) -> dict:
        self.load()
        for gw in list(self.listeners):
            if gw not in self.views:
                udp, tcp = self.listeners.pop(gw)
                udp.close()
                tcp.close()
        await self.bind_missing()
        exiting = not self.views
        return {"pid": os.getpid(), "networks": len(self.views), "errors": self.errors,
                "exiting": exiting}

    async def bind_missing(self) -> None:
        loop = asyncio.get_running_loop()
        self.errors = {}
        for gw in self.views:
            if gw in self.listeners:
                continue
            try:
                udp_sock = _socket(gw, self.port, socket.SOCK_DGRAM)
                tcp_sock = _socket(gw, self.port, socket.SOCK_STREAM)
            except OSError as exc:
                self.errors[gw] = f"cannot listen on {gw}:{self.port}: {exc.strerror}"
                continue
            tcp_sock.listen(64)
            udp, _ = await loop.create_datagram_endpoint(lambda g=gw: Udp(self, g),
                                                         sock=udp_sock)
            tcp = await asyncio.start_server(lambda r, w, g=gw: self.serve_tcp(g, r, w),
                                             sock=tcp_sock)
            self.listeners[gw] = (udp, tcp)

    async def resolve(self, gateway: str, source: str, data: bytes, tcp: bool) -> bytes | None:
        try:
            query = wire.parse_query(data)
        except wire.WireError:
            return wire.error_response(data, wire.FORMERR)
        scope = self.scope(gateway, source)
        if not scope:
            return wire.build_response(query, wire.REFUSED)
        for view, address in scope:
            result = answer(view, query, address)
            if result is not None:
                return wire.build_response(query, *result, limit=65535 if tcp else wire.UDP_LIMIT)
        view, address = scope[0]
        upstreams = view.upstreams.get(address) or self.upstreams
        reply = await forward(data, upstreams, tcp) if upstreams else None
        return reply if reply is not None else wire.build_response(query, wire.SERVFAIL)

    def scope(self, gateway: str, source: str) -> list[tuple[View, str]]:
        """The networks whose names `source` sees, as (view, source's address there)."""
        scope = self.scopes.get((gateway, source)) or self.members.get(source)
        if scope is not None:
            return scope
        view = self.views.get(gateway)  # not a container of ours: the host, say
        return [(view, source)] if view is not None else []

    async def serve_tcp(self, gateway: str, reader: asyncio.StreamReader,
                        writer: asyncio.StreamWriter) -> None:
        source = writer.get_extra_info("peername")[0]
        try:
            while True:
                head = await asyncio.wait_for(reader.readexactly(2), 10)
                data = await reader.readexactly(struct.unpack("!H", head)[0])
                reply = await self.resolve(gateway, source, data, tcp=True)
                if reply is None:
                    break
                writer.write(struct.pack("!H", len(reply)) + reply)
                await writer.drain()
        except (OSError, TimeoutError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    async def serve_control(self, reader: asyncio.StreamReader,
                            writer: asyncio.StreamWriter) -> None:
        try:
            line = (await asyncio.wait_for(reader.readline(), 5)).strip()
            reply = await self.reload() if line == b"reload" else {"error": "unknown command"}
            writer.write(json.dumps(reply).encode() + b"\n")
            await writer.drain()
            if reply.get("exiting"):
                self.stop()
        except (OSError, TimeoutError):
            pass
        finally:
            writer.close()

    async def watch(self) -> None:
        """Backstop for a missed reload: records.json's mtime, and binds that failed."""
        while True:
            await asyncio.sleep(1.0)
            try:
                changed = os.stat(self.records).st_mtime != self.mtime
            except OSError:
                changed = True
            if changed:
                if (await self.reload())["exiting"]:
                    self.stop()
            elif self.errors:
                await self.bind_missing()

    def stop(self) -> None:
        if self.done is not None:
            self.done.set()

    async def sighup(self) -> None:
        if (await self.reload())["exiting"]:
            self.stop()

    async def run(self, ready_fd: int | None) -> None:
        loop = asyncio.get_running_loop()
        self.done = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.done.set)
        loop.add_signal_handler(signal.SIGHUP, lambda: loop.create_task(self.sighup()))
        control_path = os.path.join(self.rundir, "control.sock")
        with contextlib.suppress(FileNotFoundError):
            os.unlink(control_path)
        control = await asyncio.start_unix_server(self.serve_control, control_path)
        state = await self.reload()
        if ready_fd is not None:
            # The engine may have exited without reading (a lone `network create`).
            with contextlib.suppress(OSError):
                os.write(ready_fd, (json.dumps(state) + "\n").encode())
            _close_stdout()
        if state["exiting"]:
            self.stop()
        watcher = loop.create_task(self.watch())
        await self.done.wait()
        watcher.cancel()
        control.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(control_path)
        for udp, tcp in self.listeners.values():
            udp.close()
            tcp.close()


class Udp(asyncio.DatagramProtocol):
    def __init__(self, resolver: Resolver, gateway: str) -> None:
        self.resolver = resolver
        self.gateway = gateway
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple) -> None:
        asyncio.get_running_loop().create_task(self.reply(data, addr))

    async def reply(self, data: bytes, addr: tuple) -> None:
        reply = await self.resolver.resolve(self.gateway, addr[0], data, tcp=False)
        if reply is not None and self.transport is not None and not self.transport.is_closing():
            self.transport.sendto(reply, addr)


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
        asyncio.run(Resolver(rundir).run(1 if daemon else None))
    finally:
        os.ftruncate(lock, 0)
    return 0


def run(argv: list[str]) -> None:
    """The process: `main`, then an exit without the interpreter's teardown (freeing asyncio
    and the rest costs ~20 ms of CPU, and the engine waits for this process to be gone when
    it takes the last network down)."""
    code = main(argv)
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    os._exit(code)


if __name__ == "__main__":
    run(sys.argv[1:])
