"""The kernel side of bridge networks: interface names, and the netlink steps that make and
delete bridges and veth pairs (through the small `engine.rtnl` client; pyroute2 costs
~250 ms to import). Records, leases and locking are `engine.networks`' business.

Names derive from ids only: a bridge is `sy-<hash of network id>`, the host end of an
endpoint's veth `sy<hash of network and container>`, so a name can always be recomputed
to find what a killed command left.
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket
import threading
import time
from ipaddress import IPv4Address, IPv4Network

from engine import netns, sha256
from engine.errors import Conflict, Error, Unavailable
from engine.ipam import SubnetConfig
from engine.rtnl import Rtnl, deleted_links, link_monitor


def bridge_name(network_id: str) -> str:
    return "sy-" + sha256.hexdigest(network_id)[:12]


def veth_name(network_id: str, container_id: str) -> str:
    return "sy" + sha256.hexdigest(f"{network_id}/{container_id}")[:13]


def mac_for(ip: IPv4Address) -> str:
    """A locally administered MAC derived from the address (Docker's 02:42:<ip> scheme)."""
    return "02:42:" + ":".join(f"{b:02x}" for b in ip.packed)


def host_networks() -> list[IPv4Network]:
    """Every IPv4 subnet the host already uses: its addresses and its routes (not default)."""
    with Rtnl() as rt:
        return sorted(rt.ipv4_networks())


def rtnl(path: str | None = None) -> Rtnl:
    """A netlink client on the host, or inside the namespace at `path`."""
    if path is None:
        return Rtnl()
    return Rtnl(netns.socket_in(path, socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC,
                                0))


def delete_link(ifname: str) -> None:
    """Deletes a host link by name (idempotent; also when its peer's namespace is going away
    at the same time)."""
    if not os.path.exists(f"/sys/class/net/{ifname}"):
        return  # gone already (a repeated or resumed release): no netlink round trip
    try:
        with rtnl() as rt:
            rt.delete_link(ifname)
    except OSError as exc:
        raise netlink_error(exc, f"deleting {ifname}") from None


def await_gone(ifname: str, timeout: float = 1.0) -> bool:
    """Waits for the kernel to take a host veth whose peer's namespace was just released
    (it unregisters the devices of dying namespaces in one batch, ~5 ms; deleting a veth
    by hand waits ~20 ms for RCU, and 20 of them queue on the RTNL lock). Deletes it after
    `timeout` seconds: something else keeps that namespace alive. False in that case."""
    if not os.path.exists(f"/sys/class/net/{ifname}") or _watch.wait(ifname, timeout):
        return True
    delete_link(ifname)
    return False


class _GoneWatch:
    """One thread that hears the kernel announce link deletions (rtnetlink) and wakes the
    steps awaiting those veths, however many they are. No polling: looking at sysfs every
    2 ms for each awaited name (a stat of ~30 us each, and a wake-up for the interpreter
    lock) cost ~35 ms of CPU per second of waiting for a name, on a machine whose two CPUs
    `down` keeps busy. (Still, every 0.1 s, a look at sysfs for the awaited names: for an
    announcement lost to an overflow, or sent a moment before the subscription while the
    sysfs entry, removed just after it, was still there; and, with no netlink socket to be
    had, out of descriptors say, only that.)"""

    LOOK_EVERY = 0.1

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.waiting: dict[str, list[threading.Event]] = {}
        self.running = False
        self.monitor: socket.socket | None = None  # the watching thread's, if it has one

    def wait(self, ifname: str, timeout: float) -> bool:
        """Whether `ifname` went within `timeout` seconds (without a thread to watch, it
        is looked at once, and else given up on after `timeout`)."""
        gone = threading.Event()
        with self.lock:
            self.waiting.setdefault(ifname, []).append(gone)
            if not self.running:
                self.running = self._start()
        # Listening already: a deletion after this look is heard, one before it is seen.
        if not os.path.exists(f"/sys/class/net/{ifname}"):
            self._gone([ifname])
        if gone.wait(timeout):
            return True
        with self.lock:
            events = self.waiting.get(ifname, [])
            if gone in events:
                events.remove(gone)
                if not events:
                    del self.waiting[ifname]
        return gone.is_set()

    def _start(self) -> bool:
        """(Under the lock.) Subscribes and starts the watching thread; False if no thread
        can be had."""
        try:
            monitor: socket.socket | None = link_monitor()
        except OSError:
            monitor = None  # (the thread only looks at sysfs then)
        try:
            threading.Thread(target=self._watch, args=(monitor,), name="veth-watch",
                             daemon=True).start()
        except RuntimeError:  # can't start new thread
            if monitor is not None:
                monitor.close()
            return False
        self.monitor = monitor
        return True

    def _watch(self, monitor: socket.socket | None) -> None:
        try:
            self._watch_until_idle(monitor)  # (ends with `running` cleared, under the lock)
        except Exception:
            # A bug here: no traceback in the command's output; the waits meanwhile end by
            # their timeout, and the next wait starts another thread.
            with self.lock:
                self.running = False
        finally:
            with self.lock:
                if self.monitor is monitor:
                    self.monitor = None
            if monitor is not None:
                monitor.close()

    def _watch_until_idle(self, monitor: socket.socket | None) -> None:
        if monitor is not None:
            monitor.settimeout(self.LOOK_EVERY)
        looked = time.monotonic()
        while True:
            with self.lock:
                if not self.waiting:  # (looked at between announcements, or every 0.1 s)
                    # In the same hold of the lock: a wait after this one starts anew.
                    self.running = False
                    return
                names = list(self.waiting)
            gone: list[str] = []
            if monitor is None:
                time.sleep(self.LOOK_EVERY)
            else:
                try:
                    gone = deleted_links(monitor.recv(1 << 16))
                except TimeoutError:
                    pass
                except OSError:  # ENOBUFS: some announcements were lost
                    looked = 0.0
            if time.monotonic() - looked >= self.LOOK_EVERY:
                looked = time.monotonic()
                gone += [name for name in names if not os.path.exists(f"/sys/class/net/{name}")]
            self._gone(gone)

    def _gone(self, names: list[str]) -> None:
        with self.lock:
            for name in names:
                for event in self.waiting.pop(name, ()):
                    event.set()

    def after_fork(self) -> None:
        """In a forked child: the watching thread is not there, nor should its socket be."""
        if self.monitor is not None:
            self.monitor.close()
            self.monitor = None
        self.lock = threading.Lock()
        self.waiting = {}
        self.running = False


_watch = _GoneWatch()
os.register_at_fork(after_in_child=_watch.after_fork)


def netlink_error(exc: Exception, what: str) -> Error:
    code = getattr(exc, "errno", None)
    message = os.strerror(code) if isinstance(code, int) else str(exc)
    if code == errno.EEXIST:
        return Conflict(f"{what}: {message}")
    if code == errno.EPERM:
        return Unavailable(f"{what}: needs root (CAP_NET_ADMIN)")
    return Unavailable(f"{what}: {message}")


def make_bridge(bridge: str, config: SubnetConfig, mtu: int | None) -> None:
    with rtnl() as rt:
        if rt.index(bridge) is not None:
            raise Conflict(f"a network interface named {bridge!r} already exists")
        try:
            # A fixed MAC: otherwise the bridge takes the lowest MAC of its ports, which
            # changes as containers come and go and leaves stale ARP entries for the gateway.
            rt.add_bridge(bridge, mac_for(config.gateway), mtu)
        except OSError as exc:
            raise netlink_error(exc, f"creating bridge {bridge}") from None
        try:
            index = rt.index(bridge)
            assert index is not None
            rt.add_address(index, config.gateway, config.subnet.prefixlen)
            rt.set_link(index, up=True)
        except OSError as exc:
            rt.delete_link(bridge)
            raise netlink_error(exc, f"configuring bridge {bridge}") from None


def plug(path: str, bridge: str, host_if: str, ip: IPv4Address, config: SubnetConfig,
          mac: str, mtu: int | None, inside: Rtnl | None = None) -> str:
    """Creates the veth pair with its inner end already in the namespace and configures both
    ends; returns the inner interface name. `inside`: a client in that namespace to use
    (making one costs a thread that enters the namespace)."""
    with contextlib.nullcontext(inside) if inside is not None else rtnl(path) as inner:
        taken = inner.links()
        ifname = next(f"eth{n}" for n in range(len(taken) + 1) if f"eth{n}" not in taken)
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        with rtnl() as rt:
            bridge_index = rt.index(bridge)
            if bridge_index is None:
                os.close(fd)
                raise Unavailable(f"bridge {bridge} is missing (remove and recreate the network)")
            try:
                rt.add_veth(host_if, ifname, fd, mac, mtu, bridge_index)
            except OSError as exc:
                raise netlink_error(exc, f"creating veth {host_if} on {bridge}") from None
            finally:
                os.close(fd)
        try:
            index = inner.index(ifname)
            assert index is not None
            inner.add_address(index, ip, config.subnet.prefixlen)
            inner.set_link(index, up=True)
            inner.set_link(taken["lo"], up=True)
        except OSError as exc:
            raise netlink_error(exc, f"configuring {ifname}") from None
    return ifname
