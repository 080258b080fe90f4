"""Networking benchmark: joining a namespace to a network, DNS latency, TCP throughput.

Run as root: `.venv/bin/python benchmarks/network_bench.py [--joins N] [--queries N]
[--megabytes N]`. Uses a temporary engine root and a subnet from the engine's pool; all
traffic stays between namespaces it creates (the resolver's upstream list is empty, so
nothing leaves the host). Prints one table; removes everything it made.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from engine import dns, netns
from engine import dnsserver as wire
from engine.dns import Dns
from engine.layout import Layout
from engine.networks import Networks
from engine.store import Store

BUSYBOX = "/bin/busybox"
QUERY_BUDGET_S = 20.0


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.2f} ms"


def bench_joins(nets: Networks, layout: Layout, count: int) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {"netns create": [], "connect": [], "disconnect": [],
                                     "netns delete": []}
    for i in range(count):
        cid = f"{i:064x}"
        t0 = time.perf_counter()
        path = netns.create(layout, f"j{i}")
        t1 = time.perf_counter()
        nets.connect("bench", cid, path, container_name=f"bench-j-{i}", dns_names=["j"])
        t2 = time.perf_counter()
        nets.disconnect("bench", cid)
        t3 = time.perf_counter()
        netns.delete(path, layout)
        t4 = time.perf_counter()
        for key, value in zip(times, (t1 - t0, t2 - t1, t3 - t2, t4 - t3), strict=True):
            times[key].append(value)
    return times


def bench_resolver_start(rundir: Path, count: int) -> list[float]:
    """Seconds from spawning the resolver (as the engine does) to its ready line, serving one
    network on 127.0.0.1 at a free port; each one is stopped before the next."""
    rundir.mkdir(parents=True)
    times = []
    for _ in range(count):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        network = {"id": "n", "name": "bench", "names": {}, "ptr": {}, "links": {},
                   "upstreams": {}}
        (rundir / "records.json").write_text(json.dumps(
            {"port": port, "upstreams": [], "networks": {"127.0.0.1": network}}))
        start = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-I", "-S", "-c", dns.SERVER_MAIN,
                                 str(dns.SERVER), "--daemon", str(rundir)],
                                stdout=subprocess.PIPE)
        assert proc.stdout is not None
        line = proc.stdout.readline()
        times.append(time.perf_counter() - start)
        proc.wait()
        pid = json.loads(line)["pid"]
        os.kill(pid, signal.SIGTERM)
        while Path(f"/proc/{pid}").exists() and \
                "zombie" not in Path(f"/proc/{pid}/status").read_text(errors="replace"):
            time.sleep(0.01)
    return times


def bench_dns(path: Path, gateway: str, count: int) -> list[float]:
    sock = netns.socket_in(path, socket.AF_INET, socket.SOCK_DGRAM)
    sock.settimeout(2)
    sock.connect((gateway, 53))
    latencies = []
    deadline = time.monotonic() + QUERY_BUDGET_S
    try:
        for i in range(count):
            if time.monotonic() > deadline:
                break
            q = wire.build_query("server", qid=i & 0xFFFF)
            t0 = time.perf_counter()
            sock.send(q)
            data = sock.recv(4096)
            latencies.append(time.perf_counter() - t0)
            assert wire.parse_response(data)[2], "no answer for a registered name"
    finally:
        sock.close()
    return latencies


def bench_nslookup(path: Path, gateway: str, count: int) -> list[float]:
    out = []
    for _ in range(count):
        t0 = time.perf_counter()
        subprocess.run(netns.command(path, [BUSYBOX, "nslookup", "server", gateway]),
                       capture_output=True, timeout=10, check=True)
        out.append(time.perf_counter() - t0)
    return out


def bench_tcp(client: Path, server: Path, address: str, megabytes: int) -> float:
    """Seconds to push `megabytes` MB through busybox nc from `client` to `server`."""
    port = 5201
    # The listening nc stops when its stdin ends: hold stdin open with a pipe we never write.
    srv = subprocess.Popen(netns.command(server, [BUSYBOX, "nc", "-l", "-p", str(port)]),
                           stdin=subprocess.PIPE, stdout=subprocess.DEVNULL)
    try:
        for _ in range(100):
            with netns.socket_in(client) as probe:
                probe.settimeout(0.2)
                if probe.connect_ex((address, port)) == 0:
                    break
            time.sleep(0.02)
        srv.wait(timeout=5)  # the probe's connection consumed the one-shot listener
    except subprocess.TimeoutExpired:
        pass
    finally:
        if srv.poll() is None:
            srv.kill()
            srv.wait()
        if srv.stdin:
            srv.stdin.close()
    srv = subprocess.Popen(netns.command(server, [BUSYBOX, "nc", "-l", "-p", str(port)]),
                           stdin=subprocess.PIPE, stdout=subprocess.DEVNULL)
    time.sleep(0.2)
    try:
        feed = subprocess.Popen(["head", "-c", str(megabytes * 1_000_000), "/dev/zero"],
                                stdout=subprocess.PIPE)
        t0 = time.perf_counter()
        subprocess.run(netns.command(client, [BUSYBOX, "nc", address, str(port)]),
                       stdin=feed.stdout, check=True, timeout=120)
        srv.wait(timeout=120)
        elapsed = time.perf_counter() - t0
        feed.wait()
        return elapsed
    finally:
        if srv.poll() is None:
            srv.kill()
            srv.wait()
        if srv.stdin:
            srv.stdin.close()


def bench_tcp_sockets(client: Path, server: Path, address: str, megabytes: int) -> float:
    """The same path with Python sockets and 1 MB writes (what the veth/bridge path carries
    when the tool's buffer size is not the limit)."""
    import threading

    srv = netns.socket_in(server)
    srv.bind((address, 0))
    srv.listen(1)
    received = [0]

    def drain() -> None:
        conn, _ = srv.accept()
        with conn:
            while chunk := conn.recv(1 << 20):
                received[0] += len(chunk)

    thread = threading.Thread(target=drain)
    thread.start()
    block = bytes(1 << 20)
    total = megabytes * 1_000_000
    with netns.socket_in(client) as cli:
        cli.connect((address, srv.getsockname()[1]))
        t0 = time.perf_counter()
        sent = 0
        while sent < total:
            cli.sendall(block[: min(len(block), total - sent)])
            sent += min(len(block), total - sent)
        cli.shutdown(socket.SHUT_WR)
        thread.join(timeout=120)
        elapsed = time.perf_counter() - t0
    srv.close()
    assert received[0] == total
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--joins", type=int, default=20)
    parser.add_argument("--queries", type=int, default=2000)
    parser.add_argument("--nslookups", type=int, default=20)
    parser.add_argument("--megabytes", type=int, default=200)
    parser.add_argument("--resolver-starts", type=int, default=10)
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("network_bench needs root (namespaces, netlink)", file=sys.stderr)
        return 2
    tmp = Path(tempfile.mkdtemp(prefix="shipyard-netbench-"))
    layout = Layout.at(tmp / "root").ensure()
    store = Store(layout.database)
    nets = Networks(layout, store, dns=Dns(layout, store, upstreams=[]))
    rows: list[tuple[str, str, str, str]] = []
    made: list[Path] = []
    try:
        t0 = time.perf_counter()
        net = nets.create_network("bench")
        rows.append(("create network (bridge, nft, resolver start)",
                     ms(time.perf_counter() - t0), "", "1"))
        starts = bench_resolver_start(tmp / "resolver", args.resolver_starts)
        rows.append(("DNS resolver: spawn -> ready (its start-up)",
                     ms(statistics.median(starts)), ms(pct(starts, 95)), str(len(starts))))
        joins = bench_joins(nets, layout, args.joins)
        for key, values in joins.items():
            rows.append((key, ms(statistics.median(values)), ms(pct(values, 95)),
                         str(len(values))))
        a = netns.create(layout, "client")
        b = netns.create(layout, "server")
        made += [a, b]
        nets.connect("bench", "a" * 64, a, container_name="bench-client-1")
        eb = nets.connect("bench", "b" * 64, b, container_name="bench-server-1",
                          dns_names=["server"])
        gw = str(net.gateway)
        lat = bench_dns(a, gw, args.queries)
        rows.append(("DNS query from a netns (UDP, local name)", ms(statistics.median(lat)),
                     ms(pct(lat, 95)), str(len(lat))))
        if Path(BUSYBOX).exists():
            ns = bench_nslookup(a, gw, args.nslookups)
            rows.append(("busybox nslookup process (A+AAAA, incl. exec)",
                         ms(statistics.median(ns)), ms(pct(ns, 95)), str(len(ns))))
            seconds = bench_tcp(a, b, str(eb.ipv4), args.megabytes)
            rows.append((f"TCP netns->netns, busybox nc, {args.megabytes} MB",
                         f"{args.megabytes / seconds:.0f} MB/s", f"{seconds:.2f} s", "1"))
        seconds = bench_tcp_sockets(a, b, str(eb.ipv4), args.megabytes)
        rows.append((f"TCP netns->netns, Python sockets, {args.megabytes} MB",
                     f"{args.megabytes / seconds:.0f} MB/s", f"{seconds:.2f} s", "1"))
    finally:
        for ep in nets.endpoints():
            nets.disconnect(ep.network_id, ep.container_id, force=True)
        for n in nets.list():
            nets.remove_network(n.id)
        for path in made:
            netns.delete(path, layout)
        store.close()
        shutil.rmtree(layout.run, ignore_errors=True)
        shutil.rmtree(tmp, ignore_errors=True)
    width = max(len(r[0]) for r in rows)
    print(f"{'measure':<{width}}  {'median':>12}  {'p95':>12}  {'n':>5}")
    for name, med, p95, n in rows:
        print(f"{name:<{width}}  {med:>12}  {p95:>12}  {n:>5}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
