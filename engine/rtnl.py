"""A small rtnetlink client: just the link, address and route requests the engine makes.

pyroute2 costs ~250 ms to import, which every `up` and `down` paid (bridge creation, veth
removal). These few requests are plain structs over an AF_NETLINK socket, so they are
written out here (message layouts from the kernel's uapi headers: linux/netlink.h,
linux/rtnetlink.h, linux/if_link.h, linux/veth.h). Errors are `OSError` with the kernel's
errno. A `Rtnl` works in the namespace its socket was created in (see `netns.socket_in`).
"""

from __future__ import annotations

import errno
import os
import socket
import struct
from collections.abc import Iterator
from ipaddress import IPv4Address, IPv4Network

NETLINK_ROUTE = 0
NLMSG_ERROR, NLMSG_DONE = 2, 3
NLM_F_REQUEST, NLM_F_ACK, NLM_F_DUMP = 0x1, 0x4, 0x300
NLM_F_REPLACE, NLM_F_EXCL, NLM_F_CREATE = 0x100, 0x200, 0x400
RTM_NEWLINK, RTM_DELLINK, RTM_GETLINK = 16, 17, 18
RTM_NEWADDR, RTM_GETADDR = 20, 22
RTM_NEWROUTE, RTM_DELROUTE, RTM_GETROUTE = 24, 25, 26
IFLA_ADDRESS, IFLA_IFNAME, IFLA_MTU, IFLA_MASTER = 1, 3, 4, 10
IFLA_LINKINFO, IFLA_NET_NS_FD = 18, 28
IFLA_INFO_KIND, IFLA_INFO_DATA = 1, 2
VETH_INFO_PEER = 1
IFA_ADDRESS, IFA_LOCAL, IFA_BROADCAST = 1, 2, 4
RTA_DST, RTA_OIF, RTA_GATEWAY = 1, 4, 5
IFF_UP = 0x1
RT_TABLE_MAIN, RTPROT_BOOT, RT_SCOPE_UNIVERSE, RTN_UNICAST = 254, 3, 0, 1
NLA_F_NESTED = 0x8000
RTMGRP_LINK = 0x1

_HDR = struct.Struct("=IHHII")          # nlmsghdr
_IFINFO = struct.Struct("=BxHiII")      # ifinfomsg
_IFADDR = struct.Struct("=BBBBI")       # ifaddrmsg
_RTMSG = struct.Struct("=BBBBBBBBI")    # rtmsg
_ATTR = struct.Struct("=HH")            # rtattr


def _align(n: int) -> int:
    return (n + 3) & ~3


def attr(kind: int, payload: bytes) -> bytes:
    data = _ATTR.pack(_ATTR.size + len(payload), kind) + payload
    return data + b"\0" * (_align(len(data)) - len(data))


def _str(kind: int, text: str) -> bytes:
    return attr(kind, text.encode() + b"\0")


def _u32(kind: int, value: int) -> bytes:
    return attr(kind, struct.pack("=I", value))


def _mac(text: str) -> bytes:
    return bytes(int(part, 16) for part in text.split(":"))


def parse_attrs(data: bytes) -> dict[int, bytes]:
    """Top-level attributes of a message body (the last of a repeated type wins)."""
    out: dict[int, bytes] = {}
    offset = 0
    while offset + _ATTR.size <= len(data):
        length, kind = _ATTR.unpack_from(data, offset)
        if length < _ATTR.size:
            break
        out[kind & ~NLA_F_NESTED] = data[offset + _ATTR.size:offset + length]
        offset += _align(length)
    return out


class Rtnl:
    """One NETLINK_ROUTE socket; requests are sent and answered one at a time."""

    def __init__(self, sock: socket.socket | None = None) -> None:
        self.sock = sock or socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC,
                                          NETLINK_ROUTE)
        self.sock.bind((0, 0))
        self._seq = 0

    def __enter__(self) -> Rtnl:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.sock.close()

    # ---- transport

    def _send(self, kind: int, flags: int, body: bytes) -> int:
        self._seq += 1
        self.sock.send(_HDR.pack(_HDR.size + len(body), kind, flags | NLM_F_REQUEST,
                                 self._seq, 0) + body)
        return self._seq

    def _replies(self, seq: int) -> Iterator[tuple[int, bytes]]:
        """(type, body) of each answer to `seq` until DONE or the ACK; raises its error."""
        while True:
            data = self.sock.recv(1 << 16)
            offset = 0
            while offset + _HDR.size <= len(data):
                length, kind, _flags, got, _pid = _HDR.unpack_from(data, offset)
                body = data[offset + _HDR.size:offset + length]
                offset += _align(length)
                if got != seq:
                    continue
                if kind == NLMSG_DONE:
                    return
                if kind == NLMSG_ERROR:
                    code = -struct.unpack_from("=i", body)[0]
                    if code:
                        raise OSError(code, os.strerror(code))
                    return
                yield kind, body

    def request(self, kind: int, body: bytes, flags: int = 0) -> None:
        for _ in self._replies(self._send(kind, flags | NLM_F_ACK, body)):
            pass

    def dump(self, kind: int, body: bytes) -> list[bytes]:
        return [b for _, b in self._replies(self._send(kind, NLM_F_DUMP, body))]

    # ---- links

    def links(self) -> dict[str, int]:
        """name -> index of every link."""
        out = {}
        for body in self.dump(RTM_GETLINK, _IFINFO.pack(0, 0, 0, 0, 0)):
            index = _IFINFO.unpack_from(body)[2]
            attrs = parse_attrs(body[_IFINFO.size:])
            if IFLA_IFNAME in attrs:
                out[attrs[IFLA_IFNAME].rstrip(b"\0").decode()] = index
        return out

    def index(self, name: str) -> int | None:
        try:
            for _, body in self._replies(self._send(
                    RTM_GETLINK, 0, _IFINFO.pack(0, 0, 0, 0, 0) + _str(IFLA_IFNAME, name))):
                return _IFINFO.unpack_from(body)[2]
        except OSError as exc:
            if exc.errno in (errno.ENODEV, errno.ENOENT):
                return None
            raise
        return None

    def add_bridge(self, name: str, mac: str, mtu: int | None = None) -> None:
        attrs = _str(IFLA_IFNAME, name) + attr(IFLA_ADDRESS, _mac(mac))
        if mtu:
            attrs += _u32(IFLA_MTU, mtu)
        attrs += attr(IFLA_LINKINFO | NLA_F_NESTED, _str(IFLA_INFO_KIND, "bridge"))
        self.request(RTM_NEWLINK, _IFINFO.pack(0, 0, 0, 0, 0) + attrs,
                     NLM_F_CREATE | NLM_F_EXCL)

    def add_veth(self, name: str, peer: str, peer_netns_fd: int, peer_mac: str,
                 mtu: int | None = None, master: int = 0) -> None:
        """A veth pair: `name` here, up and attached to the bridge of index `master` (when
        not 0) from the start; `peer` created directly in the namespace of the fd."""
        mtu_attr = _u32(IFLA_MTU, mtu) if mtu else b""
        peer_msg = (_IFINFO.pack(0, 0, 0, 0, 0) + _str(IFLA_IFNAME, peer)
                    + attr(IFLA_ADDRESS, _mac(peer_mac)) + mtu_attr
                    + _u32(IFLA_NET_NS_FD, peer_netns_fd))
        info = _str(IFLA_INFO_KIND, "veth") + attr(
            IFLA_INFO_DATA | NLA_F_NESTED, attr(VETH_INFO_PEER, peer_msg))
        master_attr = _u32(IFLA_MASTER, master) if master else b""
        self.request(RTM_NEWLINK, _IFINFO.pack(0, 0, 0, IFF_UP, IFF_UP) + _str(IFLA_IFNAME, name)
                     + mtu_attr + master_attr + attr(IFLA_LINKINFO | NLA_F_NESTED, info),
                     NLM_F_CREATE | NLM_F_EXCL)

    def set_link(self, index: int, *, up: bool = True, master: int | None = None) -> None:
        attrs = _u32(IFLA_MASTER, master) if master is not None else b""
        self.request(RTM_NEWLINK, _IFINFO.pack(0, 0, index, IFF_UP if up else 0, IFF_UP)
                     + attrs)

    def delete_link(self, name: str) -> bool:
        """Deletes the link by name; False when there is none."""
        try:
            self.request(RTM_DELLINK, _IFINFO.pack(0, 0, 0, 0, 0) + _str(IFLA_IFNAME, name))
        except OSError as exc:
            if exc.errno in (errno.ENODEV, errno.ENOENT):
                return False
            raise
        return True

    # ---- addresses and routes

    def add_address(self, index: int, address: IPv4Address, prefixlen: int) -> None:
        net = IPv4Network(f"{address}/{prefixlen}", strict=False)
        attrs = attr(IFA_LOCAL, address.packed) + attr(IFA_ADDRESS, address.packed)
        if prefixlen < 31:
            attrs += attr(IFA_BROADCAST, net.broadcast_address.packed)
        self.request(RTM_NEWADDR, _IFADDR.pack(socket.AF_INET, prefixlen, 0, 0, index) + attrs,
                     NLM_F_CREATE | NLM_F_EXCL)

    def _default_route(self, extra: bytes = b"") -> bytes:
        return _RTMSG.pack(socket.AF_INET, 0, 0, 0, RT_TABLE_MAIN, RTPROT_BOOT,
                           RT_SCOPE_UNIVERSE, RTN_UNICAST, 0) + extra

    def replace_default_route(self, gateway: IPv4Address, oif: int) -> None:
        self.request(RTM_NEWROUTE, self._default_route(
            attr(RTA_GATEWAY, gateway.packed) + _u32(RTA_OIF, oif)),
            NLM_F_CREATE | NLM_F_REPLACE)

    def delete_default_route(self) -> bool:
        """False when there is none."""
        try:
            self.request(RTM_DELROUTE, self._default_route())
        except OSError as exc:
            if exc.errno in (errno.ESRCH, errno.ENOENT):
                return False
            raise
        return True

    def ipv4_networks(self) -> set[IPv4Network]:
        """Every IPv4 subnet of an address here, and every route's destination (not default)."""
        found: set[IPv4Network] = set()
        for body in self.dump(RTM_GETADDR, _IFADDR.pack(socket.AF_INET, 0, 0, 0, 0)):
            family, prefixlen = body[0], body[1]
            attrs = parse_attrs(body[_IFADDR.size:])
            raw = attrs.get(IFA_ADDRESS) or attrs.get(IFA_LOCAL)
            if family == socket.AF_INET and raw and len(raw) == 4:
                found.add(IPv4Network(f"{IPv4Address(raw)}/{prefixlen}", strict=False))
        for body in self.dump(RTM_GETROUTE, _RTMSG.pack(socket.AF_INET, 0, 0, 0, 0, 0, 0, 0,
                                                        0)):
            family, dst_len = body[0], body[1]
            raw = parse_attrs(body[_RTMSG.size:]).get(RTA_DST)
            if family == socket.AF_INET and raw and dst_len > 0:
                found.add(IPv4Network(f"{IPv4Address(raw)}/{dst_len}", strict=False))
        return found


def link_monitor() -> socket.socket:
    """A socket on which the kernel announces every link made, changed or deleted in this
    namespace (`deleted_links` reads the deletions). Its buffer holds ~1 MiB of them; on
    overflow a recv raises ENOBUFS (announcements were lost)."""
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC,
                         NETLINK_ROUTE)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    sock.bind((0, RTMGRP_LINK))
    return sock


def deleted_links(data: bytes) -> list[str]:
    """The names of the links whose deletion the announcements in `data` tell of."""
    out = []
    offset = 0
    while offset + _HDR.size <= len(data):
        length, kind, _flags, _seq, _pid = _HDR.unpack_from(data, offset)
        if length < _HDR.size:
            break
        if kind == RTM_DELLINK:
            name = parse_attrs(data[offset + _HDR.size + _IFINFO.size:offset + length]
                               ).get(IFLA_IFNAME)
            if name:
                out.append(os.fsdecode(name.rstrip(b"\0")))  # (any bytes but / and blanks)
        offset += _align(length)
    return out
