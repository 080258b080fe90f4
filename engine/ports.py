"""Published ports, the host's side: claim each host port before the container starts.

Lifecycle (one container start):
  1. `publish()` (from `prepare.bundle`, once the container has its address) binds and
     listens on every requested host port *in the calling process*, so a port in use is
     refused before anything runs, naming who holds it. Ephemeral ports (host port 0) are
     chosen by the kernel; a range takes its first free port. The actual bindings go to the
     store (table `port_bindings`, for `container port` and for naming a holder) and to
     `ports.json` in the container directory, for the shim.
  2. The shim (engine/runtime/portproxy.py) takes copies of the bound sockets out of this
     process with pidfd_getfd(2) while `launch.start` waits for it, so no other process can
     take a port in between; it serves them until it exits, which frees them.
  3. `close_held()` (after `launch.start`, success or not) closes this process's copies.
  4. `unpublish()` (from `prepare.release`) forgets the bindings.
"""

from __future__ import annotations

import contextlib
import errno
import ipaddress
import json
import os
import socket
from dataclasses import dataclass
from typing import TYPE_CHECKING

from engine.errors import Conflict, InvalidArgument

if TYPE_CHECKING:
    from engine import Engine
    from engine.containers import Container
    from engine.requests import PortBinding

PORTS_FILE = "ports.json"
UDP_IDLE_TIMEOUT_S = 90.0   # a UDP flow with no traffic either way is forgotten after this
LISTEN_BACKLOG = 511

SCHEMA = """
CREATE TABLE IF NOT EXISTS port_bindings (
    container_id TEXT NOT NULL,
    protocol TEXT NOT NULL,
    host_ip TEXT NOT NULL,
    host_port INTEGER NOT NULL,
    container_port INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS port_bindings_by_port ON port_bindings(host_port);
CREATE INDEX IF NOT EXISTS port_bindings_by_container ON port_bindings(container_id)
"""


class PortInUse(Conflict):
    """A host port the container asks for is held by another container or process."""


@dataclass(frozen=True, slots=True)
class Published:
    """One served binding: the host side as bound (host_ip "" = every IPv4 address, "::"
    every IPv6 address: a binding without an address is served on both)."""

    container_port: int
    protocol: str
    host_ip: str
    host_port: int

    @property
    def host(self) -> str:
        """`addr:port` as a user reads it (`0.0.0.0:8080`, `[::1]:8080`)."""
        ip = self.host_ip or "0.0.0.0"
        return f"[{ip}]:{self.host_port}" if ":" in ip else f"{ip}:{self.host_port}"


# Sockets this process bound and holds until the shim has taken its copies.
_held: dict[str, list[socket.socket]] = {}


def check(bindings: tuple[PortBinding, ...]) -> None:
    """Rejects bindings no start could satisfy (bad protocol, port or address)."""
    for b in bindings:
        if b.protocol not in ("tcp", "udp"):
            raise InvalidArgument(f'published port {b.container_port}/{b.protocol}: protocol '
                                  'must be "tcp" or "udp" (sctp is not supported)')
        for port in (b.container_port, b.host_port, b.host_port_end):
            if not 0 <= port <= 65535:
                raise InvalidArgument(f"published port {port} is out of range (0-65535)")
        if b.container_port == 0:
            raise InvalidArgument("published port: the container port must not be 0")
        if b.host_port_end and b.host_port_end < b.host_port:
            raise InvalidArgument(f"published port range {b.host_port}-{b.host_port_end} "
                                  "ends before it starts")
        if b.host_ip:
            try:
                ipaddress.ip_address(b.host_ip.strip("[]"))
            except ValueError:
                raise InvalidArgument(f'published port: "{b.host_ip}" is not an IP address')\
                    from None


def publish(engine: Engine, container: Container, target_ip: str | None) -> list[Published]:
    """Binds the container's published ports here, records them and writes `ports.json`
    for the shim (which forwards to `target_ip`). Raises PortInUse naming the holder, or
    InvalidArgument; on failure nothing stays bound or recorded."""
    bindings = container.request.ports
    unpublish(engine, container)  # leftovers of an earlier run
    if not bindings:
        return []
    mode = container.request.network_mode
    if mode == "host":
        return []  # the container's ports are the host's own (Docker ignores -p here too)
    if target_ip is None:
        raise InvalidArgument(f'container {container.name}: ports cannot be published with '
                              f'network mode "{mode}"')
    check(bindings)
    engine.store.ensure_schema(SCHEMA)
    sockets: list[socket.socket] = []
    out: list[Published] = []
    try:
        for binding in bindings:
            sock, port = _bind(engine, container, binding, out)
            sockets.append(sock)
            out.append(Published(binding.container_port, binding.protocol,
                                 binding.host_ip.strip("[]"), port))
            if not binding.host_ip and (extra := _ipv6_twin(binding.protocol, port)):
                sockets.append(extra)
                out.append(Published(binding.container_port, binding.protocol, "::", port))
        with engine.store.tx() as conn:
            conn.executemany(
                "INSERT INTO port_bindings (container_id, protocol, host_ip, host_port,"
                " container_port) VALUES (?, ?, ?, ?, ?)",
                [(container.id, p.protocol, p.host_ip, p.host_port, p.container_port)
                 for p in out])
        document = {
            "pid": os.getpid(), "target": target_ip, "udp_idle_timeout": UDP_IDLE_TIMEOUT_S,
            "ports": [{"protocol": p.protocol, "fd": s.fileno(), "host": p.host,
                       "container_port": p.container_port} for p, s in zip(out, sockets,
                                                                            strict=True)]}
        path = container.directory / PORTS_FILE
        path.write_text(json.dumps(document))
    except BaseException:
        for sock in sockets:
            sock.close()
        with contextlib.suppress(Exception):
            unpublish(engine, container)
        raise
    _held.setdefault(container.id, []).extend(sockets)
    return out


def close_held(container_id: str) -> None:
    """Closes this process's copies of the container's sockets (the shim has its own)."""
    for sock in _held.pop(container_id, []):
        sock.close()


def unpublish(engine: Engine, container: Container) -> None:
    """Forgets the container's bindings (idempotent). The listeners themselves belong to
    the shim and close when it exits."""
    close_held(container.id)
    with contextlib.suppress(FileNotFoundError):
        (container.directory / PORTS_FILE).unlink()
    engine.store.ensure_schema(SCHEMA)
    # Read first: most containers publish nothing, and a write would queue for the lock.
    if engine.store.query("SELECT 1 FROM port_bindings WHERE container_id = ? LIMIT 1",
                          (container.id,)):
        with engine.store.tx() as conn:
            conn.execute("DELETE FROM port_bindings WHERE container_id = ?", (container.id,))


def published(engine: Engine, container: Container) -> list[Published]:
    """The bindings the container's current run serves (empty when it is not running)."""
    if not engine.containers.state(container).running:
        return []
    engine.store.ensure_schema(SCHEMA)
    rows = engine.store.query(
        "SELECT * FROM port_bindings WHERE container_id = ? ORDER BY rowid", (container.id,))
    return [Published(r["container_port"], r["protocol"], r["host_ip"], r["host_port"])
            for r in rows]


# ---- binding ----------------------------------------------------------------------------

def _bind(engine: Engine, container: Container, binding: PortBinding,
          earlier: list[Published]) -> tuple[socket.socket, int]:
    """A bound (and for TCP listening) socket for the binding, and its actual port."""
    ip = binding.host_ip.strip("[]") or "0.0.0.0"
    first = binding.host_port
    last = binding.host_port_end if binding.host_port_end > first else first
    error: OSError | None = None
    for port in range(first, last + 1):
        try:
            return _socket(binding.protocol, ip, port)
        except OSError as e:
            if e.errno != errno.EADDRINUSE:
                raise _bind_error(binding, ip, port, e) from None
            error = e
    assert error is not None
    shown = Published(binding.container_port, binding.protocol, binding.host_ip.strip("[]"),
                      first)
    what = shown.host if last == first else f"{shown.host}-{last}"
    what += "/udp" if binding.protocol == "udp" else ""
    plural = "port range" if last != first else "port"
    if any(_overlaps(p, binding.protocol, ip, port) for p in earlier
           for port in range(first, last + 1)):
        raise InvalidArgument(f"{plural} {what} is published twice by container "
                              f"{container.name}")
    raise PortInUse(f"{plural} {what} is already in use "
                    f"({_holder(engine, container, binding.protocol, ip, first, last)})")


def _ipv6_twin(protocol: str, port: int) -> socket.socket | None:
    """A port published without an address is also served on IPv6's `[::]`, as Docker does
    (clients that resolve `localhost` to ::1 first reach it too); None when this host has
    no IPv6, or something else holds that port there (the IPv4 side still serves)."""
    try:
        return _socket(protocol, "::", port)[0]
    except OSError:
        return None


def _socket(protocol: str, ip: str, port: int) -> tuple[socket.socket, int]:
    family = socket.AF_INET6 if ":" in ip else socket.AF_INET
    kind = socket.SOCK_STREAM if protocol == "tcp" else socket.SOCK_DGRAM
    sock = socket.socket(family, kind)
    try:
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        if kind == socket.SOCK_STREAM:
            # Lets a restarted container take back its port while old connections sit in
            # TIME_WAIT; a live listener on the port still makes bind fail.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((ip, port))
        if kind == socket.SOCK_STREAM:
            sock.listen(LISTEN_BACKLOG)
        sock.setblocking(False)
        return sock, sock.getsockname()[1]
    except BaseException:
        sock.close()
        raise


def _bind_error(binding: PortBinding, ip: str, port: int, e: OSError) -> InvalidArgument:
    host = Published(binding.container_port, binding.protocol, binding.host_ip, port).host
    if e.errno == errno.EADDRNOTAVAIL:
        return InvalidArgument(f"cannot publish on {host}: {ip} is not an address of this "
                               "host")
    return InvalidArgument(f"cannot publish on {host}: {e.strerror or e}")


def _overlaps(p: Published, protocol: str, ip: str, port: int) -> bool:
    """Whether binding `ip` (never "") collides with `p`: IPv6 sockets are V6ONLY (see
    `_socket`), so a binding only collides with one of its own family."""
    theirs = p.host_ip or "0.0.0.0"
    wild = ("0.0.0.0", "::")
    return (p.protocol == protocol and p.host_port == port
            and (":" in theirs) == (":" in ip)
            and (theirs in wild or ip in wild or theirs == ip))


def _holder(engine: Engine, me: Container, protocol: str, ip: str, first: int,
            last: int) -> str:
    """"by container X" (or 'by project "p", container X') when one of ours serves the port
    now, else "by another process"."""
    from engine.errors import NotFound

    engine.store.ensure_schema(SCHEMA)
    rows = engine.store.query(
        "SELECT * FROM port_bindings WHERE protocol = ? AND host_port BETWEEN ? AND ?"
        " AND container_id != ?", (protocol, first, last, me.id))
    for row in rows:
        p = Published(row["container_port"], protocol, row["host_ip"], row["host_port"])
        if not _overlaps(p, protocol, ip, row["host_port"]):
            continue
        try:
            other = engine.containers.get(row["container_id"])
        except NotFound:
            continue
        if not engine.containers.state(other).running:
            continue  # a stale record: its shim is gone, so it holds nothing
        project = other.labels.get("com.docker.compose.project")
        return (f'by project "{project}", container {other.name}' if project
                else f"by container {other.name}")
    return "by another process"
