"""Published-port benchmark: the shim's userland proxy against a direct connection.

Run as root: `.venv/bin/python benchmarks/port_bench.py [--megabytes N] [--rounds N]
[--connections N]`. Uses a temporary engine root and the busybox image built from Debian's
busybox-static. Two busybox containers publish on 127.0.0.1 (ephemeral ports):
  - a sink, `nc -ll -p 9000 -e sh -c 'cat >/dev/null; echo done'`: the client sends N MB,
    half-closes, and waits for "done", so the time covers delivery into the container;
  - `httpd`: connection setup latency, as connect + `GET /` + the whole reply + close.
Each is measured through the published port (127.0.0.1:P) and directly against the
container's address on the bridge, which the host routes to. Traffic stays on this host.
Prints one table; removes everything it made.
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import socket
import statistics
import sys
import tempfile
import time
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from compose.cli import main as cli_main
from tests.support import busybox

SINK = "nc -ll -p 9000 -e sh -c 'cat >/dev/null; echo done'"
HTTPD = "mkdir -p /www && echo hello > /www/index.html && exec httpd -f -p 80 -h /www"


def shipyard(*argv: str) -> str:
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = cli_main(list(argv))
    if code:
        raise SystemExit(f"shipyard {' '.join(argv)} -> {code}: {err.getvalue().strip()}")
    return out.getvalue()


def addresses(name: str, private: str) -> tuple[tuple[str, int], tuple[str, int]]:
    """(published address, the container's own address) for a container port."""
    import json

    host = shipyard("container", "port", name, private).strip()
    ip = json.loads(shipyard("container", "inspect", name))[0]["NetworkSettings"]["Networks"]
    direct = next(iter(ip.values()))["IPAddress"]
    return ("127.0.0.1", int(host.rsplit(":", 1)[1])), (direct, int(private.split("/")[0]))


def wait_ready(address: tuple[str, int], probe: bytes) -> None:
    deadline = time.monotonic() + 10
    while True:
        try:
            with socket.create_connection(address, timeout=2) as s:
                s.sendall(probe)
                s.shutdown(socket.SHUT_WR)
                if s.recv(16):
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise SystemExit(f"nothing answers on {address}")
        time.sleep(0.05)


def transfer(address: tuple[str, int], size: int) -> float:
    """Seconds to send `size` bytes and hear that the container read them all."""
    block = memoryview(b"\0" * (1 << 20))
    start = time.perf_counter()
    with socket.create_connection(address) as s:
        left = size
        while left:
            left -= s.send(block[:min(left, len(block))])
        s.shutdown(socket.SHUT_WR)
        reply = b""
        while chunk := s.recv(64):
            reply += chunk
    elapsed = time.perf_counter() - start
    if reply != b"done\n":
        raise SystemExit(f"sink answered {reply!r}")
    return elapsed


def request(address: tuple[str, int]) -> float:
    start = time.perf_counter()
    with socket.create_connection(address) as s:
        s.sendall(b"GET / HTTP/1.0\r\n\r\n")
        while s.recv(65536):
            pass
    return time.perf_counter() - start


def run(megabytes: int, rounds: int, connections: int) -> None:
    size = megabytes << 20
    shipyard("container", "run", "-d", "--name", "sink", "-p", "127.0.0.1:0:9000", "busybox",
             "sh", "-c", SINK)
    shipyard("container", "run", "-d", "--name", "web", "-p", "127.0.0.1:0:80", "busybox",
             "sh", "-c", HTTPD)
    sink_proxy, sink_direct = addresses("sink", "9000")
    web_proxy, web_direct = addresses("web", "80")
    for address in (sink_proxy, sink_direct):
        wait_ready(address, b"x")
    for address in (web_proxy, web_direct):
        wait_ready(address, b"GET / HTTP/1.0\r\n\r\n")

    rows = []
    rates: dict[str, float] = {}
    for label, address in (("direct", sink_direct), ("published", sink_proxy)):
        times = [transfer(address, size) for _ in range(rounds)]
        rates[label] = megabytes / statistics.median(times)
        rows.append((f"throughput {label}", f"{rates[label]:.0f} MB/s",
                     f"median of {rounds} x {megabytes} MB"))
    rows.append(("throughput ratio", f"{rates['published'] / rates['direct']:.2f}",
                 "published / direct"))
    lat: dict[str, float] = {}
    for label, address in (("direct", web_direct), ("published", web_proxy)):
        for _ in range(10):
            request(address)  # warm up
        times = sorted(request(address) for _ in range(connections))
        lat[label] = statistics.median(times)
        p95 = times[min(len(times) - 1, round(0.95 * (len(times) - 1)))]
        rows.append((f"connect+GET {label}", f"{lat[label] * 1000:.2f} ms",
                     f"median of {connections}; p95 {p95 * 1000:.2f} ms"))
    rows.append(("connect+GET added", f"{(lat['published'] - lat['direct']) * 1000:.2f} ms",
                 "published - direct"))
    width = max(len(r[0]) for r in rows)
    for name, value, note in rows:
        print(f"{name.ljust(width)}  {value.rjust(10)}  {note}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--megabytes", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=200)
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("run as root (containers, bridges)")
    tmp = Path(tempfile.mkdtemp(prefix="port-bench-"))
    os.environ["SHIPYARD_ROOT"] = str(tmp / "root")
    try:
        shipyard("image", "import", str(busybox.make_rootfs_tar(tmp / "busybox.tar")),
                 "busybox")
        run(args.megabytes, args.rounds, args.connections)
    finally:
        for name in ("sink", "web"):
            try:
                shipyard("container", "rm", "-f", name)
            except SystemExit:
                pass
        try:
            shipyard("network", "rm", "bridge")
        except SystemExit:
            pass
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
