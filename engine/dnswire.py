"""The DNS wire format (RFC 1035) the embedded resolver (engine/dnsserver.py) speaks: parsing
queries, building answers and error replies, and reading replies back (for tests and tools).
Standard library only, written with `struct`: the resolver only needs questions, A/PTR
answers and a copy of the upstream's reply, and a library would double its start time.
The resolver runs as `python -I -S`, so it imports this file as a sibling, not as
`engine.dnswire`; nothing here may import from the package.
"""

from __future__ import annotations

import struct

TYPE_A, TYPE_PTR, TYPE_AAAA = 1, 12, 28
CLASS_IN = 1
NOERROR, FORMERR, SERVFAIL, NXDOMAIN, NOTIMP, REFUSED = 0, 1, 2, 3, 4, 5
TTL = 60
UDP_LIMIT = 512
HEADER = struct.Struct("!HHHHHH")


class WireError(ValueError):
    """A malformed DNS message."""


class Query:
    """A DNS query's header fields and its one question. (A plain class: `dataclasses`
    would be a third of the resolver's imports.)"""

    __slots__ = ("flags", "id", "name", "qclass", "qtype", "question")

    def __init__(self, id: int, flags: int, name: str, qtype: int, qclass: int,
                 question: bytes) -> None:
        self.id = id
        self.flags = flags
        self.name = name            # lower case, no trailing dot
        self.qtype = qtype
        self.qclass = qclass
        self.question = question    # the question section as received, echoed in the answer

    def __repr__(self) -> str:
        return (f"Query(id={self.id}, flags={self.flags:#x}, name={self.name!r}, "
                f"qtype={self.qtype}, qclass={self.qclass})")


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
    if len(data) < HEADER.size:
        raise WireError("message shorter than a DNS header")
    qid, flags, qdcount, _an, _ns, _ar = HEADER.unpack_from(data)
    if flags & 0x8000:
        raise WireError("not a query")
    if qdcount != 1:
        raise WireError(f"{qdcount} questions (expected 1)")
    name, offset = read_name(data, HEADER.size)
    if offset + 4 > len(data):
        raise WireError("truncated question")
    qtype, qclass = struct.unpack_from("!HH", data, offset)
    return Query(qid, flags, name.lower(), qtype, qclass, data[HEADER.size:offset + 4])


def build_query(name: str, qtype: int = TYPE_A, qid: int = 0, rd: bool = True) -> bytes:
    return (HEADER.pack(qid, 0x0100 if rd else 0, 1, 0, 0, 0)
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
        if HEADER.size + len(body) + len(record) > limit:
            flags |= 0x0200            # TC
            break
        body += record
        count += 1
    return HEADER.pack(query.id, flags, 1, count, 0, 0) + bytes(body)


def error_response(data: bytes, rcode: int) -> bytes | None:
    """A header-only error answer for a query we cannot parse (None if not even a header)."""
    if len(data) < HEADER.size:
        return None
    qid, flags = struct.unpack_from("!HH", data)
    return HEADER.pack(qid, 0x8000 | (flags & 0x7900) | 0x0080 | rcode, 0, 0, 0, 0)


def parse_response(data: bytes) -> tuple[int, int, list[tuple[str, int, int, bytes]]]:
    """(id, flags, answers as (name, type, ttl, rdata)); for tests, benchmarks, tools."""
    qid, flags, qdcount, ancount, _ns, _ar = HEADER.unpack_from(data)
    offset = HEADER.size
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
