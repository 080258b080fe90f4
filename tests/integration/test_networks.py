"""Bridge networks on the real kernel: namespaces, veths, routes, leases, nftables, cleanup.

Every test runs against a temporary engine root and ends with a leak check (mounts, links,
namespaces, processes). Traffic goes only between namespaces the test made. Subnets come from
the engine's pool, never hard-coded."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import threading
from pathlib import Path
from types import SimpleNamespace

import pytest

from engine import netns
from engine.dns import Dns
from engine.errors import AlreadyExists, Conflict, InvalidArgument, NotFound
from engine.ipam import DEFAULT_POOLS, pick_subnet
from engine.layout import Layout
from engine.netdevs import bridge_name, host_networks, veth_name
from engine.networks import Networks
from engine.store import Store
from tests.support import busybox, leaks

C1, C2, C3 = "1" * 64, "2" * 64, "3" * 64


@pytest.fixture
def env(tmp_path):
    before = leaks.snapshot()
    layout = Layout.at(tmp_path / "root").ensure()
    store = Store(layout.database)
    nets = Networks(layout, store, dns=Dns(layout, store, upstreams=[]))
    created = record_networks(nets)
    made: list[Path] = []

    def make_ns(name: str) -> Path:
        path = netns.create(layout, name)
        made.append(path)
        return path

    yield SimpleNamespace(layout=layout, store=store, nets=nets, ns=make_ns)
    for ep in nets.endpoints():
        nets.disconnect(ep.network_id, ep.container_id, force=True)
    for net in nets.list():
        nets.remove_network(net.id)
    for path in made:
        netns.delete(path, layout)
    store.close()
    shutil.rmtree(layout.run, ignore_errors=True)
    leaked = ours(leaks.diff(before, leaks.snapshot()), layout, tmp_path,
                  our_links(created, (C1, C2, C3)))
    assert leaked == {}


def record_networks(nets: Networks) -> list[str]:
    """The ids of the networks `nets` creates from now on (appended as they are made)."""
    created: list[str] = []
    create_network = nets.create_network

    def recording_create(*args, **kwargs):
        net = create_network(*args, **kwargs)
        created.append(net.id)
        return net

    nets.create_network = recording_create  # type: ignore[method-assign]
    return created


def our_links(networks: list[str], containers: tuple[str, ...]) -> set[str]:
    """The link names those networks and containers can leave: bridges and host veths
    (other sessions on this machine make sy* links too)."""
    return {bridge_name(n) for n in networks} | {veth_name(n, c) for n in networks
                                                 for c in containers}


def _ancestors(pid: int) -> set[int]:
    seen: set[int] = set()
    while pid > 1 and pid not in seen:
        seen.add(pid)
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            break
        pid = int(stat.rsplit(")", 1)[1].split()[1])
    return seen


def ours(leaked: dict, layout: Layout, tmp_path: Path, links: set[str]) -> dict:
    """The leak diff limited to what this code can create, so that other sessions working on
    the machine at the same time (their cgroups, mounts, processes) do not count: the
    `links` named, mounts and processes under this test's paths, processes descending from
    this test. This code makes no cgroups and no /run/netns entries."""
    me = os.getpid()
    paths = (str(layout.run), str(tmp_path))
    keep = {
        "links": [n for n in leaked.get("links", []) if n in links],
        "mounts": [m for m in leaked.get("mounts", []) if m.startswith(paths)],
        "processes": [p for p in leaked.get("processes", [])
                      if me in _ancestors(int(p.split()[0])) or any(x in p for x in paths)],
    }
    return {k: v for k, v in keep.items() if v}


def free_subnet(env, prefix: int = 24) -> str:
    """A subnet from the engine's pool that neither the host nor this root uses."""
    taken = [*host_networks(), *(n.subnet for n in env.nets.list())]
    pools = [type(p)(p.base, prefix) for p in DEFAULT_POOLS]
    return str(pick_subnet(pools, taken))


def sh(path: Path, *argv: str) -> str:
    return subprocess.run(netns.command(path, argv), capture_output=True, text=True,
                          timeout=20).stdout


def links() -> set[str]:
    return {p.name for p in Path("/sys/class/net").iterdir()}


def tcp_exchange(server_ns: Path, client_ns: Path, address: str, timeout: float = 3.0) -> bytes:
    """Listens in `server_ns` on `address`, connects from `client_ns`, returns the echo."""
    srv = netns.socket_in(server_ns)
    srv.bind((address, 0))
    srv.listen(1)
    srv.settimeout(timeout)

    def echo() -> None:
        try:
            conn, _ = srv.accept()
            with conn:
                conn.sendall(conn.recv(100).upper())
        except OSError:
            pass

    thread = threading.Thread(target=echo)
    thread.start()
    try:
        with netns.socket_in(client_ns) as cli:
            cli.settimeout(timeout)
            cli.connect((address, srv.getsockname()[1]))
            cli.sendall(b"ping")
            return cli.recv(100)
    finally:
        srv.close()
        thread.join()


def test_two_namespaces_on_one_network_talk_tcp(env, tmp_path) -> None:
    net = env.nets.create_network("front", labels={"com.docker.compose.project": "t"})
    a, b = env.ns("a"), env.ns("b")
    ea = env.nets.connect("front", C1, a, container_name="t-web-1")
    eb = env.nets.connect("front", C2, b, container_name="t-db-1")
    assert ea.ifname == eb.ifname == "eth0" and ea.ipv4 != eb.ipv4
    assert ea.ipv4 in net.subnet and ea.gateway == net.gateway
    assert f"default via {net.gateway} dev eth0" in sh(a, "ip", "-4", "route")
    assert tcp_exchange(b, a, str(eb.ipv4)) == b"PING"
    if busybox.available():
        www = tmp_path / "www"
        www.mkdir()
        (www / "index.html").write_text("hello from b\n")
        httpd = subprocess.Popen(netns.command(b, [str(busybox.BUSYBOX), "httpd", "-f", "-p",
                                                   f"{eb.ipv4}:8080", "-h", str(www)]))
        try:
            out = ""
            for _ in range(50):
                # (busybox 1.35's wget crashes with -T; the subprocess timeout bounds it)
                out = sh(a, str(busybox.BUSYBOX), "wget", "-O", "-",
                         f"http://{eb.ipv4}:8080/index.html")
                if out:
                    break
            assert out == "hello from b\n"
        finally:
            httpd.kill()
            httpd.wait()


def test_other_network_cannot_be_reached(env) -> None:
    env.nets.create_network("one")
    env.nets.create_network("two")
    a, c = env.ns("a"), env.ns("c")
    env.nets.connect("one", C1, a)
    ec = env.nets.connect("two", C3, c)
    with pytest.raises(OSError):
        tcp_exchange(c, a, str(ec.ipv4), timeout=1.0)


def test_internal_network_has_no_default_route(env) -> None:
    net = env.nets.create_network("private", internal=True)
    a = env.ns("a")
    ep = env.nets.connect("private", C1, a)
    routes = sh(a, "ip", "-4", "route")
    assert "default" not in routes and str(net.subnet) in routes
    assert ep.internal and env.nets.inspect("private")["Internal"] is True
    if env.nets.egress.available:
        rules = [r for r in env.nets.egress.rules() if r["comment"] == f"sy:{net.id[:12]}"]
        assert {r["chain"] for r in rules} == {"forward"} and len(rules) == 3


def test_default_route_follows_gw_priority(env) -> None:
    one = env.nets.create_network("one")
    two = env.nets.create_network("two")
    a = env.ns("a")
    assert env.nets.connect("one", C1, a).ifname == "eth0"
    assert env.nets.connect("two", C1, a, gw_priority=10).ifname == "eth1"
    assert f"default via {two.gateway} dev eth1" in sh(a, "ip", "-4", "route")
    env.nets.disconnect("two", C1)
    assert f"default via {one.gateway} dev eth0" in sh(a, "ip", "-4", "route")
    assert "eth1" not in sh(a, "ip", "-o", "link")


def test_connect_returns_the_endpoint_it_recorded(env) -> None:
    """connect builds its answer instead of reading it back: it must equal the record, in
    every field (aliases, priority, the network's gateway and prefix, internal or not)."""
    env.nets.create_network("one")
    env.nets.create_network("inner", internal=True)
    a = env.ns("a")
    got = [env.nets.connect("one", C1, a, container_name="web", aliases=["x", "y"],
                            gw_priority=3, mac_address="02:00:00:AA:BB:CC"),
           env.nets.connect("inner", C1, a, container_name="web")]
    assert got == env.nets.endpoints(container_id=C1)
    assert got[0].mac == "02:00:00:aa:bb:cc" and got[1].internal


def test_static_address_mac_and_mtu(env) -> None:
    subnet = free_subnet(env)
    base = subnet.rsplit(".", 1)[0]
    env.nets.create_network("fixed", subnet=subnet, options={
        "com.docker.network.driver.mtu": "1400"})
    a = env.ns("a")
    ep = env.nets.connect("fixed", C1, a, ipv4_address=f"{base}.10",
                          mac_address="02:00:00:aa:bb:cc")
    assert str(ep.ipv4) == f"{base}.10" and ep.mac == "02:00:00:aa:bb:cc"
    link = sh(a, "ip", "-o", "link", "show", "eth0")
    assert "mtu 1400" in link and "02:00:00:aa:bb:cc" in link
    assert f"{base}.10/24" in sh(a, "ip", "-o", "-4", "addr", "show", "eth0")
    assert env.nets.ipam.leases(ep.network_id) == {C1: ep.ipv4}


def test_errors_are_clear_and_leave_nothing_half_made(env) -> None:
    subnet = free_subnet(env)
    base = subnet.rsplit(".", 1)[0]
    env.nets.create_network("front", subnet=subnet)
    links_before = links()
    with pytest.raises(Conflict, match=r"overlaps network 'front'"):
        env.nets.create_network("back", subnet=f"{base}.128/25")
    with pytest.raises(InvalidArgument, match="is not inside subnet"):
        env.nets.create_network("back", subnet=free_subnet(env), gateway=f"{base}.1")
    with pytest.raises(AlreadyExists, match="'front' already exists"):
        env.nets.create_network("front")
    with pytest.raises(InvalidArgument, match="driver 'overlay' is not supported"):
        env.nets.create_network("back", driver="overlay")
    assert [n.name for n in env.nets.list()] == ["front"] and links() == links_before

    a, b = env.ns("a"), env.ns("b")
    env.nets.connect("front", C1, a, container_name="web-1", ipv4_address=f"{base}.10")
    links_after_a = links()
    with pytest.raises(Conflict, match=rf"{base}.10 on network 'front' is already in use "
                                       r"\(by web-1\)"):
        env.nets.connect("front", C2, b, container_name="db-1", ipv4_address=f"{base}.10")
    with pytest.raises(NotFound, match="not found"):
        env.nets.connect("nope", C2, b)
    with pytest.raises(AlreadyExists):
        env.nets.connect("front", C1, a)
    assert links() == links_after_a
    assert "eth" not in sh(b, "ip", "-o", "link")
    assert set(env.nets.ipam.leases(env.nets.get("front").id)) == {C1}
    with pytest.raises(Conflict, match=r"'front' has active endpoints \(web-1\)"):
        env.nets.remove_network("front")


def test_remove_takes_bridge_veths_rules_and_resolver(env) -> None:
    net = env.nets.create_network("front")
    a = env.ns("a")
    ep = env.nets.connect("front", C1, a)
    assert {net.bridge, ep.host_ifname} <= links()
    pid = env.nets.dns.resolver_pid()
    assert pid is not None
    if env.nets.egress.available:
        assert env.nets.egress.rules()
    env.nets.disconnect("front", C1)
    assert ep.host_ifname not in links() and env.nets.ipam.leases(net.id) == {}
    assert "eth0" not in sh(a, "ip", "-o", "link")
    env.nets.remove_network("front")
    assert net.bridge not in links()
    assert env.nets.egress.rules() == []
    status = Path(f"/proc/{pid}/status")
    assert env.nets.dns.resolver_pid() is None
    assert not status.exists() or "zombie" in status.read_text()
    assert env.nets.list() == []


def test_endpoint_of_a_vanished_namespace_is_cleaned(env) -> None:
    env.nets.create_network("front")
    path = netns.create(env.layout, "gone")
    ep = env.nets.connect("front", C1, path)
    netns.delete(path, env.layout)
    env.nets.remove_network("front")  # no Conflict: the namespace and its veth are gone
    assert ep.host_ifname not in links()


def test_leaving_with_the_namespace_released_awaits_or_deletes_the_veth(env) -> None:
    # The release order of a container: its namespace first, then its endpoints, whose
    # veths the kernel takes with the namespace. One whose namespace something else keeps
    # alive (an open handle here) is deleted after the wait.
    env.nets.create_network("front")
    free = env.nets.connect("front", C1, netns.create(env.layout, "free"))
    held_path = netns.create(env.layout, "held")
    held = env.nets.connect("front", C2, held_path)
    handle = os.open(held_path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        for container_id, name in ((C1, "free"), (C2, "held")):
            netns.delete(netns.path_of(env.layout, name), env.layout)
            env.nets.disconnect_all(container_id, namespace_released=True)
        assert free.host_ifname not in links() and held.host_ifname not in links()
        assert env.nets.endpoints() == []
    finally:
        os.close(handle)
    env.nets.remove_network("front")


def test_inspect_list_and_prune(env) -> None:
    env.nets.create_network("front", labels={"app": "x"})
    env.nets.create_network("back", labels={"app": "y"}, internal=True)
    a = env.ns("a")
    env.nets.connect("back", C1, a, container_name="db-1")
    doc = env.nets.inspect("back")
    assert doc["Containers"][C1]["Name"] == "db-1"
    prefix = env.nets.get("back").subnet.prefixlen
    assert doc["Containers"][C1]["IPv4Address"].endswith(f"/{prefix}")
    assert doc["IPAM"]["Config"][0]["Gateway"] == str(env.nets.get("back").gateway)
    assert [n.name for n in env.nets.list({"label": ["app=x"]})] == ["front"]
    assert [n.name for n in env.nets.list({"name": ["ack"]})] == ["back"]
    assert env.nets.get(env.nets.get("back").id[:8]).name == "back"
    assert env.nets.prune() == ["front"]  # back has a live endpoint
    assert [n.name for n in env.nets.list()] == ["back"]


def test_gateway_stays_reachable_when_a_peer_leaves(env) -> None:
    """The bridge keeps one MAC: without a fixed one it takes the lowest MAC of its ports, and
    peers that cached the old one lose the gateway (and DNS) when that port goes."""
    net = env.nets.create_network("front")
    a, b = env.ns("a"), env.ns("b")
    mac = Path(f"/sys/class/net/{net.bridge}/address").read_text().strip()
    env.nets.connect("front", C1, a)
    env.nets.connect("front", C2, b)
    with netns.socket_in(a, socket.AF_INET, socket.SOCK_DGRAM) as probe:  # fills a's ARP cache
        probe.sendto(b"x", (str(net.gateway), 9))
    env.nets.disconnect("front", C2)
    assert Path(f"/sys/class/net/{net.bridge}/address").read_text().strip() == mac
    with netns.socket_in(a) as sock:  # the resolver's TCP port on the gateway answers at once
        sock.settimeout(1.0)
        sock.connect((str(net.gateway), 53))


def test_egress_is_masqueraded_and_internal_is_not_forwarded(env) -> None:
    """An "outside" namespace hangs off the host on a veth of its own; a container reaches
    it through the host, and the outside sees the host's address (masquerade)."""
    if not env.nets.egress.available:
        pytest.skip("nft is not installed")
    from pyroute2 import IPRoute

    env.nets.create_network("front")
    env.nets.create_network("private", internal=True)
    outside_subnet = free_subnet(env)
    base = outside_subnet.rsplit(".", 1)[0]
    outside, a, p = env.ns("outside"), env.ns("a"), env.ns("p")
    env.nets.connect("front", C1, a)
    env.nets.connect("private", C2, p)
    fd = os.open(outside, os.O_RDONLY)
    try:
        with IPRoute() as ipr:
            ipr.link("add", ifname="sytestout", kind="veth",
                     peer={"ifname": "eth0", "net_ns_fd": fd})
            index = ipr.link_lookup(ifname="sytestout")[0]
            ipr.addr("add", index=index, address=f"{base}.1", prefixlen=24)
            ipr.link("set", index=index, state="up")
        subprocess.run(netns.command(outside, ["ip", "addr", "add", f"{base}.2/24", "dev",
                                               "eth0"]), check=True)
        subprocess.run(netns.command(outside, ["ip", "link", "set", "eth0", "up"]), check=True)
        srv = netns.socket_in(outside)
        srv.bind((f"{base}.2", 0))
        srv.listen(1)
        srv.settimeout(3)
        with netns.socket_in(a) as cli:
            cli.settimeout(3)
            cli.connect((f"{base}.2", srv.getsockname()[1]))
            conn, peer = srv.accept()
            conn.close()
        assert peer[0] == f"{base}.1"  # masqueraded to the host's address on that link
        with netns.socket_in(p) as cli, pytest.raises(OSError):
            cli.settimeout(1)
            cli.connect((f"{base}.2", srv.getsockname()[1]))
        srv.close()
    finally:
        os.close(fd)
        with IPRoute() as ipr:
            for index in ipr.link_lookup(ifname="sytestout"):
                ipr.link("del", index=index)


def test_retire_goes_ahead_only_when_every_container_on_it_is_leaving(env) -> None:
    net = env.nets.create_network("front")
    env.nets.connect("front", C1, env.ns("a"))
    env.nets.connect("front", C2, env.ns("b"))
    assert env.nets.retire("front", {C1}) is False  # C2 stays: nothing is taken down
    assert net.bridge in links()
    if env.nets.egress.available:
        assert env.nets.egress.rules()
    assert env.nets.retire("front", {C1, C2}) is True
    assert net.bridge not in links()
    if env.nets.egress.available:
        assert env.nets.egress.rules() == []
    assert env.nets.get("front").id == net.id  # the record stays for remove_network
    for container_id in (C1, C2):
        env.nets.disconnect("front", container_id)
    env.nets.remove_network("front")
    assert env.nets.list() == []


def test_a_retired_network_that_stays_is_rebuilt_on_connect(env) -> None:
    net = env.nets.create_network("front")
    env.nets.connect("front", C1, env.ns("a"))
    assert env.nets.retire("front", {C1})
    env.nets.disconnect("front", C1)
    # the removal did not follow (its containers' removal failed): a later connect works
    b, c = env.ns("b"), env.ns("c")
    env.nets.connect("front", C2, b)
    ec = env.nets.connect("front", C3, c)
    assert net.bridge in links()
    assert tcp_exchange(c, b, str(ec.ipv4)) == b"PING"


def test_missing_bridge_is_restored_on_connect(env) -> None:
    """After a reboot the store still has the network but the kernel has no bridge."""
    net = env.nets.create_network("front")
    subprocess.run(["ip", "link", "del", net.bridge], check=True)
    a, b = env.ns("a"), env.ns("b")
    env.nets.connect("front", C1, a)
    eb = env.nets.connect("front", C2, b)
    assert net.bridge in links()
    assert tcp_exchange(b, a, str(eb.ipv4)) == b"PING"


def test_netns_lifecycle_leaves_no_mount(env) -> None:
    path = netns.create(env.layout, "solo")
    assert netns.exists(path)
    with pytest.raises(AlreadyExists):
        netns.create(env.layout, "solo")
    inside = netns.run_in(path, lambda: socket.if_nameindex())
    assert [name for _, name in inside] == ["lo"]
    netns.delete(path, env.layout)
    assert not netns.exists(path) and not env.layout.netns.exists()
    # A stale file (left from before a reboot) does not block a new namespace of that name.
    env.layout.netns.mkdir(parents=True)
    (env.layout.netns / "solo").touch()
    path = netns.create(env.layout, "solo")
    assert netns.exists(path)
    netns.delete(path, env.layout)
    assert not env.layout.netns.exists()


def test_networks_removed_at_once_leave_no_firewall_table(env) -> None:
    if not env.nets.egress.available:
        pytest.skip("nftables is not installed")
    for round_ in range(3):
        names = [f"par{round_}{i}" for i in range(3)]
        for name in names:
            env.nets.create_network(name)
        threads = [threading.Thread(target=env.nets.remove_network, args=(n,)) for n in names]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        tables = subprocess.run(["nft", "list", "tables"], capture_output=True,
                                text=True).stdout
        assert env.nets.egress.table not in tables


def test_awaiting_a_veth_costs_no_cpu_until_the_kernel_says_it_went(env) -> None:
    # The watch hears the kernel's announcements instead of looking at sysfs every 2 ms
    # (which cost ~35 ms of CPU for each second of waiting, on a machine `down` keeps busy).
    # In a process of its own: this one's other threads would count too.
    name = f"syc{os.urandom(3).hex()}"
    program = (
        "import os, sys, time\n"
        "from engine import netdevs, netns\nfrom engine.layout import Layout\n"
        "from engine.rtnl import Rtnl\n"
        f"layout = Layout.at({str(env.layout.root)!r})\n"
        "path = netns.create(layout, 'costly')\n"
        "fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)  # held: the veth stays\n"
        "with Rtnl() as rt:\n"
        f"    rt.add_veth({name!r}, 'eth0', fd, '02:00:00:00:00:01')\n"
        "netns.delete(path, layout)\n"
        "before = time.process_time()\n"
        f"gone = netdevs.await_gone({name!r}, 1.0)  # (then deleted)\n"
        "print(gone, time.process_time() - before)\n")
    out = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True,
                         timeout=30, cwd=Path(__file__).resolve().parents[2]).stdout.split()
    assert out[0] == "False"
    assert float(out[1]) < 0.015
    assert name not in links()


def test_veths_of_released_namespaces_are_awaited_together_and_a_held_one_deleted(
        env) -> None:
    # netdevs.await_gone: one watching thread for every waiting step; a veth whose
    # namespace something else keeps alive is deleted once the wait times out.
    from engine import netdevs
    from engine.rtnl import Rtnl

    tag = os.urandom(3).hex()
    pairs = [(f"syw{tag}{i}", env.ns(f"watch{tag}{i}")) for i in range(3)]
    for name, path in pairs:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            with Rtnl() as rt:
                rt.add_veth(name, "eth0", fd, "02:00:00:00:00:01")
        finally:
            os.close(fd)
    held = os.open(pairs[2][1], os.O_RDONLY | os.O_CLOEXEC)  # keeps that namespace alive
    try:
        for _, path in pairs:
            netns.delete(path, env.layout)
        results: dict[str, bool] = {}
        waiters = [threading.Thread(target=lambda n=name, t=timeout: results.update(
                       {n: netdevs.await_gone(n, t)}))
                   for (name, _), timeout in zip(pairs, (5.0, 5.0, 0.3), strict=True)]
        for waiter in waiters:
            waiter.start()
        for waiter in waiters:
            waiter.join(10)
        assert results == {pairs[0][0]: True, pairs[1][0]: True, pairs[2][0]: False}
        assert not {name for name, _ in pairs} & links()
    finally:
        os.close(held)
