"""Port binding checks and the shim's port proxy on loopback, without root or containers:
the proxy runs in the shim's own epoll loop (in a thread here) and forwards to a server on
127.0.0.1 that stands in for the container."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from engine.errors import InvalidArgument
from engine.ports import check
from engine.requests import PortBinding

RUNTIME = Path(__file__).resolve().parents[2] / "engine" / "runtime"


@pytest.mark.parametrize(("binding", "message"), [
    (PortBinding(80, "sctp"), 'protocol must be "tcp" or "udp"'),
    (PortBinding(70000), "out of range"),
    (PortBinding(0), "must not be 0"),
    (PortBinding(80, host_port=9000, host_port_end=8000), "ends before it starts"),
    (PortBinding(80, host_ip="localhost"), "is not an IP address"),
])
def test_check_rejects(binding: PortBinding, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        check((binding,))


def test_check_accepts() -> None:
    check((PortBinding(80), PortBinding(53, "udp", "::1", 5353),
           PortBinding(80, host_ip="127.0.0.1", host_port=8000, host_port_end=8010)))


class _Loop:
    """The shim's loop and timers (shim.Shim.run), without a container."""

    def __init__(self) -> None:
        sys.path.insert(0, str(RUNTIME))  # as the shim runs: its siblings by path
        try:
            import portproxy
            import shim
        finally:
            sys.path.remove(str(RUNTIME))
        self.portproxy = portproxy
        self.shim = shim.Shim.__new__(shim.Shim)
        self.shim.epoll = __import__("select").epoll()
        self.shim.handlers = {}
        self.shim.timers = {}
        self.shim.done = False
        wake_r, self.wake_w = os.pipe()
        self.shim.handlers[wake_r] = lambda fd: None
        self.shim.epoll.register(wake_r, 1)
        self.thread = threading.Thread(target=self.shim.run, daemon=True)

    def stop(self) -> None:
        self.shim.done = True
        os.write(self.wake_w, b"x")
        self.thread.join(5)


@pytest.fixture
def proxied(tmp_path: Path) -> Iterator[tuple[int, socket.socket, int, socket.socket]]:
    """(tcp port, tcp upstream listener, udp port, udp upstream socket)."""
    loop = _Loop()
    upstream = socket.socket()
    upstream.bind(("127.0.0.1", 0))
    upstream.listen()
    upstream.settimeout(10)
    udp_up = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp_up.bind(("127.0.0.1", 0))
    udp_up.settimeout(5)
    front = socket.socket()
    front.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as engine.ports binds
    front.bind(("127.0.0.1", 0))
    front.listen()
    udp_front = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp_front.bind(("127.0.0.1", 0))
    doc = {"pid": os.getpid(), "target": "127.0.0.1", "udp_idle_timeout": 0.3, "ports": [
        {"protocol": "tcp", "fd": front.fileno(), "host": "",
         "container_port": upstream.getsockname()[1]},
        {"protocol": "udp", "fd": udp_front.fileno(), "host": "",
         "container_port": udp_up.getsockname()[1]}]}
    (tmp_path / "ports.json").write_text(json.dumps(doc))
    proxy = loop.portproxy.Proxy.load(loop.shim, str(tmp_path / "ports.json"))
    tcp_port, udp_port = front.getsockname()[1], udp_front.getsockname()[1]
    front.close()       # the proxy holds its own copies now
    udp_front.close()
    loop.shim.set_timer = lambda name, delay, fn: loop.shim.timers.__setitem__(
        name, (time.monotonic() + delay, fn))
    loop.thread.start()
    try:
        yield tcp_port, upstream, udp_port, udp_up
    finally:
        loop.stop()
        proxy.close()
        upstream.close()
        udp_up.close()
    with socket.socket() as probe:  # closed means free again (TIME_WAIT aside)
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind(("127.0.0.1", tcp_port))
        probe.listen()


def test_tcp_half_close_backpressure_and_bulk(proxied) -> None:
    tcp_port, upstream, _, _ = proxied
    payload = os.urandom(1 << 20) * 16
    result: dict = {}

    def serve() -> None:
        conn, _ = upstream.accept()
        with conn:
            time.sleep(0.3)  # a slow reader: the proxy must hold back, not buffer it all
            digest, total = hashlib.sha256(), 0
            while chunk := conn.recv(1 << 16):
                digest.update(chunk)
                total += len(chunk)
            conn.sendall(f"{total} {digest.hexdigest()}".encode())
            result["done"] = True

    thread = threading.Thread(target=serve)
    thread.start()
    with socket.create_connection(("127.0.0.1", tcp_port), timeout=10) as client:
        client.sendall(payload)
        client.shutdown(socket.SHUT_WR)
        answer = b""
        while chunk := client.recv(4096):
            answer += chunk
    thread.join(10)
    assert answer.decode() == f"{len(payload)} {hashlib.sha256(payload).hexdigest()}"


def test_tcp_refused_upstream_ends_the_client(proxied) -> None:
    tcp_port, upstream, _, _ = proxied
    upstream.close()  # nothing listens in "the container"
    with socket.create_connection(("127.0.0.1", tcp_port), timeout=5) as client:
        assert client.recv(10) == b""


def test_udp_flows_and_idle_timeout(proxied) -> None:
    _, _, udp_port, server = proxied
    clients = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(2)]
    try:
        peers = []
        for n, client in enumerate(clients):
            client.settimeout(5)
            client.sendto(b"hi %d" % n, ("127.0.0.1", udp_port))
            data, peer = server.recvfrom(100)
            assert data == b"hi %d" % n
            peers.append(peer)
            server.sendto(data + b"!", peer)
            assert client.recvfrom(100) == (data + b"!", ("127.0.0.1", udp_port))
        assert peers[0] != peers[1]
        time.sleep(0.8)  # past the idle timeout: the flow is forgotten, a new one starts
        clients[0].sendto(b"again", ("127.0.0.1", udp_port))
        data, peer = server.recvfrom(100)
        assert data == b"again" and peer != peers[0]
    finally:
        for client in clients:
            client.close()
