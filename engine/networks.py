"""Bridge networks: records in the store, bridges and veth pairs in the kernel (pyroute2).

A network is a Linux bridge `sy-<hash of id>` carrying the gateway address; an endpoint is a
veth pair whose host end `sy<hash of network and container>` is a port of the bridge and whose
other end is created directly inside the container's network namespace as eth0, eth1, ...
The container's default route goes through the non-internal network with the highest
gw_priority (ties: the first connected). Interface names derive from ids only.

Lifecycle: `create_network` -> `connect`/`disconnect` (any number) -> `remove_network`, which
refuses while endpoints are live. Each step either completes or leaves nothing behind: kernel
objects made before a failure are removed again, and the store changes roll back.
Around each network: `Ipam` (subnet, leases), `Egress` (nftables), `Dns` (names, resolver).

pyroute2 is imported on first use (it costs ~250 ms); the calls are synchronous, so async
callers run them in a worker thread.
"""

from __future__ import annotations

import builtins
import errno
import fcntl
import hashlib
import os
import re
import secrets
import socket
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path
from typing import Any

from engine import netns
from engine.dns import Dns
from engine.egress import Egress
from engine.errors import AlreadyExists, Conflict, Error, InvalidArgument, NotFound, Unavailable
from engine.ipam import DEFAULT_POOLS, Ipam, Pool, SubnetConfig
from engine.layout import Layout
from engine.store import Store, dumps, loads

DEFAULT_NETWORK = "bridge"
MTU_OPTION = "com.docker.network.driver.mtu"
BRIDGE_NAME_OPTION = "com.docker.network.bridge.name"
MASQUERADE_OPTION = "com.docker.network.bridge.enable_ip_masquerade"
NAME_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]*$")
IFNAME_RE = re.compile(r"^[a-zA-Z0-9_.-]{1,15}$")
MAC_RE = re.compile(r"^([0-9a-fA-F]{2}:){5}[0-9a-fA-F]{2}$")

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


def bridge_name(network_id: str) -> str:
    return "sy-" + hashlib.sha256(network_id.encode()).hexdigest()[:12]


def veth_name(network_id: str, container_id: str) -> str:
    return "sy" + hashlib.sha256(f"{network_id}/{container_id}".encode()).hexdigest()[:13]


def mac_for(ip: IPv4Address) -> str:
    """A locally administered MAC derived from the address (Docker's 02:42:<ip> scheme)."""
    return "02:42:" + ":".join(f"{b:02x}" for b in ip.packed)


def host_networks() -> list[IPv4Network]:
    """Every IPv4 subnet the host already uses: its addresses and its routes (not default)."""
    from pyroute2 import IPRoute

    found: set[IPv4Network] = set()
    with IPRoute() as ipr:
        for msg in ipr.get_addr(family=socket.AF_INET):
            found.add(IPv4Network(f"{msg.get('IFA_ADDRESS')}/{msg['prefixlen']}",
                                  strict=False))
        for msg in ipr.get_routes(family=socket.AF_INET):
            dst = msg.get("RTA_DST")
            if dst and msg["dst_len"] > 0:
                found.add(IPv4Network(f"{dst}/{msg['dst_len']}", strict=False))
    return sorted(found)


def _iproute(path: str | None = None):
    """An IPRoute on the host, or inside the namespace at `path`."""
    from pyroute2 import IPRoute

    if path is None:
        return IPRoute()
    sock = netns.socket_in(path, socket.AF_NETLINK, socket.SOCK_DGRAM, 0)
    return IPRoute(fileno=sock.detach())


def _index(ipr, ifname: str) -> int | None:
    found = ipr.link_lookup(ifname=ifname)
    return found[0] if found else None


def _delete_link(ifname: str) -> None:
    with _iproute() as ipr:
        index = _index(ipr, ifname)
        if index is not None:
            try:
                ipr.link("del", index=index)
            except Exception as exc:  # the peer's namespace may be going away at the same time
                if getattr(exc, "code", None) != errno.ENODEV:
                    raise


def _netlink_error(exc: Exception, what: str) -> Error:
    code = getattr(exc, "code", None)
    message = os.strerror(code) if isinstance(code, int) else str(exc)
    if code == errno.EEXIST:
        return Conflict(f"{what}: {message}")
    if code == errno.EPERM:
        return Unavailable(f"{what}: needs root (CAP_NET_ADMIN)")
    return Unavailable(f"{what}: {message}")


def _parse_mtu(value: object) -> int | None:
    if value is None or value == "":
        return None
    try:
        mtu = int(str(value))
    except ValueError:
        raise InvalidArgument(f"mtu {value!r} is not a number") from None
    if not 68 <= mtu <= 65535:
        raise InvalidArgument(f"mtu {mtu} is out of range (expected 68..65535)")
    return mtu


class Networks:
    """The networks of one engine root."""

    def __init__(self, layout: Layout, store: Store, *, dns: Dns | None = None,
                 egress: Egress | None = None, pools: Sequence[Pool] = DEFAULT_POOLS) -> None:
        self.layout = layout
        self.store = store
        self.ipam = Ipam(store, pools)
        self.dns = dns or Dns(layout, store)
        self.egress = egress or Egress(layout)
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
        mtu = _parse_mtu(opts.get(MTU_OPTION))
        network_id = secrets.token_hex(32)
        bridge = opts.get(BRIDGE_NAME_OPTION) or bridge_name(network_id)
        if not IFNAME_RE.match(bridge):
            raise InvalidArgument(f"bridge name {bridge!r} is not valid (at most 15 of "
                                  "[a-zA-Z0-9_.-])")
        created = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        with self._host_lock(), self.store.tx() as conn:
            if conn.execute("SELECT 1 FROM networks WHERE name = ?", (name,)).fetchone():
                raise AlreadyExists(f"network {name!r} already exists")
            config = self.ipam.reserve(network_id, name, subnet=subnet, gateway=gateway,
                                       ip_range=ip_range,
                                       host_networks=() if subnet else host_networks())
            conn.execute("INSERT INTO networks VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                         (network_id, name, "bridge", created, int(internal), int(attachable),
                          dumps(dict(labels or {})), dumps(opts), bridge, mtu))
            _make_bridge(bridge, config, mtu)  # last: the transaction commits right after
        try:
            self.egress.add(network_id, bridge, config.subnet, internal=internal,
                            masquerade=opts.get(MASQUERADE_OPTION, "true") != "false")
            self.dns.add_network(network_id, name, str(config.gateway))
        except BaseException:
            self._teardown(network_id, bridge)
            raise
        return self.get(network_id)

    def _restore(self, net: Network) -> None:
        """Brings back the kernel side of a recorded network whose bridge is gone (the host
        rebooted, or someone deleted it): bridge, firewall rules, resolver."""
        with self._host_lock():
            if not Path(f"/sys/class/net/{net.bridge}").exists():
                _make_bridge(net.bridge, self.ipam.config(net.id), net.mtu)
        self.egress.remove(net.id)
        self.egress.add(net.id, net.bridge, net.subnet, internal=net.internal,
                        masquerade=net.options.get(MASQUERADE_OPTION, "true") != "false")
        self.dns.publish()

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

    def _teardown(self, network_id: str, bridge: str) -> None:
        _delete_link(bridge)
        with self.store.tx() as conn:
            conn.execute("DELETE FROM network_endpoints WHERE network_id = ?", (network_id,))
            conn.execute("DELETE FROM networks WHERE id = ?", (network_id,))
            self.ipam.release_network(network_id)
        self.egress.remove(network_id)
        self.dns.remove_network(network_id)

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

    # ------------------------------------------------------------------ endpoints

    def connect(self, network: str, container_id: str, netns_path: str | os.PathLike[str], *,
                container_name: str = "", aliases: Sequence[str] = (),
                ipv4_address: str | None = None,
                mac_address: str | None = None, mtu: int | None = None, gw_priority: int = 0,
                dns_names: Sequence[str] = (), links: Mapping[str, str] | None = None,
                dns: Sequence[str] = ()) -> Endpoint:
        """Attaches the namespace at `netns_path` to the network: a veth pair (eth<N> inside),
        an address leased from the network (or `ipv4_address`), lo up, the default route,
        and DNS names (`container_name`, `aliases`, `dns_names` such as the service name and
        hostname, the short id; `links` maps alias -> target name, seen by this container
        only; `dns` are its own upstream servers)."""
        name = container_name
        net = self.get(network)
        path = os.fspath(netns_path)
        if not netns.exists(path):
            raise NotFound(f"network namespace {path} does not exist")
        if mac_address and not MAC_RE.match(mac_address):
            raise InvalidArgument(f"mac_address {mac_address!r} is not valid "
                                  "(expected xx:xx:xx:xx:xx:xx)")
        mtu = _parse_mtu(mtu) or net.mtu
        if not Path(f"/sys/class/net/{net.bridge}").exists():
            self._restore(net)
        label = name or container_id[:12]
        ip, config = self.ipam.lease(net.id, container_id, ipv4_address, holder_label=label)
        host_if = veth_name(net.id, container_id)
        mac = (mac_address or mac_for(ip)).lower()
        try:
            ifname = _plug(path, net.bridge, host_if, ip, config, mac, mtu)
            with self.store.tx() as conn:
                conn.execute(
                    "INSERT INTO network_endpoints (network_id, container_id, name, netns, "
                    "ifname, host_ifname, ipv4, mac, aliases, gw_priority) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (net.id, container_id, name, path, ifname, host_if, str(ip), mac,
                     dumps(list(aliases)), int(gw_priority)))
            self._route(path)
            names = [name, *aliases, *dns_names, container_id[:12]]
            self.dns.register(net.id, container_id, names, str(ip), links=links, upstreams=dns)
        except BaseException:
            self._unplug(net.id, container_id, host_if, path)
            raise
        return next(ep for ep in self.endpoints(network=net.id, container_id=container_id))

    def disconnect(self, network: str, container_id: str, *, force: bool = False) -> None:
        """Detaches the container from the network: names, veth, lease. With `force`, not
        being connected is not an error."""
        net = self.get(network)
        rows = self.store.query("SELECT * FROM network_endpoints WHERE network_id = ? AND "
                                "container_id = ?", (net.id, container_id))
        if not rows:
            if force:
                return
            raise NotFound(f"container {container_id[:12]} is not connected to network "
                           f"{net.name!r}")
        self._unplug(net.id, container_id, rows[0]["host_ifname"], rows[0]["netns"])

    def disconnect_all(self, container_id: str) -> None:
        """Detaches the container from every network (container removal)."""
        for ep in self.endpoints(container_id=container_id):
            self._unplug(ep.network_id, container_id, ep.host_ifname, ep.netns)

    def _unplug(self, network_id: str, container_id: str, host_if: str, path: str) -> None:
        self.dns.unregister(network_id, container_id)
        _delete_link(host_if)  # takes the peer inside the namespace with it
        with self.store.tx() as conn:
            conn.execute("DELETE FROM network_endpoints WHERE network_id = ? AND "
                         "container_id = ?", (network_id, container_id))
            self.ipam.release(network_id, container_id)
        if netns.exists(path):
            self._route(path)

    def _route(self, path: str) -> None:
        """Points the namespace's default route at its best non-internal network."""
        rows = self.store.query(
            "SELECT e.ifname, e.network_id FROM network_endpoints e JOIN networks n "
            "ON n.id = e.network_id WHERE e.netns = ? AND n.internal = 0 "
            "ORDER BY e.gw_priority DESC, e.seq", (path,))
        with _iproute(path) as ipr:
            if not rows:
                try:
                    ipr.route("del", dst="0.0.0.0/0")
                except Exception as exc:
                    if getattr(exc, "code", None) not in (errno.ESRCH, errno.ENOENT):
                        raise _netlink_error(exc, "removing the default route") from None
                return
            best = rows[0]
            gateway = self.ipam.config(best["network_id"]).gateway
            index = _index(ipr, best["ifname"])
            try:
                ipr.route("replace", dst="0.0.0.0/0", gateway=str(gateway), oif=index)
            except Exception as exc:
                raise _netlink_error(exc, f"default route via {gateway}") from None


# ---------------------------------------------------------------------- kernel steps

def _make_bridge(bridge: str, config: SubnetConfig, mtu: int | None) -> None:
    with _iproute() as ipr:
        if _index(ipr, bridge) is not None:
            raise Conflict(f"a network interface named {bridge!r} already exists")
        try:
            # A fixed MAC: otherwise the bridge takes the lowest MAC of its ports, which
            # changes as containers come and go and leaves stale ARP entries for the gateway.
            ipr.link("add", ifname=bridge, kind="bridge", address=mac_for(config.gateway),
                     **({"mtu": mtu} if mtu else {}))
        except Exception as exc:
            raise _netlink_error(exc, f"creating bridge {bridge}") from None
        try:
            index = _index(ipr, bridge)
            ipr.addr("add", index=index, address=str(config.gateway),
                     prefixlen=config.subnet.prefixlen)
            ipr.link("set", index=index, state="up")
        except Exception as exc:
            ipr.link("del", ifname=bridge)
            raise _netlink_error(exc, f"configuring bridge {bridge}") from None


def _plug(path: str, bridge: str, host_if: str, ip: IPv4Address, config: SubnetConfig,
          mac: str, mtu: int | None) -> str:
    """Creates the veth pair with its inner end already in the namespace and configures both
    ends; returns the inner interface name."""
    with _iproute(path) as inner:
        taken = {link.get("IFLA_IFNAME") for link in inner.get_links()}
        ifname = next(f"eth{n}" for n in range(len(taken) + 1) if f"eth{n}" not in taken)
        extra = {"mtu": mtu} if mtu else {}
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        with _iproute() as ipr:
            bridge_index = _index(ipr, bridge)
            if bridge_index is None:
                raise Unavailable(f"bridge {bridge} is missing (remove and recreate the network)")
            try:
                ipr.link("add", ifname=host_if, kind="veth", **extra,
                         peer={"ifname": ifname, "net_ns_fd": fd, "address": mac, **extra})
            except Exception as exc:
                raise _netlink_error(exc, f"creating veth {host_if}") from None
            finally:
                os.close(fd)
            try:
                ipr.link("set", index=_index(ipr, host_if), master=bridge_index, state="up")
            except Exception as exc:
                raise _netlink_error(exc, f"attaching {host_if} to {bridge}") from None
        try:
            index = _index(inner, ifname)
            inner.addr("add", index=index, address=str(ip), prefixlen=config.subnet.prefixlen)
            inner.link("set", index=index, state="up")
            inner.link("set", index=_index(inner, "lo"), state="up")
        except Exception as exc:
            raise _netlink_error(exc, f"configuring {ifname}") from None
    return ifname


def _endpoint_id(ep: Endpoint) -> str:
    return hashlib.sha256(f"{ep.network_id}/{ep.container_id}".encode()).hexdigest()


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
