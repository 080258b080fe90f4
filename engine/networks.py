"""Bridge networks: records in the store, bridges and veth pairs in the kernel (netlink).

A network is a Linux bridge `sy-<hash of id>` carrying the gateway address; an endpoint is a
veth pair whose host end `sy<hash of network and container>` is a port of the bridge and whose
other end is created directly inside the container's network namespace as eth0, eth1, ...
The container's default route goes through the non-internal network with the highest
gw_priority (ties: the first connected). Interface names derive from ids only.

Lifecycle: `create_network` -> `connect`/`disconnect` (any number) -> `remove_network`, which
refuses while endpoints are live. Each step either completes or leaves nothing behind: kernel
objects made before a failure are removed again, and the store changes roll back.
Around each network: `Ipam` (subnet, leases), `Egress` (nftables), `Dns` (names, resolver).

Crash safety: a command may be killed at any point. Creation writes the record first and
the DNS row last (`dns_networks`), so a record without its DNS row is a creation that did
not finish: `connect` completes it in place, `create_network` of the same name makes it
again. Teardown goes the other way round (names, firewall, bridge, then the record), so a
killed removal leaves a record that the next removal finishes. `connect` and
`disconnect_all` first drop whatever a killed earlier attempt left for the container (its
lease, endpoint row, names, host veth).

The kernel steps (bridges, veth pairs, interface names) are `engine.netdevs`; the calls are
synchronous, so async callers run them in a worker thread.
"""

from __future__ import annotations

import builtins
import fcntl
import os
import re
import threading
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path
from typing import Any

from engine import netdevs, netns, sha256
from engine.dns import Dns
from engine.egress import Egress
from engine.endpoints import Endpoints, parse_mtu
from engine.errors import AlreadyExists, Conflict, InvalidArgument, NotFound, Unavailable
from engine.ipam import DEFAULT_POOLS, Ipam, Pool
from engine.layout import Layout
from engine.netdevs import bridge_name, host_networks
from engine.runtime.state import now
from engine.store import Store, dumps, loads

DEFAULT_NETWORK = "bridge"
MTU_OPTION = "com.docker.network.driver.mtu"
BRIDGE_NAME_OPTION = "com.docker.network.bridge.name"
MASQUERADE_OPTION = "com.docker.network.bridge.enable_ip_masquerade"
NAME_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]*$")
IFNAME_RE = re.compile(r"^[a-zA-Z0-9_.-]{1,15}$")

SCHEMA = """
CREATE TABLE IF NOT EXISTS networks (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    driver TEXT NOT NULL,
    created TEXT NOT NULL,
    internal INTEGER NOT NULL,
    attachable INTEGER NOT NULL,
    labels TEXT NOT NULL,
    options TEXT NOT NULL,
    bridge TEXT NOT NULL,
    mtu INTEGER
);
CREATE TABLE IF NOT EXISTS network_endpoints (
    network_id TEXT NOT NULL REFERENCES networks(id),
    container_id TEXT NOT NULL,
    name TEXT NOT NULL,
    netns TEXT NOT NULL,
    ifname TEXT NOT NULL,
    host_ifname TEXT NOT NULL,
    ipv4 TEXT NOT NULL,
    mac TEXT NOT NULL,
    aliases TEXT NOT NULL,
    gw_priority INTEGER NOT NULL,
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    UNIQUE (network_id, container_id)
)
"""


@dataclass(frozen=True, slots=True)
class Network:
    """A network's record and its address plan."""

    id: str
    name: str
    driver: str
    created: str
    subnet: IPv4Network
    gateway: IPv4Address
    ip_range: IPv4Network | None
    internal: bool
    attachable: bool
    labels: Mapping[str, str] = field(default_factory=dict)
    options: Mapping[str, str] = field(default_factory=dict)
    bridge: str = ""
    mtu: int | None = None


@dataclass(frozen=True, slots=True)
class Endpoint:
    """A container's attachment to a network."""

    network_id: str
    network_name: str
    container_id: str
    name: str
    netns: str
    ifname: str           # inside the container
    host_ifname: str      # the bridge port
    ipv4: IPv4Address
    prefixlen: int
    mac: str
    gateway: IPv4Address
    aliases: tuple[str, ...]
    gw_priority: int
    internal: bool


class Networks(Endpoints):
    """The networks of one engine root (their endpoints: `engine.endpoints`)."""

    def __init__(self, layout: Layout, store: Store, *, dns: Dns | None = None,
                 egress: Egress | None = None, pools: Sequence[Pool] = DEFAULT_POOLS) -> None:
        self.layout = layout
        self.store = store
        self.ipam = Ipam(store, pools)
        self.dns = dns or Dns(layout, store)
        self.egress = egress or Egress(layout)
        self._retired: set[str] = set()  # ids of networks `retire` took down
        store.ensure_schema(SCHEMA)

    # ------------------------------------------------------------------ records

    def _network(self, row: Any) -> Network:
        config = self.ipam.config(row["id"])
        return Network(row["id"], row["name"], row["driver"], row["created"], config.subnet,
                       config.gateway, config.ip_range, bool(row["internal"]),
                       bool(row["attachable"]), loads(row["labels"], {}),
                       loads(row["options"], {}), row["bridge"], row["mtu"])

    def get(self, ref: str) -> Network:
        """A network by exact name, full id or unique id prefix."""
        rows = self.store.query("SELECT * FROM networks WHERE name = ? OR id = ?", (ref, ref))
        if not rows and ref and re.fullmatch(r"[0-9a-f]+", ref):
            rows = self.store.query("SELECT * FROM networks WHERE id LIKE ?", (ref + "%",))
            if len(rows) > 1:
                raise InvalidArgument(f"network id prefix {ref!r} is ambiguous")
        if not rows:
            raise NotFound(f"network {ref!r} not found")
        return self._network(rows[0])

    def list(self, filters: Mapping[str, Sequence[str]] | None = None) -> builtins.list[Network]:
        """Networks matching Docker-style filters: name (substring), id (prefix), driver,
        label (`key` or `key=value`; all must match). Values of one key are alternatives."""
        nets = [self._network(r) for r in self.store.query("SELECT * FROM networks ORDER BY name")]
        return [n for n in nets if _matches(n, filters or {})]

    def _endpoint(self, row: Any, net: Network) -> Endpoint:
        return Endpoint(net.id, net.name, row["container_id"], row["name"], row["netns"],
                        row["ifname"], row["host_ifname"], IPv4Address(row["ipv4"]),
                        net.subnet.prefixlen, row["mac"], net.gateway,
                        tuple(loads(row["aliases"], [])), row["gw_priority"], net.internal)

    def endpoints(self, *, network: str | None = None,
                  container_id: str | None = None) -> builtins.list[Endpoint]:
        sql, args = "SELECT * FROM network_endpoints WHERE 1", []
        if network is not None:
            sql, args = sql + " AND network_id = ?", [*args, self.get(network).id]
        if container_id is not None:
            sql, args = sql + " AND container_id = ?", [*args, container_id]
        cache: dict[str, Network] = {}
        out = []
        for row in self.store.query(sql + " ORDER BY seq", tuple(args)):
            net = cache.get(row["network_id"]) or cache.setdefault(
                row["network_id"], self.get(row["network_id"]))
            out.append(self._endpoint(row, net))
        return out

    def inspect(self, ref: str) -> dict[str, Any]:
        """Docker's `network inspect` document for one network."""
        net = self.get(ref)
        config: dict[str, str] = {"Subnet": str(net.subnet), "Gateway": str(net.gateway)}
        if net.ip_range:
            config["IPRange"] = str(net.ip_range)
        return {
            "Name": net.name, "Id": net.id, "Created": net.created, "Scope": "local",
            "Driver": net.driver, "EnableIPv6": False,
            "IPAM": {"Driver": "default", "Options": None, "Config": [config]},
            "Internal": net.internal, "Attachable": net.attachable, "Ingress": False,
            "ConfigFrom": {"Network": ""}, "ConfigOnly": False,
            "Containers": {
                ep.container_id: {"Name": ep.name, "EndpointID": _endpoint_id(ep),
                                  "MacAddress": ep.mac,
                                  "IPv4Address": f"{ep.ipv4}/{ep.prefixlen}",
                                  "IPv6Address": ""}
                for ep in self.endpoints(network=net.id)},
            "Options": dict(net.options), "Labels": dict(net.labels),
        }

    # ------------------------------------------------------------------ networks

    def ensure_default(self) -> Network:
        """The network containers join when they name none ("bridge", as Docker's default),
        created on first use."""
        try:
            return self.get(DEFAULT_NETWORK)
        except NotFound:
            pass
        try:
            return self.create_network(DEFAULT_NETWORK)
        except AlreadyExists:  # another process made it meanwhile
            return self.get(DEFAULT_NETWORK)

    def create_network(self, name: str, *, driver: str = "bridge", subnet: str | None = None,
                       gateway: str | None = None, ip_range: str | None = None,
                       internal: bool = False, labels: Mapping[str, str] | None = None,
                       options: Mapping[str, str] | None = None, attachable: bool = False,
                       enable_ipv6: bool = False) -> Network:
        """Records the network and brings up its bridge with the gateway address, firewall
        rules and DNS. Errors (name taken, bad or overlapping subnet...) change nothing."""
        if not NAME_RE.match(name):
            raise InvalidArgument(f"network name {name!r} is not valid "
                                  "(expected [a-zA-Z0-9][a-zA-Z0-9_.-]*)")
        if driver not in ("bridge", "default"):
            raise InvalidArgument(f"network {name!r}: driver {driver!r} is not supported "
                                  "(expected bridge)")
        if enable_ipv6:
            raise Unavailable(f"network {name!r}: IPv6 networks are not supported yet")
        opts = {str(k): str(v) for k, v in (options or {}).items()}
        mtu = parse_mtu(opts.get(MTU_OPTION))
        network_id = os.urandom(32).hex()  # (`secrets` costs ~12 ms to import)
        bridge = opts.get(BRIDGE_NAME_OPTION) or bridge_name(network_id)
        if not IFNAME_RE.match(bridge):
            raise InvalidArgument(f"bridge name {bridge!r} is not valid (at most 15 of "
                                  "[a-zA-Z0-9_.-])")
        created = now(6)  # (as Docker writes it: microseconds)
        # The lock covers the whole creation, so that nobody takes a network being made
        # for one left unfinished by a killed command.
        with self._host_lock():
            self._drop_unfinished(name)
            # Read before the write transaction: other writers (container creates) must not
            # wait for the kernel while we hold the database.
            taken = () if subnet else host_networks()
            with self.store.tx() as conn:
                if conn.execute("SELECT 1 FROM networks WHERE name = ?", (name,)).fetchone():
                    raise AlreadyExists(f"network {name!r} already exists")
                config = self.ipam.reserve(network_id, name, subnet=subnet, gateway=gateway,
                                           ip_range=ip_range, host_networks=taken)
                conn.execute("INSERT INTO networks VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                             (network_id, name, "bridge", created, int(internal),
                              int(attachable), dumps(dict(labels or {})), dumps(opts), bridge,
                              mtu))
            # After the commit: a command killed while the kernel makes the bridge leaves a
            # record (unfinished: no DNS row) that names it, which the next creation or
            # connect finishes or drops. Made inside the transaction, the bridge outlived a
            # rolled-back record with nothing left to find it by.
            try:
                netdevs.make_bridge(bridge, config, mtu)
            except BaseException:
                self._forget(network_id)  # (a Conflict: that interface is not ours to delete)
                raise
            try:
                self.egress.add(network_id, bridge, config.subnet, internal=internal,
                                masquerade=opts.get(MASQUERADE_OPTION, "true") != "false")
                self.dns.add_network(network_id, name, str(config.gateway))  # "complete"
            except BaseException:
                self._teardown(network_id, bridge)
                raise
        return self.get(network_id)

    def complete(self, net: Network) -> bool:
        """False for a network whose creation was killed before its DNS row was written."""
        return bool(self.store.query("SELECT 1 FROM dns_networks WHERE network_id = ?",
                                     (net.id,)))

    def _drop_unfinished(self, name: str) -> None:
        """Removes a network of this name whose creation never finished (and that nothing
        uses), so that creating it again succeeds with the caller's settings."""
        try:
            net = self.get(name)
        except NotFound:
            return
        if self.complete(net):
            return
        self._drop_stale(net)
        if not self.endpoints(network=net.id):
            self._teardown(net.id, net.bridge)

    def _repair(self, net: Network) -> None:
        """Brings back what a recorded network lacks: its bridge (the host rebooted, or
        someone deleted it), and after an unfinished create its firewall rules and DNS."""
        def bridge_gone() -> bool:
            return not Path(f"/sys/class/net/{net.bridge}").exists()

        if not bridge_gone() and self.complete(net):
            return
        with self._host_lock():  # a creation in progress finishes first
            self._retired.discard(net.id)  # built again: a removal takes it down again
            gone = bridge_gone()
            if gone:
                netdevs.make_bridge(net.bridge, self.ipam.config(net.id), net.mtu)
            if gone or not self.complete(net):
                self.egress.remove(net.id)
                self.egress.add(net.id, net.bridge, net.subnet, internal=net.internal,
                                masquerade=net.options.get(MASQUERADE_OPTION, "true") != "false")
                self.dns.add_network(net.id, net.name, str(net.gateway))

    def remove_network(self, ref: str) -> None:
        """Removes a network with no live endpoints: bridge, leases, firewall rules, names
        (and the resolver with the last network). Endpoints whose namespace is gone are
        cleaned up first."""
        net = self.get(ref)
        self._drop_stale(net)
        live = self.endpoints(network=net.id)
        if live:
            names = ", ".join(ep.name or ep.container_id[:12] for ep in live)
            raise Conflict(f"network {net.name!r} has active endpoints ({names}); "
                           "disconnect or remove those containers first")
        self._teardown(net.id, net.bridge)

    def retire(self, ref: str, leaving: Collection[str]) -> bool:
        """Takes down what a network about to be removed has outside the store (names,
        firewall rules, bridge), ahead of `remove_network`, once every container on it is
        one of `leaving` (ids of containers whose processes have ended, on their way out):
        the kernel's ~20-60 ms for the bridge then overlaps with their release instead of
        following it. False (nothing done) when another container is on it. The record
        stays: should the removal not follow, the next connect rebuilds what went (see
        `_repair`)."""
        net = self.get(ref)
        if any(ep.container_id not in leaving for ep in self.endpoints(network=net.id)):
            return False
        self._take_down(net.id, net.bridge)
        self._retired.add(net.id)
        return True

    def _teardown(self, network_id: str, bridge: str) -> None:
        """Names, firewall rules, bridge, and the record last: killed half-way, the record
        is still there (marked unfinished) for the next removal to finish."""
        if network_id not in self._retired:  # (listing the firewall rules again: ~10 ms)
            self._take_down(network_id, bridge)
        self._forget(network_id)

    def _take_down(self, network_id: str, bridge: str) -> None:
        # Independent steps, side by side: the kernel takes ~20-60 ms to delete a bridge
        # (two RCU barriers), nft ~15 ms to drop the rules, the resolver ~15 ms to let the
        # network go. Each is a no-op when done already.
        _side_by_side(lambda: self.dns.remove_network(network_id),
                      lambda: self.egress.remove(network_id),
                      lambda: netdevs.delete_link(bridge))

    def _forget(self, network_id: str) -> None:
        """The network's records: endpoints, the network, its subnet and leases."""
        with self.store.tx() as conn:
            conn.execute("DELETE FROM network_endpoints WHERE network_id = ?", (network_id,))
            conn.execute("DELETE FROM networks WHERE id = ?", (network_id,))
            self.ipam.release_network(network_id)

    def sweep(self) -> builtins.list[str]:
        """Drops names and firewall rules of networks that have no record any more (left by
        removals killed under older versions, which deleted the record first). Returns their
        ids."""
        rows = self.store.query("SELECT network_id FROM dns_networks WHERE network_id NOT IN "
                                "(SELECT id FROM networks)")
        for row in rows:
            self.egress.remove(row["network_id"])
            self.dns.remove_network(row["network_id"])
        return [row["network_id"] for row in rows]

    def prune(self, filters: Mapping[str, Sequence[str]] | None = None) -> builtins.list[str]:
        """Removes every matching network without live endpoints; returns their names."""
        removed = []
        for net in self.list(filters):
            self._drop_stale(net)
            if not self.endpoints(network=net.id):
                self._teardown(net.id, net.bridge)
                removed.append(net.name)
        return removed

    def _drop_stale(self, net: Network) -> None:
        for ep in self.endpoints(network=net.id):
            if not netns.exists(ep.netns):
                self.disconnect(net.id, ep.container_id)

    @contextmanager
    def _host_lock(self) -> Iterator[None]:
        """Serialises subnet choice and bridge creation across engine roots on this host."""
        path = self.layout.run.parent / "networks.lock"
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o711)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)


def _endpoint_id(ep: Endpoint) -> str:
    return sha256.hexdigest(f"{ep.network_id}/{ep.container_id}")


def _matches(net: Network, filters: Mapping[str, Sequence[str]]) -> bool:
    for key, values in filters.items():
        values = [values] if isinstance(values, str) else list(values)
        if not values:
            continue
        if key == "name" and not any(v in net.name for v in values):
            return False
        if key == "id" and not any(net.id.startswith(v) for v in values):
            return False
        if key == "driver" and net.driver not in values:
            return False
        if key == "label":
            for v in values:
                k, sep, want = v.partition("=")
                if k not in net.labels or (sep and net.labels[k] != want):
                    return False
        if key not in ("name", "id", "driver", "label"):
            raise InvalidArgument(f"network filter {key!r} is not supported "
                                  "(expected name, id, driver or label)")
    return True


def _side_by_side(*steps: Callable[[], object]) -> None:
    """Runs the steps at once (the first here, the others in threads), waits for all, and
    raises the first failure."""
    failures: list[BaseException] = []

    def run(step: Callable[[], object]) -> None:
        try:
            step()
        except BaseException as exc:  # re-raised below, in the caller's thread
            failures.append(exc)

    threads = [threading.Thread(target=run, args=(step,), name="shipyard-teardown")
               for step in steps[1:]]
    for thread in threads:
        thread.start()
    run(steps[0])
    for thread in threads:
        thread.join()
    if failures:
        raise failures[0]
