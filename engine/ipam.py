"""IPv4 address management: subnets for networks and address leases for endpoints.

The choices are pure functions (`pick_subnet`, `check_config`, `next_address`) over data the
caller supplies -- the host's own addresses and routes included -- so they are tested without
root or a kernel. `Ipam` keeps the result in the store: one row per network (subnet, gateway,
optional ip_range, allocation cursor) and one per lease. Every allocation runs in one
`BEGIN IMMEDIATE` transaction, so two processes never hand out the same subnet or address.

Addresses are handed out serially after the last one given (wrapping), as Docker does, so an
address released a moment ago is not reused at once while peers may still cache it.
"""

from __future__ import annotations

import ipaddress
import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network

from engine.errors import AlreadyExists, Conflict, InvalidArgument, NotFound, Unavailable
from engine.store import Store


@dataclass(frozen=True, slots=True)
class Pool:
    """A base range carved into subnets of one prefix length (Docker's `default-address-pools`)."""

    base: IPv4Network
    size: int


# Docker's defaults: 172.17/16 .. 172.31/16, then 192.168/16 in /20s.
DEFAULT_POOLS: tuple[Pool, ...] = (
    *(Pool(IPv4Network(f"172.{n}.0.0/16"), 16) for n in range(17, 32)),
    Pool(IPv4Network("192.168.0.0/16"), 20),
)


@dataclass(frozen=True, slots=True)
class SubnetConfig:
    """A network's subnet, gateway and (optional) range for leases."""

    subnet: IPv4Network
    gateway: IPv4Address
    ip_range: IPv4Network | None = None

    @property
    def allocatable(self) -> IPv4Network:
        return self.ip_range or self.subnet


# ---------------------------------------------------------------- pure logic

def _net(text: str, what: str) -> IPv4Network:
    try:
        net = ipaddress.ip_network(text, strict=False)
    except ValueError:
        raise InvalidArgument(f"{what} {text!r} is not a valid IPv4 subnet (expected a.b.c.d/n)")\
            from None
    if not isinstance(net, IPv4Network):
        raise InvalidArgument(f"{what} {text!r}: IPv6 is not supported yet")
    if str(net) != text.strip() and ipaddress.ip_interface(text).ip != net.network_address:
        raise InvalidArgument(f"{what} {text!r} has host bits set (expected {net})")
    return net


def _addr(text: str, what: str) -> IPv4Address:
    try:
        addr = ipaddress.ip_address(text)
    except ValueError:
        raise InvalidArgument(f"{what} {text!r} is not a valid IPv4 address") from None
    if not isinstance(addr, IPv4Address):
        raise InvalidArgument(f"{what} {text!r}: IPv6 is not supported yet")
    return addr


def check_config(subnet: str, gateway: str | None = None,
                 ip_range: str | None = None) -> SubnetConfig:
    """Validates a user-given subnet, gateway and ip_range; the gateway defaults to the first
    host address. Raises InvalidArgument with the reason."""
    net = _net(subnet, "subnet")
    if net.prefixlen > 30:
        raise InvalidArgument(f"subnet {net} is too small (expected a prefix of /30 or shorter)")
    rng = None
    if ip_range:
        rng = _net(ip_range, "ip_range")
        if not rng.subnet_of(net):
            raise InvalidArgument(f"ip_range {rng} is not inside subnet {net}")
    gw = _addr(gateway, "gateway") if gateway else net.network_address + 1
    if gw not in net:
        raise InvalidArgument(f"gateway {gw} is not inside subnet {net}")
    if gw in (net.network_address, net.broadcast_address):
        raise InvalidArgument(f"gateway {gw} is the network or broadcast address of {net}")
    return SubnetConfig(net, gw, rng)


def overlaps(subnet: IPv4Network, taken: Iterable[IPv4Network]) -> IPv4Network | None:
    """The first of `taken` that overlaps `subnet`, or None."""
    for other in taken:
        if subnet.overlaps(other):
            return other
    return None


def pick_subnet(pools: Sequence[Pool], taken: Iterable[IPv4Network]) -> IPv4Network:
    """The first subnet from `pools` that overlaps nothing in `taken` (host addresses and
    routes, other networks). Raises Unavailable when every pool is used up."""
    used = sorted(set(taken), key=lambda n: (int(n.network_address), n.prefixlen))
    for pool in pools:
        relevant = [n for n in used if n.overlaps(pool.base)]
        candidate = int(pool.base.network_address)
        step = 1 << (32 - pool.size)
        end = int(pool.base.broadcast_address)
        while candidate + step - 1 <= end:
            net = IPv4Network((candidate, pool.size))
            clash = overlaps(net, relevant)
            if clash is None:
                return net
            # Jump past the clashing range rather than probing every subnet inside it.
            past = int(clash.broadcast_address) + 1
            candidate = max(candidate + step, (past + step - 1) // step * step)
    raise Unavailable("no free subnet left in the address pools "
                      "(remove unused networks, or give the network an explicit subnet)")


def next_address(config: SubnetConfig, leased: Iterable[IPv4Address],
                 cursor: IPv4Address | None = None) -> IPv4Address:
    """The first free address after `cursor` in the allocatable range (wrapping), skipping the
    network and broadcast addresses, the gateway and `leased`. Raises Unavailable when full."""
    rng = config.allocatable
    excluded = {int(a) for a in (config.subnet.network_address,
                                 config.subnet.broadcast_address, config.gateway, *leased)}
    first, last = int(rng.network_address), int(rng.broadcast_address)
    start = int(cursor) + 1 if cursor is not None and first <= int(cursor) < last else first
    # Lazily: a /16 has 65534 candidates and almost always the first one is free.
    for value in itertools.chain(range(start, last + 1), range(first, start)):
        if value not in excluded:
            return IPv4Address(value)
    raise Unavailable(f"no free address left in {rng}")


def check_static(config: SubnetConfig, text: str) -> IPv4Address:
    """Validates a requested endpoint address against the network's subnet."""
    addr = _addr(text, "ipv4_address")
    if addr not in config.subnet:
        raise InvalidArgument(f"ipv4_address {addr} is not inside the network's subnet "
                              f"{config.subnet}")
    if addr in (config.subnet.network_address, config.subnet.broadcast_address):
        raise InvalidArgument(f"ipv4_address {addr} is the network or broadcast address of "
                              f"{config.subnet}")
    if addr == config.gateway:
        raise Conflict(f"ipv4_address {addr} is the network's gateway")
    return addr


# ---------------------------------------------------------------- store

SCHEMA = """
CREATE TABLE IF NOT EXISTS ipam_subnets (
    network_id TEXT PRIMARY KEY,
    label TEXT NOT NULL,
    subnet TEXT NOT NULL,
    gateway TEXT NOT NULL,
    ip_range TEXT,
    cursor TEXT
);
CREATE TABLE IF NOT EXISTS ipam_leases (
    network_id TEXT NOT NULL REFERENCES ipam_subnets(network_id) ON DELETE CASCADE,
    address TEXT NOT NULL,
    holder TEXT NOT NULL,
    holder_label TEXT NOT NULL,
    PRIMARY KEY (network_id, address),
    UNIQUE (network_id, holder)
)
"""


def _row_config(row) -> SubnetConfig:
    return SubnetConfig(IPv4Network(row["subnet"]), IPv4Address(row["gateway"]),
                        IPv4Network(row["ip_range"]) if row["ip_range"] else None)


class Ipam:
    """Subnets and leases of one engine root, in its store."""

    def __init__(self, store: Store, pools: Sequence[Pool] = DEFAULT_POOLS) -> None:
        self.store = store
        self.pools = tuple(pools)
        store.ensure_schema(SCHEMA)

    def reserve(self, network_id: str, label: str, *, subnet: str | None = None,
                gateway: str | None = None, ip_range: str | None = None,
                host_networks: Iterable[IPv4Network] = ()) -> SubnetConfig:
        """Records the network's subnet: the given one (validated, must not overlap another
        network of this root), or the first pool subnet that overlaps neither another network
        nor `host_networks` (the host's addresses and routes)."""
        with self.store.tx() as conn:
            rows = conn.execute("SELECT label, subnet FROM ipam_subnets").fetchall()
            mine = {IPv4Network(r["subnet"]): r["label"] for r in rows}
            if subnet:
                config = check_config(subnet, gateway, ip_range)
                clash = overlaps(config.subnet, mine)
                if clash is not None:
                    raise Conflict(f"subnet {config.subnet} overlaps network {mine[clash]!r} "
                                   f"({clash}) (choose another subnet)")
            else:
                if gateway or ip_range:
                    raise InvalidArgument("gateway and ip_range need an explicit subnet")
                net = pick_subnet(self.pools, [*mine, *host_networks])
                config = SubnetConfig(net, net.network_address + 1)
            conn.execute(
                "INSERT INTO ipam_subnets (network_id, label, subnet, gateway, ip_range) "
                "VALUES (?, ?, ?, ?, ?)",
                (network_id, label, str(config.subnet), str(config.gateway),
                 str(config.ip_range) if config.ip_range else None))
        return config

    def config(self, network_id: str) -> SubnetConfig:
        rows = self.store.query("SELECT * FROM ipam_subnets WHERE network_id = ?", (network_id,))
        if not rows:
            raise NotFound(f"network {network_id[:12]} has no address configuration")
        return _row_config(rows[0])

    def release_network(self, network_id: str) -> None:
        """Forgets the subnet and every lease in it (idempotent)."""
        with self.store.tx() as conn:
            conn.execute("DELETE FROM ipam_leases WHERE network_id = ?", (network_id,))
            conn.execute("DELETE FROM ipam_subnets WHERE network_id = ?", (network_id,))

    def lease(self, network_id: str, holder: str, address: str | None = None,
              holder_label: str = "") -> tuple[IPv4Address, SubnetConfig]:
        """Leases `address` (validated; Conflict naming the holder if taken) or the next free
        one to `holder`. A holder has at most one lease per network."""
        label = holder_label or holder[:12]
        with self.store.tx() as conn:
            rows = conn.execute("SELECT * FROM ipam_subnets WHERE network_id = ?",
                                (network_id,)).fetchall()
            if not rows:
                raise NotFound(f"network {network_id[:12]} has no address configuration")
            config = _row_config(rows[0])
            name = rows[0]["label"]
            leases = {r["address"]: r for r in conn.execute(
                "SELECT * FROM ipam_leases WHERE network_id = ?", (network_id,))}
            for row in leases.values():
                if row["holder"] == holder:
                    raise AlreadyExists(f"{label} already has address {row['address']} on "
                                        f"network {name!r}")
            if address:
                addr = check_static(config, address)
                held = leases.get(str(addr))
                if held is not None:
                    raise Conflict(f"address {addr} on network {name!r} is already in use "
                                   f"(by {held['holder_label']})")
            else:
                cursor = IPv4Address(rows[0]["cursor"]) if rows[0]["cursor"] else None
                addr = next_address(config, map(IPv4Address, leases), cursor)
                conn.execute("UPDATE ipam_subnets SET cursor = ? WHERE network_id = ?",
                             (str(addr), network_id))
            conn.execute("INSERT INTO ipam_leases (network_id, address, holder, holder_label) "
                         "VALUES (?, ?, ?, ?)", (network_id, str(addr), holder, label))
        return addr, config

    def release(self, network_id: str, holder: str) -> None:
        """Gives back the holder's address on the network (idempotent)."""
        with self.store.tx() as conn:
            conn.execute("DELETE FROM ipam_leases WHERE network_id = ? AND holder = ?",
                         (network_id, holder))

    def leases(self, network_id: str) -> dict[str, IPv4Address]:
        """holder -> address, for one network."""
        rows = self.store.query("SELECT holder, address FROM ipam_leases WHERE network_id = ?",
                                (network_id,))
        return {r["holder"]: IPv4Address(r["address"]) for r in rows}
