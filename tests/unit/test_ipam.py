"""IPAM: subnet choice around the host's routes, user configs, leases in a real SQLite store."""

from __future__ import annotations

import multiprocessing
from ipaddress import IPv4Address, IPv4Network

import pytest

from engine.errors import AlreadyExists, Conflict, InvalidArgument, Unavailable
from engine.ipam import (
    DEFAULT_POOLS,
    Ipam,
    Pool,
    SubnetConfig,
    check_config,
    next_address,
    pick_subnet,
)
from engine.store import Store

N = IPv4Network


def test_default_pools_are_dockers() -> None:
    assert DEFAULT_POOLS[0] == Pool(N("172.17.0.0/16"), 16)
    assert DEFAULT_POOLS[14] == Pool(N("172.31.0.0/16"), 16)
    assert DEFAULT_POOLS[-1] == Pool(N("192.168.0.0/16"), 20)
    assert len(DEFAULT_POOLS) == 16


def test_pick_first_free_subnet() -> None:
    assert pick_subnet(DEFAULT_POOLS, []) == N("172.17.0.0/16")
    # A small host route inside 172.17/16 rules out the whole /16.
    assert pick_subnet(DEFAULT_POOLS, [N("172.17.3.0/24"), N("172.18.0.0/16")]) == \
        N("172.19.0.0/16")


def test_pick_skips_a_host_route_covering_all_of_172_16() -> None:
    taken = [N("172.16.0.0/12"), N("10.88.0.0/16"), N("192.168.0.0/24")]
    assert pick_subnet(DEFAULT_POOLS, taken) == N("192.168.16.0/20")


def test_pick_exhausted_pools_is_a_clear_error() -> None:
    with pytest.raises(Unavailable, match="no free subnet"):
        pick_subnet(DEFAULT_POOLS, [N("172.16.0.0/12"), N("192.168.0.0/16")])


def test_pick_jumps_over_large_clashes() -> None:
    pools = [Pool(N("10.0.0.0/8"), 24)]
    taken = [N("10.0.0.0/9"), N("10.128.0.0/24")]
    assert pick_subnet(pools, taken) == N("10.128.1.0/24")


def test_check_config_defaults_gateway_and_validates() -> None:
    assert check_config("10.50.0.0/24") == SubnetConfig(N("10.50.0.0/24"),
                                                        IPv4Address("10.50.0.1"))
    cfg = check_config("10.50.0.0/16", "10.50.0.254", "10.50.1.0/24")
    assert cfg.gateway == IPv4Address("10.50.0.254") and cfg.allocatable == N("10.50.1.0/24")
    with pytest.raises(InvalidArgument, match=r"gateway 10\.51\.0\.1 is not inside subnet"):
        check_config("10.50.0.0/16", "10.51.0.1")
    with pytest.raises(InvalidArgument, match=r"ip_range 10\.60\.0\.0/24 is not inside"):
        check_config("10.50.0.0/16", None, "10.60.0.0/24")
    with pytest.raises(InvalidArgument, match="host bits"):
        check_config("10.50.0.7/16")
    with pytest.raises(InvalidArgument, match="not a valid IPv4 subnet"):
        check_config("10.50.0.0/33")
    with pytest.raises(InvalidArgument, match="IPv6"):
        check_config("fd00::/64")
    with pytest.raises(InvalidArgument, match="network or broadcast"):
        check_config("10.50.0.0/24", "10.50.0.255")


def test_next_address_is_serial_and_wraps() -> None:
    cfg = check_config("10.9.0.0/29")  # hosts .1-.6, gateway .1
    assert next_address(cfg, []) == IPv4Address("10.9.0.2")
    assert next_address(cfg, [], IPv4Address("10.9.0.2")) == IPv4Address("10.9.0.3")
    # After the last one given, wrap round to the start, skipping the leased ones.
    leased = [IPv4Address("10.9.0.2")]
    assert next_address(cfg, leased, IPv4Address("10.9.0.6")) == IPv4Address("10.9.0.3")
    full = [IPv4Address(f"10.9.0.{i}") for i in range(2, 7)]
    with pytest.raises(Unavailable, match="no free address"):
        next_address(cfg, full)


def test_next_address_stays_in_ip_range() -> None:
    cfg = check_config("10.9.0.0/16", None, "10.9.4.0/30")
    got = []
    for _ in range(4):
        addr = next_address(cfg, got, got[-1] if got else None)
        got.append(addr)
        if len(got) == 4:
            break
    assert [str(a) for a in got] == ["10.9.4.0", "10.9.4.1", "10.9.4.2", "10.9.4.3"]


@pytest.fixture
def ipam(tmp_path) -> Ipam:
    return Ipam(Store(tmp_path / "db.sqlite"))


def test_reserve_avoids_other_networks_and_host(ipam: Ipam) -> None:
    a = ipam.reserve("a" * 64, "front", host_networks=[N("172.17.0.0/16")])
    b = ipam.reserve("b" * 64, "back", host_networks=[])
    assert a.subnet == N("172.18.0.0/16") and a.gateway == IPv4Address("172.18.0.1")
    assert b.subnet == N("172.17.0.0/16")
    assert ipam.config("a" * 64) == a


def test_overlapping_user_subnet_names_the_network_and_records_nothing(ipam: Ipam) -> None:
    ipam.reserve("a" * 64, "front", subnet="10.77.0.0/16")
    with pytest.raises(Conflict, match=r"overlaps network 'front' \(10.77.0.0/16\)"):
        ipam.reserve("b" * 64, "back", subnet="10.77.5.0/24")
    assert ipam.store.query("SELECT count(*) AS n FROM ipam_subnets")[0]["n"] == 1


def test_leases_static_and_release(ipam: Ipam) -> None:
    ipam.reserve("n" * 64, "net", subnet="10.77.0.0/24")
    first, _ = ipam.lease("n" * 64, "c1", holder_label="app-web-1")
    second, _ = ipam.lease("n" * 64, "c2")
    assert (str(first), str(second)) == ("10.77.0.2", "10.77.0.3")
    static, _ = ipam.lease("n" * 64, "c3", "10.77.0.50", holder_label="app-db-1")
    assert str(static) == "10.77.0.50"
    with pytest.raises(Conflict, match=r"10.77.0.2 on network 'net' is already in use "
                                       r"\(by app-web-1\)"):
        ipam.lease("n" * 64, "c4", "10.77.0.2")
    with pytest.raises(Conflict, match="gateway"):
        ipam.lease("n" * 64, "c4", "10.77.0.1")
    with pytest.raises(InvalidArgument, match="not inside the network's subnet"):
        ipam.lease("n" * 64, "c4", "10.78.0.9")
    with pytest.raises(AlreadyExists):
        ipam.lease("n" * 64, "c1")
    ipam.release("n" * 64, "c1")
    # Serial allocation: the address released a moment ago is not handed out again at once.
    again, _ = ipam.lease("n" * 64, "c5")
    assert str(again) == "10.77.0.4"
    assert set(ipam.leases("n" * 64)) == {"c2", "c3", "c5"}
    ipam.release_network("n" * 64)
    assert ipam.leases("n" * 64) == {}


def _lease_many(path: str, worker: int, count: int, out) -> None:
    ipam = Ipam(Store(path))
    got = [str(ipam.lease("n" * 64, f"w{worker}-{i}")[0]) for i in range(count)]
    out.put(got)


def test_two_processes_never_get_the_same_address(tmp_path) -> None:
    path = tmp_path / "db.sqlite"
    Ipam(Store(path)).reserve("n" * 64, "net", subnet="10.66.0.0/22")
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    procs = [ctx.Process(target=_lease_many, args=(str(path), w, 40, out)) for w in range(4)]
    for p in procs:
        p.start()
    results = [out.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(timeout=60)
    every = [addr for got in results for addr in got]
    assert len(every) == 160 and len(set(every)) == 160
