"""Whose names a query sees (engine/dnsserver.py `Resolver.scope`): every network of the
asking container, the receiving one first, and no other; no root needed."""

from __future__ import annotations

import json
import socket
from pathlib import Path

from engine import dnsserver as wire

G1, G2 = "10.1.0.1", "10.2.0.1"
A1, A2, B1, C2 = "10.1.0.2", "10.2.0.2", "10.1.0.3", "10.2.0.3"


def _resolver(tmp_path: Path) -> wire.Resolver:
    records = {
        "port": 53, "upstreams": [],
        "networks": {
            G1: {"id": "n1", "name": "n1", "names": {"a": [A1], "b": [B1]},
                 "ptr": {A1: "a.n1", B1: "b.n1"}, "links": {}, "upstreams": {}},
            G2: {"id": "n2", "name": "n2", "names": {"a": [A2], "c": [C2]},
                 "ptr": {A2: "a.n2", C2: "c.n2"}, "links": {}, "upstreams": {}},
        },
        "containers": {"A": [[G1, A1], [G2, A2]], "B": [[G1, B1]], "C": [[G2, C2]]},
    }
    (tmp_path / "records.json").write_text(json.dumps(records))
    resolver = wire.Resolver(str(tmp_path))
    resolver.load()
    return resolver


def _ask(resolver: wire.Resolver, gateway: str, source: str, name: str) -> tuple[int, list]:
    query = wire.build_query(name, wire.TYPE_A, qid=1)
    reply = resolver.resolve(gateway, source, query, tcp=False)
    _, flags, answers = wire.parse_response(reply)
    return flags & 0xF, [socket.inet_ntoa(a[3]) for a in answers]


def test_a_container_sees_all_its_networks_and_only_those(tmp_path: Path) -> None:
    r = _resolver(tmp_path)
    assert _ask(r, G1, A1, "c") == (wire.NOERROR, [C2])
    assert _ask(r, G2, A2, "b") == (wire.NOERROR, [B1])
    assert _ask(r, G1, A1, "a") == (wire.NOERROR, [A1])   # the receiving network first
    assert _ask(r, G2, A2, "a") == (wire.NOERROR, [A2])
    # B and C share no network; with no upstream an unknown name is SERVFAIL, not an answer.
    assert _ask(r, G1, B1, "c") == (wire.SERVFAIL, [])
    assert _ask(r, G1, C2, "b") == (wire.SERVFAIL, [])    # at a gateway not its own
    assert _ask(r, G2, C2, "a") == (wire.NOERROR, [A2])
    # A source that is no container of ours (the host) gets the receiving network's names.
    assert _ask(r, G1, "10.1.0.1", "b") == (wire.NOERROR, [B1])
    assert _ask(r, G1, "10.1.0.1", "c") == (wire.SERVFAIL, [])
