"""The embedded resolver on real bridges: names per network, replicas, links, forwarding to a
fake upstream on loopback, and the resolver's lifecycle. Queries come from inside namespaces
the test made (busybox nslookup, and raw UDP/TCP sockets created in the namespace)."""

from __future__ import annotations

import shutil
import socket
import struct
import subprocess
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from engine import dnsserver as wire
from engine import netns
from engine.dns import Dns
from engine.layout import Layout
from engine.networks import Networks
from engine.store import Store
from tests.integration.test_networks import our_links, ours, record_networks
from tests.support import busybox, leaks

C1, C2, C3, C4 = "1" * 64, "2" * 64, "3" * 64, "4" * 64


class FakeUpstream:
    """A DNS server on 127.0.0.1 that knows one name (outside.test -> 192.0.2.77)."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.address = f"127.0.0.1:{self.sock.getsockname()[1]}"
        self.thread = threading.Thread(target=self.serve)
        self.thread.start()

    def serve(self) -> None:
        while True:
            try:
                data, peer = self.sock.recvfrom(4096)
            except OSError:
                return
            if not data:  # shut down
                return
            q = wire.parse_query(data)
            if q.name == "outside.test" and q.qtype == wire.TYPE_A:
                reply = wire.build_response(q, wire.NOERROR,
                                            [(wire.TYPE_A, socket.inet_aton("192.0.2.77"))])
            else:
                reply = wire.build_response(q, wire.NXDOMAIN)
            self.sock.sendto(reply, peer)

    def close(self) -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as poke:
            poke.sendto(b"", self.sock.getsockname())
        self.thread.join()
        self.sock.close()


@pytest.fixture
def env(tmp_path):
    before = leaks.snapshot()
    upstream = FakeUpstream()
    layout = Layout.at(tmp_path / "root").ensure()
    store = Store(layout.database)
    dns = Dns(layout, store, upstreams=[upstream.address])
    nets = Networks(layout, store, dns=dns)
    made: list[Path] = []
    created = record_networks(nets)

    def make_ns(name: str) -> Path:
        path = netns.create(layout, name)
        made.append(path)
        return path

    yield SimpleNamespace(layout=layout, nets=nets, dns=dns, ns=make_ns, upstream=upstream)
    for ep in nets.endpoints():
        nets.disconnect(ep.network_id, ep.container_id, force=True)
    for net in nets.list():
        nets.remove_network(net.id)
    for path in made:
        netns.delete(path, layout)
    upstream.close()
    store.close()
    shutil.rmtree(layout.run, ignore_errors=True)
    leaked = ours(leaks.diff(before, leaks.snapshot()), layout, tmp_path,
                  our_links(created, (C1, C2, C3, C4)))
    assert leaked == {}


def query(path: Path, server: str, name: str, qtype: int = wire.TYPE_A,
          tcp: bool = False) -> tuple[int, list[str]]:
    """(rcode, sorted A addresses) for `name`, asked from inside the namespace at `path`."""
    q = wire.build_query(name, qtype, qid=4242)
    kind = socket.SOCK_STREAM if tcp else socket.SOCK_DGRAM
    with netns.socket_in(path, socket.AF_INET, kind) as sock:
        sock.settimeout(5)
        sock.connect((server, 53))
        if tcp:
            sock.sendall(struct.pack("!H", len(q)) + q)
            size = struct.unpack("!H", sock.recv(2, socket.MSG_WAITALL))[0]
            data = sock.recv(size, socket.MSG_WAITALL)
        else:
            sock.send(q)
            data = sock.recv(4096)
    qid, flags, answers = wire.parse_response(data)
    assert qid == 4242
    return flags & 0xF, sorted(socket.inet_ntoa(a[3]) for a in answers if a[1] == wire.TYPE_A)


def nslookup(path: Path, name: str, server: str) -> list[str]:
    """Addresses busybox nslookup finds for `name` (empty when it finds none)."""
    out = subprocess.run(netns.command(path, [str(busybox.BUSYBOX), "nslookup", name, server]),
                         capture_output=True, text=True, timeout=20).stdout
    _, _, answer = out.partition("Name:")
    return sorted(line.split()[-1] for line in answer.splitlines()
                  if line.startswith("Address") and "." in line)


@pytest.mark.skipif(not busybox.available(), reason="needs busybox-static")
def test_name_resolves_from_a_namespace_and_goes_within_a_second(env) -> None:
    net = env.nets.create_network("front")
    a, b = env.ns("a"), env.ns("b")
    env.nets.connect("front", C1, a, container_name="app-web-1", dns_names=["web"])
    eb = env.nets.connect("front", C2, b, container_name="app-db-1", aliases=["db", "mysql"])
    gw = str(net.gateway)
    assert nslookup(a, "db", gw) == [str(eb.ipv4)]
    assert nslookup(a, "app-db-1", gw) == [str(eb.ipv4)]
    assert query(a, gw, "MySQL") == (wire.NOERROR, [str(eb.ipv4)])
    assert query(a, gw, C2[:12]) == (wire.NOERROR, [str(eb.ipv4)])
    assert query(a, gw, "db", tcp=True) == (wire.NOERROR, [str(eb.ipv4)])
    assert query(a, gw, "db", wire.TYPE_AAAA) == (wire.NOERROR, [])
    env.nets.disconnect("front", C2)
    start = time.monotonic()
    while query(a, gw, "db")[1] and time.monotonic() - start < 1.0:
        time.sleep(0.05)
    assert query(a, gw, "db") == (wire.NXDOMAIN, [])  # now forwarded: the upstream says no
    assert time.monotonic() - start < 1.0
    assert nslookup(a, "db", gw) == []


def test_service_with_two_replicas_returns_both(env) -> None:
    net = env.nets.create_network("front")
    a, r1, r2 = env.ns("a"), env.ns("r1"), env.ns("r2")
    env.nets.connect("front", C1, a, container_name="app-client-1")
    e1 = env.nets.connect("front", C2, r1, container_name="app-api-1", dns_names=["api"])
    e2 = env.nets.connect("front", C3, r2, container_name="app-api-2", dns_names=["api"])
    gw = str(net.gateway)
    assert query(a, gw, "api") == (wire.NOERROR, sorted([str(e1.ipv4), str(e2.ipv4)]))
    if busybox.available():
        assert nslookup(a, "api", gw) == sorted([str(e1.ipv4), str(e2.ipv4)])
    # PTR for a container address names the container on its network.
    q = wire.build_query(wire.reverse_name(str(e1.ipv4)), wire.TYPE_PTR, qid=1)
    with netns.socket_in(a, socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(5)
        sock.sendto(q, (gw, 53))
        _, _, answers = wire.parse_response(sock.recv(4096))
    assert wire.read_name(answers[0][3], 0)[0] == "app-api-1.front"


def test_names_are_per_network_and_links_per_container(env) -> None:
    one = env.nets.create_network("one")
    two = env.nets.create_network("two")
    a, b, c = env.ns("a"), env.ns("b"), env.ns("c")
    eb = env.nets.connect("one", C2, b, container_name="app-db-1", dns_names=["db"])
    env.nets.connect("one", C1, a, container_name="app-web-1", links={"database": "db"})
    env.nets.connect("one", C3, c, container_name="app-other-1")
    env.nets.connect("two", C4, env.ns("d"), container_name="app-cache-1", dns_names=["cache"])
    assert query(a, str(one.gateway), "database") == (wire.NOERROR, [str(eb.ipv4)])
    assert query(c, str(one.gateway), "database") == (wire.NXDOMAIN, [])
    assert query(a, str(one.gateway), "cache") == (wire.NXDOMAIN, [])  # another network's
    assert query(a, str(one.gateway), "app-db-1.one") == (wire.NOERROR, [str(eb.ipv4)])
    del two


def test_other_names_are_forwarded_and_failure_is_quick(env) -> None:
    net = env.nets.create_network("front")
    a = env.ns("a")
    env.nets.connect("front", C1, a, container_name="app-web-1")
    gw = str(net.gateway)
    assert query(a, gw, "outside.test") == (wire.NOERROR, ["192.0.2.77"])
    assert query(a, gw, "outside.test", tcp=False)[0] == wire.NOERROR
    # A container's own `dns` servers are its upstreams; a dead one means SERVFAIL, quickly.
    env.nets.disconnect("front", C1)
    env.nets.connect("front", C1, a, container_name="app-web-1", dns=["127.0.0.1:9"])
    start = time.monotonic()
    assert query(a, gw, "outside.test") == (wire.SERVFAIL, [])
    assert time.monotonic() - start < 1.0
    assert query(a, gw, "app-web-1")[0] == wire.NOERROR


def test_one_resolver_per_root_exits_with_the_last_network(env) -> None:
    env.nets.create_network("one")
    pid = env.dns.resolver_pid()
    assert pid is not None
    env.nets.create_network("two")
    assert env.dns.resolver_pid() == pid
    env.nets.remove_network("one")
    assert env.dns.resolver_pid() == pid
    env.nets.remove_network("two")
    assert env.dns.resolver_pid() is None
    status = Path(f"/proc/{pid}/status")
    assert not status.exists() or "zombie" in status.read_text()


def test_a_container_on_two_networks_resolves_both_and_others_only_their_own(env) -> None:
    """Docker's rule: a container sees the names of every network it is on, whichever of its
    gateways it asks, and never those of a network it is not on."""
    n1 = env.nets.create_network("n1")
    n2 = env.nets.create_network("n2")
    a, b, c = env.ns("a"), env.ns("b"), env.ns("c")
    ea1 = env.nets.connect("n1", C1, a, container_name="app-a-1", dns_names=["a"])
    ea2 = env.nets.connect("n2", C1, a, container_name="app-a-1", dns_names=["a"])
    eb = env.nets.connect("n1", C2, b, container_name="app-b-1", dns_names=["b"])
    ec = env.nets.connect("n2", C3, c, container_name="app-c-1", dns_names=["c"])
    g1, g2 = str(n1.gateway), str(n2.gateway)
    for gw in (g1, g2):  # A asks either of its gateways
        assert query(a, gw, "b") == (wire.NOERROR, [str(eb.ipv4)])
        assert query(a, gw, "c") == (wire.NOERROR, [str(ec.ipv4)])
        assert query(a, gw, "app-c-1.n2", tcp=True) == (wire.NOERROR, [str(ec.ipv4)])
    # On a name both networks hold, the network the query arrived on answers first.
    assert query(a, g1, "a") == (wire.NOERROR, [str(ea1.ipv4)])
    assert query(a, g2, "a") == (wire.NOERROR, [str(ea2.ipv4)])
    q = wire.build_query(wire.reverse_name(str(ec.ipv4)), wire.TYPE_PTR, qid=7)
    with netns.socket_in(a, socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(5)
        sock.sendto(q, (g1, 53))
        _, _, answers = wire.parse_response(sock.recv(4096))
    assert wire.read_name(answers[0][3], 0)[0] == "app-c-1.n2"
    # B and C share no network: neither resolves the other, even at the other's gateway.
    assert query(b, g1, "c") == (wire.NXDOMAIN, [])
    assert query(b, g1, "app-c-1.n2") == (wire.NXDOMAIN, [])
    assert query(c, g2, "b") == (wire.NXDOMAIN, [])
    assert query(c, g1, "b") == (wire.NXDOMAIN, [])
    assert query(b, g1, "a") == (wire.NOERROR, [str(ea1.ipv4)])
    assert query(c, g2, "a") == (wire.NOERROR, [str(ea2.ipv4)])
    if busybox.available():
        assert nslookup(a, "c", g1) == [str(ec.ipv4)]
    # Leaving n2, A stops seeing C.
    env.nets.disconnect("n2", C1)
    assert query(a, g1, "c") == (wire.NXDOMAIN, [])


def test_a_removal_right_after_another_commands_create_waits_for_the_resolver(env) -> None:
    # `up` creates the network (the resolver starts in the background) and stops early (a
    # failed pull); `down`, another process, removes the network while the resolver is still
    # booting: it must see the resolver go, not take it for absent and leave it running.
    env.nets.create_network("early")
    starting = env.dns._starting
    assert starting is not None, "creation no longer leaves the resolver starting"
    other = Networks(env.layout, env.nets.store,
                     dns=Dns(env.layout, env.nets.store, upstreams=[env.upstream.address]))
    other.remove_network("early")
    assert other.dns.resolver_pid() is None
    env.dns._starting = None
    starting.stdout.close()
    starting.wait(5)
    # (the fixture's leak check finds any resolver process still running)


def test_leaving_names_deferred_reach_the_resolver_at_the_end_of_the_scope(env) -> None:
    net = env.nets.create_network("front")
    a, b = env.ns("a"), env.ns("b")
    env.nets.connect("front", C1, a, container_name="app-web-1")
    eb = env.nets.connect("front", C2, b, container_name="app-db-1", aliases=["db"])
    gw = str(net.gateway)
    records = env.dns.dir / "records.json"
    assert query(a, gw, "db") == (wire.NOERROR, [str(eb.ipv4)])
    with env.dns.removals_deferred():
        env.nets.disconnect_all(C2)
        assert "app-db-1" in records.read_text()  # not published yet: `down` goes on
        assert query(a, gw, "db") == (wire.NOERROR, [str(eb.ipv4)])
    assert "app-db-1" not in records.read_text()
    start = time.monotonic()
    while query(a, gw, "db")[1] and time.monotonic() - start < 1.0:
        time.sleep(0.05)
    assert query(a, gw, "db") == (wire.NXDOMAIN, [])


def test_a_removal_resumed_after_one_killed_before_its_publish_lets_the_resolver_go(
        env) -> None:
    # A `down` killed between the commit of a network's names and their publish: the
    # resolver still serves the network. The next removal finds nothing left to delete,
    # and still has the resolver let it go (else it would run for ever).
    net = env.nets.create_network("killed")
    pid = env.dns.resolver_pid()
    assert pid is not None
    with env.dns.store.tx() as conn:  # what the killed removal committed
        conn.execute("DELETE FROM dns_networks WHERE network_id = ?", (net.id,))
    env.nets.remove_network(net.id)
    assert env.dns.resolver_pid() is None
    status = Path(f"/proc/{pid}/status")
    assert not status.exists() or "zombie" in status.read_text()
