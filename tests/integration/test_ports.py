"""Published ports end to end through the engine-level CLI: a busybox httpd answers the host
on an ephemeral loopback port, a second container asking for the same port is refused with
the holder named and nothing half-made, UDP flows, TCP half-close and bulk transfer, ranges,
ports freed on stop, and the network released when a container exits on its own."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import busybox, leaks
from tests.support.cli import Shipyard as _Runner
from tests.support.cli import wait_for as _wait_for

pytestmark = [
    pytest.mark.skipif(not busybox.available(), reason="busybox-static is missing"),
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (namespaces, bridges)"),
]

HTTPD = "mkdir -p /www && echo hello from busybox > /www/index.html && exec httpd -f -p 80 -h /www"


class Shipyard(_Runner):

    def port(self, name: str, private: str) -> int:
        _, out, _ = self("container", "port", name, private)
        return int(out.strip().rsplit(":", 1)[1])

    def netns(self, name: str) -> Path:
        from engine import Engine, netns

        engine = Engine(self.root)
        return netns.path_of(engine.layout, engine.containers.get(name).id[:32])




def _http_get(port: int, timeout: float = 10.0, host: str = "127.0.0.1") -> str:
    """GET / on host:port, retrying while the server in the container comes up."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host, port), timeout=2) as s:
                s.sendall(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n")
                chunks = []
                while chunk := s.recv(65536):
                    chunks.append(chunk)
            reply = b"".join(chunks).decode(errors="replace")
            if reply:
                return reply
        except OSError:
            pass
        assert time.monotonic() < deadline, f"no HTTP answer on 127.0.0.1:{port}"
        time.sleep(0.05)


def _engine_objects(shipyard: Shipyard) -> tuple:
    """What this engine root holds: container dirs, netns, endpoints, port bindings."""
    from engine import Engine, netns

    engine = Engine(shipyard.root)
    rows = engine.store.query("SELECT container_id, host_port FROM port_bindings")
    return (sorted(os.listdir(engine.layout.containers)), netns.list_names(engine.layout),
            sorted(e.container_id for e in engine.networks.endpoints()),
            sorted(tuple(r) for r in rows))


def _port_free(port: int, kind: int = socket.SOCK_STREAM, host: str = "127.0.0.1") -> bool:
    """Whether a server could take the port now (TIME_WAIT leftovers do not count)."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, kind) as s:
        if kind == socket.SOCK_STREAM:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
        return True


@pytest.fixture
def shipyard(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Shipyard]:
    before = leaks.snapshot()
    root = tmp_path / "root"
    monkeypatch.setenv("SHIPYARD_ROOT", str(root))
    cli = Shipyard(root)
    cli("image", "import", str(busybox.make_rootfs_tar(tmp_path / "busybox.tar")), "busybox")
    yield cli
    _, out, _ = cli("container", "ls", "-a", "-q", "--no-trunc")
    ids = out.split()
    ifnames = _interface_names(root, ids)
    for container in ids:
        cli("container", "rm", "-f", "-v", container)
    _, out, _ = cli("network", "ls", "-q")
    for network in out.split():
        cli("network", "rm", network, ok=False)
    assert _ours(leaks.diff(before, leaks.snapshot()), tmp_path, ids, ifnames) == {}


def _interface_names(root: Path, ids: list[str]) -> set[str]:
    """The bridge and veth names this engine root's networks and containers would use."""
    from engine import Engine
    from engine.netdevs import bridge_name, veth_name

    networks = [n.id for n in Engine(root).networks.list()]
    return ({bridge_name(n) for n in networks}
            | {veth_name(n, c) for n in networks for c in ids})


def _ours(leaked: dict[str, list], tmp_path: Path, ids: list[str],
          ifnames: set[str]) -> dict[str, list]:
    """The leaks this test's engine could have made. Other engines (podman, dockerd in the
    peer benchmarks) may run on the machine at the same time; their cgroups, mounts and
    processes are not ours."""
    from engine.layout import Layout

    marks = [str(tmp_path), str(Layout.at(tmp_path / "root").run), *ids]
    out = {}
    for kind, items in leaked.items():
        if kind == "links":
            mine = [i for i in items if i in ifnames]
        elif kind == "processes":
            mine = [i for i in items if any(m in i for m in marks) or _rooted_in(i, tmp_path)]
        else:
            mine = [i for i in items if any(m in i for m in marks)]
        if mine:
            out[kind] = mine
    return out


def _rooted_in(process: str, tmp_path: Path) -> bool:
    try:
        return os.readlink(f"/proc/{process.split()[0]}/root").startswith(str(tmp_path))
    except OSError:
        return False


def test_httpd_on_an_ephemeral_port_and_a_refused_second_claim(shipyard: Shipyard) -> None:
    shipyard("container", "run", "-d", "--name", "web", "-p", "127.0.0.1:0:80", "busybox",
             "sh", "-c", HTTPD)
    port = shipyard.port("web", "80")
    assert port > 0
    _, out, _ = shipyard("container", "port", "web")
    assert out == f"80/tcp -> 127.0.0.1:{port}\n"
    reply = _http_get(port)
    assert reply.startswith("HTTP/1.") and "hello from busybox" in reply

    before = _engine_objects(shipyard)
    code, _, err = shipyard("container", "run", "-d", "--name", "web2", "-p",
                            f"127.0.0.1:{port}:80", "busybox", "httpd", "-f", "-p", "80",
                            ok=False)
    assert code != 0
    assert err.strip() == f"port 127.0.0.1:{port} is already in use (by container web)"
    _, out, _ = shipyard("container", "ls", "-a", "--format", "json")
    assert [json.loads(line)["Names"] for line in out.splitlines()] == ["web"]
    assert _engine_objects(shipyard) == before
    assert "hello from busybox" in _http_get(port)  # the holder is unharmed

    # Someone else's socket: named as such.
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        taken = other.getsockname()[1]
        code, _, err = shipyard("container", "run", "-d", "--name", "web3", "-p",
                                f"127.0.0.1:{taken}:80", "busybox", "true", ok=False)
        assert err.strip() == f"port 127.0.0.1:{taken} is already in use (by another process)"

    shipyard("container", "stop", "-t", "0", "web")
    assert _port_free(port)
    _, out, _ = shipyard("container", "port", "web")
    assert out == ""
    shipyard("container", "start", "web")
    again = shipyard.port("web", "80/tcp")
    assert "hello from busybox" in _http_get(again)
    shipyard("container", "rm", "-f", "web")
    assert _port_free(again)


def _ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


@pytest.mark.skipif(not _ipv6_loopback(), reason="this host has no IPv6 loopback")
def test_a_port_without_address_is_served_on_ipv4_and_ipv6(shipyard: Shipyard) -> None:
    shipyard("container", "run", "-d", "--name", "web", "-p", "0:80", "busybox",
             "sh", "-c", HTTPD)
    port = shipyard.port("web", "80")
    _, out, _ = shipyard("container", "port", "web")
    assert out == f"80/tcp -> 0.0.0.0:{port}\n80/tcp -> [::]:{port}\n"
    assert "hello from busybox" in _http_get(port)
    assert "hello from busybox" in _http_get(port, host="::1")
    shipyard("container", "rm", "-f", "web")
    assert _port_free(port) and _port_free(port, host="::1")  # both sides released


@pytest.mark.skipif(not _ipv6_loopback(), reason="this host has no IPv6 loopback")
def test_a_container_on_ipv6_only_is_not_blamed_for_ipv4(shipyard: Shipyard) -> None:
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        port = other.getsockname()[1]
        shipyard("container", "run", "-d", "--name", "six", "-p", f"[::]:{port}:80",
                 "busybox", "sleep", "600")
        code, _, err = shipyard("container", "run", "-d", "--name", "four", "-p",
                                f"{port}:80", "busybox", "true", ok=False)
        assert code != 0
        assert err.strip() == f"port 0.0.0.0:{port} is already in use (by another process)"
    shipyard("container", "rm", "-f", "six")


def test_range_takes_its_first_free_port(shipyard: Shipyard) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        low = holder.getsockname()[1]
        shipyard("container", "run", "-d", "--name", "web", "-p",
                 f"127.0.0.1:{low}-{low + 3}:80", "busybox", "sh", "-c", HTTPD)
        port = shipyard.port("web", "80")
        assert low < port <= low + 3
        assert "hello from busybox" in _http_get(port)


def test_udp_flows_per_client(shipyard: Shipyard) -> None:
    from engine import netns

    # busybox-static's nc has no UDP mode, so the server is a socket the test opens in the
    # container's own network namespace.
    shipyard("container", "run", "-d", "--name", "udp", "-p", "127.0.0.1:0:9000/udp",
             "busybox", "sleep", "600")
    port = shipyard.port("udp", "9000/udp")
    server = netns.socket_in(shipyard.netns("udp"), socket.AF_INET, socket.SOCK_DGRAM)
    server.bind(("0.0.0.0", 9000))
    server.settimeout(5)
    clients = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(2)]
    try:
        seen = set()
        for round_ in range(3):
            for n, client in enumerate(clients):
                client.settimeout(5)
                client.sendto(f"ping {n} {round_}".encode(), ("127.0.0.1", port))
                data, peer = server.recvfrom(65535)
                assert data == f"ping {n} {round_}".encode()
                seen.add(peer)
                server.sendto(data.upper(), peer)
                reply, source = client.recvfrom(65535)
                assert reply == f"PING {n} {round_}".encode()
                assert source == ("127.0.0.1", port)
        assert len(seen) == 2  # one flow per client, kept across datagrams
    finally:
        server.close()
        for client in clients:
            client.close()
    shipyard("container", "rm", "-f", "udp")
    assert _port_free(port, socket.SOCK_DGRAM)


def test_tcp_half_close_and_bulk_transfer(shipyard: Shipyard) -> None:
    from engine import netns

    shipyard("container", "run", "-d", "--name", "tcp", "-p", "127.0.0.1:0:7000",
             "busybox", "sleep", "600")
    port = shipyard.port("tcp", "7000")
    listener = netns.socket_in(shipyard.netns("tcp"))
    listener.bind(("0.0.0.0", 7000))
    listener.listen()
    listener.settimeout(10)
    size = 24 << 20
    payload = os.urandom(1 << 20) * (size >> 20)
    result: dict = {}

    def serve() -> None:
        # Reads everything until the client's EOF, slowly at first (backpressure), then
        # answers with the digest over the half-closed connection.
        conn, peer = listener.accept()
        with conn:
            time.sleep(0.5)
            digest = hashlib.sha256()
            total = 0
            while chunk := conn.recv(1 << 16):
                digest.update(chunk)
                total += len(chunk)
            result["peer"] = peer
            conn.sendall(f"{total} {digest.hexdigest()}".encode())

    thread = threading.Thread(target=serve)
    thread.start()
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=20) as client:
            client.sendall(payload)
            client.shutdown(socket.SHUT_WR)
            answer = b""
            while chunk := client.recv(4096):
                answer += chunk
    finally:
        thread.join(30)
        listener.close()
    assert answer.decode() == f"{size} {hashlib.sha256(payload).hexdigest()}"
    shipyard("container", "rm", "-f", "tcp")


def test_exit_releases_network_and_ports(shipyard: Shipyard) -> None:
    from engine import Engine

    shipyard("container", "run", "-d", "--name", "brief", "-p", "127.0.0.1:0:80",
             "busybox", "sh", "-c", "sleep 1")
    port = shipyard.port("brief", "80")
    path = shipyard.netns("brief")
    assert path.exists()
    engine = Engine(shipyard.root)
    container_id = engine.containers.get("brief").id

    def released() -> bool:
        return (not path.exists()
                and not engine.networks.endpoints(container_id=container_id))

    _wait_for(released, timeout=15)
    assert _port_free(port)
    _, out, _ = shipyard("container", "ls", "-a", "--format", "json")
    assert json.loads(out)["State"] == "exited"
    # It starts again as before, with its network back.
    shipyard("container", "start", "brief")
    assert path.exists()
    _wait_for(released, timeout=15)
