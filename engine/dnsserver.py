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

The wire format (RFC 1035) is written here with `struct`: the resolver only needs questions,
A/PTR answers and a copy of the upstream's reply, and a library would double its start time.
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

TYPE_A, TYPE_PTR, TYPE_AAAA = 1, 12, 28
CLASS_IN = 1
NOERROR, FORMERR, SERVFAIL, NXDOMAIN, NOTIMP, REFUSED = 0, 1, 2, 3, 4, 5
TTL = 60
UDP_LIMIT = 512
UPSTREAM_TIMEOUT = 1.5
FORWARD_DEADLINE = 3.0
IP_FREEBIND = 15
_HEADER = struct.Struct("!HHHHHH")


class WireError(ValueError):
    """A malformed DNS message."""


@dataclass(frozen=True, slots=True)
class Query:
    id: int
    flags: int
    name: str          # lower case, no trailing dot
    qtype: int
    qclass: int
    question: bytes    # the question section as received, echoed in the answer


# ------------------------------------------------------------------------------ wire format

def read_name(data: bytes, offset: int) -> tuple[str, int]:
    """Decodes a (possibly compressed) name at `offset`; returns it and the offset after it."""
    labels: list[str] = []
    end = None
    jumps = 0
    while True:
        if offset >= len(data):
            raise WireError("name runs past the end of the message")
        length = data[offset]
        if length & 0xC0 == 0xC0:
            if offset + 1 >= len(data):
                raise WireError("truncated compression pointer")
            if end is None:
                end = offset + 2
            jumps += 1
            if jumps > 32:
                raise WireError("compression pointer loop")
            offset = ((length & 0x3F) << 8) | data[offset + 1]
            continue
        if length & 0xC0:
            raise WireError("unsupported label type")
        offset += 1
        if length == 0:
            break
        if offset + length > len(data):
            raise WireError("label runs past the end of the message")
        labels.append(data[offset:offset + length].decode("ascii", "replace"))
        offset += length
    return ".".join(labels), end if end is not None else offset


def encode_name(name: str) -> bytes:
    out = bytearray()
    for label in name.rstrip(".").split("."):
        if not label:
            continue
        raw = label.encode("idna") if not label.isascii() else label.encode()
        if len(raw) > 63:
            raise WireError(f"label {label!r} is longer than 63 bytes")
        out += bytes([len(raw)]) + raw
    return bytes(out + b"\0")


def parse_query(data: bytes) -> Query:
    if len(data) < _HEADER.size:
        raise WireError("message shorter than a DNS header")
    qid, flags, qdcount, _an, _ns, _ar = _HEADER.unpack_from(data)
    if flags & 0x8000:
        raise WireError("not a query")
    if qdcount != 1:
        raise WireError(f"{qdcount} questions (expected 1)")
    name, offset = read_name(data, _HEADER.size)
    if offset + 4 > len(data):
        raise WireError("truncated question")
    qtype, qclass = struct.unpack_from("!HH", data, offset)
    return Query(qid, flags, name.lower(), qtype, qclass, data[_HEADER.size:offset + 4])


def build_query(name: str, qtype: int = TYPE_A, qid: int = 0, rd: bool = True) -> bytes:
    return (_HEADER.pack(qid, 0x0100 if rd else 0, 1, 0, 0, 0)
            + encode_name(name) + struct.pack("!HH", qtype, CLASS_IN))


def build_response(query: Query, rcode: int, answers: list[tuple[int, bytes]] = (),
                   *, ttl: int = TTL, limit: int = UDP_LIMIT) -> bytes:
    """An answer to `query`; each answer is (type, rdata) for the question's name. Answers
    that do not fit in `limit` bytes are dropped and the TC bit set."""
    opcode_rd = query.flags & 0x7900   # opcode and RD
    flags = 0x8000 | opcode_rd | 0x0080 | (rcode & 0xF)  # QR, RA
    if rcode == NOERROR:
        flags |= 0x0400                # AA: only our own names are answered here
    body = bytearray(query.question)
    count = 0
    for rtype, rdata in answers:
        record = struct.pack("!HHHIH", 0xC00C, rtype, CLASS_IN, ttl, len(rdata)) + rdata
        if _HEADER.size + len(body) + len(record) > limit:
            flags |= 0x0200            # TC
            break
        body += record
        count += 1
    return _HEADER.pack(query.id, flags, 1, count, 0, 0) + bytes(body)


def error_response(data: bytes, rcode: int) -> bytes | None:
    """A header-only error answer for a query we cannot parse (None if not even a header)."""
    if len(data) < _HEADER.size:
        return None
    qid, flags = struct.unpack_from("!HH", data)
    return _HEADER.pack(qid, 0x8000 | (flags & 0x7900) | 0x0080 | rcode, 0, 0, 0, 0)


def parse_response(data: bytes) -> tuple[int, int, list[tuple[str, int, int, bytes]]]:
    """(id, flags, answers as (name, type, ttl, rdata)); for tests, benchmarks, tools."""
    qid, flags, qdcount, ancount, _ns, _ar = _HEADER.unpack_from(data)
    offset = _HEADER.size
    for _ in range(qdcount):
        _, offset = read_name(data, offset)
        offset += 4
    answers = []
    for _ in range(ancount):
        name, offset = read_name(data, offset)
        rtype, _cls, ttl, length = struct.unpack_from("!HHIH", data, offset)
        offset += 10
        answers.append((name, rtype, ttl, data[offset:offset + length]))
        offset += length
    return qid, flags, answers


def reverse_name(ip: str) -> str:
    return ".".join(reversed(ip.split("."))) + ".in-addr.arpa"


def reverse_ip(name: str) -> str | None:
    """The IPv4 address of an `in-addr.arpa` name, or None."""
    if not name.endswith(".in-addr.arpa"):
        return None
    parts = name[: -len(".in-addr.arpa")].split(".")
    if len(parts) != 4 or not all(p.isdigit() and int(p) < 256 for p in parts):
        return None
    return ".".join(reversed(parts))


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


def answer(view: View, query: Query, source: str) -> tuple[int, list[tuple[int, bytes]]] | None:
    """(rcode, answers) from the network's records, or None to forward the query."""
    if query.qclass != CLASS_IN:
        return None
    if query.qtype == TYPE_PTR:
        ip = reverse_ip(query.name)
        target = view.ptr.get(ip) if ip else None
        return (NOERROR, [(TYPE_PTR, encode_name(target))]) if target else None
    ips = view.lookup(query.name, source)
    if ips is None:
        return None
    if query.qtype != TYPE_A:
        return NOERROR, []  # the name exists, with IPv4 addresses only
    return NOERROR, [(TYPE_A, socket.inet_aton(ip)) for ip in ips]


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
        if len(reply) >= _HEADER.size and reply[:2] == new_id:
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
            query = parse_query(data)
        except WireError:
            return error_response(data, FORMERR)
        scope = self.scope(gateway, source)
        if not scope:
            return build_response(query, REFUSED)
        for view, address in scope:
            result = answer(view, query, address)
            if result is not None:
                return build_response(query, *result, limit=65535 if tcp else UDP_LIMIT)
        view, address = scope[0]
        upstreams = view.upstreams.get(address) or self.upstreams
        reply = await forward(data, upstreams, tcp) if upstreams else None
        return reply if reply is not None else build_response(query, SERVFAIL)

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


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
