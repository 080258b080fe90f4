"""A network's endpoints: a container's network namespace attached to a bridge network by
a veth pair (its host end a port of the bridge, the other end created inside the namespace
as eth0, eth1, ...), with a leased address, its default route, and its DNS names.

`Endpoints` is a mixin of `engine.networks.Networks`, which provides the records (`get`,
`endpoints`), `store`, `ipam`, `dns` and `_repair` (a network whose creation did not finish,
or whose bridge is gone, is brought back before a connect). `connect` and `disconnect_all`
first drop whatever a killed earlier attempt left for the container (its lease, endpoint
row, names, host veth); `_unplug`'s steps are each idempotent.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from engine import netdevs, netns
from engine.errors import AlreadyExists, InvalidArgument, NotFound
from engine.netdevs import mac_for, veth_name
from engine.rtnl import Rtnl
from engine.store import dumps

if TYPE_CHECKING:
    from engine.dns import Dns
    from engine.ipam import Ipam
    from engine.networks import Endpoint, Network
    from engine.store import Store

MAC_RE = re.compile(r"^([0-9a-fA-F]{2}:){5}[0-9a-fA-F]{2}$")


class Endpoints:
    """Connecting containers to networks and disconnecting them (see the module)."""

    store: Store
    ipam: Ipam
    dns: Dns

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
        mtu = parse_mtu(mtu) or net.mtu
        self._repair(net)
        host_if = veth_name(net.id, container_id)
        self._drop_leftovers(net, container_id, path)
        label = name or container_id[:12]
        ip, config = self.ipam.lease(net.id, container_id, ipv4_address, holder_label=label)
        mac = (mac_address or mac_for(ip)).lower()
        try:
            with netdevs.rtnl(path) as inside:  # one client in the namespace for both steps
                ifname = netdevs.plug(path, net.bridge, host_if, ip, config, mac, mtu, inside)
                names = [name, *aliases, *dns_names, container_id[:12]]
                # One transaction for the endpoint and its names (fewer writers queueing for
                # the database); the publish waits until it has committed.
                with self.dns.batch(), self.store.tx() as conn:
                    conn.execute(
                        "INSERT INTO network_endpoints (network_id, container_id, name, netns, "
                        "ifname, host_ifname, ipv4, mac, aliases, gw_priority) "
                        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        (net.id, container_id, name, path, ifname, host_if, str(ip), mac,
                         dumps(list(aliases)), int(gw_priority)))
                    self.dns.register(net.id, container_id, names, str(ip), links=links,
                                      upstreams=dns)
                self._route(path, inside)
        except BaseException:
            self._unplug(net.id, container_id, host_if, path)
            raise
        from engine.networks import Endpoint  # (networks imports this module)

        # What `endpoints()` would read back, without reading it back (two network records
        # and a row: ~0.7 ms of `up`'s interpreter lock per container).
        return Endpoint(net.id, net.name, container_id, name, path, ifname, host_if, ip,
                        config.subnet.prefixlen, mac, config.gateway, tuple(aliases),
                        int(gw_priority), net.internal)

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

    def disconnect_all(self, container_id: str, *, namespace_released: bool = False) -> None:
        """Detaches the container from every network (container release and removal),
        including what a connect killed half-way left: a lease, names, a host veth.
        `namespace_released`: the caller released the container's namespace, so the kernel
        takes the host veths with it; they are awaited rather than deleted (see
        netdevs.await_gone; `down` of 20: 20 deletions queue ~200 ms on the RTNL lock)."""
        held = {r["network_id"] for r in self.store.query(
            "SELECT network_id FROM network_endpoints WHERE container_id = ? UNION "
            "SELECT network_id FROM ipam_leases WHERE holder = ? UNION "
            "SELECT network_id FROM dns_endpoints WHERE container_id = ?",
            (container_id, container_id, container_id))}
        for network_id in held:
            rows = self.store.query("SELECT host_ifname FROM network_endpoints WHERE "
                                    "network_id = ? AND container_id = ?",
                                    (network_id, container_id))
            host_if = rows[0]["host_ifname"] if rows else veth_name(network_id, container_id)
            # No re-routing: every endpoint of the namespace goes, and routes die with links.
            # Nor waiting for the resolver to drop the names: the container is going away.
            # Once one veth outlived the wait, something keeps the namespace alive: the
            # others are deleted at once, not awaited a second each.
            namespace_released = self._unplug(network_id, container_id, host_if, None,
                                              wait=False, dying=namespace_released)

    def _drop_leftovers(self, net: Network, container_id: str, path: str) -> None:
        """Before a connect: what an earlier connect of this container to `net` left. A live
        endpoint in the same namespace is a real double connect (AlreadyExists)."""
        rows = self.store.query("SELECT * FROM network_endpoints WHERE network_id = ? AND "
                                "container_id = ?", (net.id, container_id))
        if rows:
            if rows[0]["netns"] == path and netns.exists(path):
                raise AlreadyExists(f"container {container_id[:12]} is already connected to "
                                    f"network {net.name!r}")
            old = rows[0]["netns"]
            self._unplug(net.id, container_id, rows[0]["host_ifname"],
                         old if netns.exists(old) else None)
            return
        host_if = veth_name(net.id, container_id)
        partial = Path(f"/sys/class/net/{host_if}").exists() or self.store.query(
            "SELECT 1 FROM ipam_leases WHERE network_id = ? AND holder = ? UNION "
            "SELECT 1 FROM dns_endpoints WHERE network_id = ? AND container_id = ?",
            (net.id, container_id, net.id, container_id))
        if partial:
            self._unplug(net.id, container_id, host_if, None)

    def _unplug(self, network_id: str, container_id: str, host_if: str,
                reroute: str | None, *, wait: bool = True, dying: bool = False) -> bool:
        """Veth, then names, endpoint row and lease in one transaction (each step
        idempotent); then the default route of the namespace at `reroute`, when it lives on.
        `wait`: for the resolver to drop the names (`Dns.unregister`). `dying`: the veth's
        namespace was released, the kernel is taking the veth. Returns whether the kernel
        did (False when not `dying`)."""
        if dying:
            dying = netdevs.await_gone(host_if)
        else:
            netdevs.delete_link(host_if)  # takes the peer inside the namespace with it
        with self.dns.batch(), self.store.tx() as conn:
            self.dns.unregister(network_id, container_id, wait=wait)
            conn.execute("DELETE FROM network_endpoints WHERE network_id = ? AND "
                         "container_id = ?", (network_id, container_id))
            self.ipam.release(network_id, container_id)
        if reroute is not None and netns.exists(reroute):
            self._route(reroute)
        return dying

    def _route(self, path: str, inside: Rtnl | None = None) -> None:
        """Points the namespace's default route at its best non-internal network (through
        `inside`, a client in that namespace, when the caller has one)."""
        rows = self.store.query(
            "SELECT e.ifname, e.network_id FROM network_endpoints e JOIN networks n "
            "ON n.id = e.network_id WHERE e.netns = ? AND n.internal = 0 "
            "ORDER BY e.gw_priority DESC, e.seq", (path,))
        with contextlib.nullcontext(inside) if inside is not None else \
                netdevs.rtnl(path) as rt:
            if not rows:
                try:
                    rt.delete_default_route()
                except OSError as exc:
                    raise netdevs.netlink_error(exc, "removing the default route") from None
                return
            best = rows[0]
            gateway = self.ipam.config(best["network_id"]).gateway
            try:
                index = rt.index(best["ifname"])
                if index is None:
                    raise OSError(errno.ENODEV, f"{best['ifname']} is missing")
                rt.replace_default_route(gateway, index)
            except OSError as exc:
                raise netdevs.netlink_error(exc, f"default route via {gateway}") from None


def parse_mtu(value: object) -> int | None:
    """An MTU option's value (None when unset); InvalidArgument unless 68..65535."""
    if value is None or value == "":
        return None
    try:
        mtu = int(str(value))
    except ValueError:
        raise InvalidArgument(f"mtu {value!r} is not a number") from None
    if not 68 <= mtu <= 65535:
        raise InvalidArgument(f"mtu {mtu} is out of range (expected 68..65535)")
    return mtu
