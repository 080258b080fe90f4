"""Runtime benchmark: our shim+init against `runc` (and `crun` where it works) on one bundle.

    sudo .venv/bin/python benchmarks/runtime_bench.py [-n RUNS]
    sudo .venv/bin/python benchmarks/runtime_bench.py --batch 20 [-n ROUNDS]

`--batch N` measures what `up -d` asks of the runtime instead: N busybox containers made
through the engine (image, bridge network, overlay rootfs, netns, config.json), started from
N threads at once inside one `launch.forkserver()` scope, then one by one in the same scope
(`up --parallel 1`) and one by one without it (fresh shim interpreters). It reports the
batch's wall time, the CPU the fork server, shims and inits used (cpuacct: the fork server
runs in a cgroup of the bench's, the inits end in their containers' cgroups), the CPU of
the whole machine (/proc/stat) and of the bench process itself, and per-start wall times.

Measures medians over N runs of
  - start: bundle ready -> the container's process is running (ours: launch.start;
    runc/crun: `run -d` of `sleep`), then stopped and deleted outside the timing;
  - run `true`: start + wait + delete of `true` (ours: launch start/wait/delete; runc/crun:
    foreground `run`);
and the memory of one idle shim (Rss, Pss, private) from /proc/<pid>/smaps_rollup, next to
conmon's and containerd-shim's figures measured on this kind of host (notes/host.md).
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.runtime import launch
from engine.spec import ContainerConfig, build_spec, shim_options
from tests.support import busybox

PARENT = f"/shipyard-bench-{os.getpid()}"


def bundle(base: Path, rootfs: Path, *cmd: str) -> tuple[Path, str]:
    cid = "bench" + uuid.uuid4().hex[:16]
    config = ContainerConfig(id=cid, cmd=cmd, cgroup_parent=PARENT)
    spec = build_spec(config, {}, str(rootfs), (rootfs / "etc/passwd").read_text(),
                      (rootfs / "etc/group").read_text())
    d = base / cid
    launch.create(d, spec, shim_options(config))
    return d, cid


def ms(samples: list[float]) -> str:
    return f"{statistics.median(samples) * 1000:7.1f} ms" if samples else "    n/a"


def ours(base: Path, rootfs: Path, runs: int) -> tuple[list[float], list[float]]:
    start, full = [], []
    for _ in range(runs):
        d, _ = bundle(base, rootfs, "sleep", "60")
        t = time.perf_counter()
        launch.start(d)
        start.append(time.perf_counter() - t)
        launch.stop(d, timeout=0)
        launch.delete(d)
        d, _ = bundle(base, rootfs, "true")
        t = time.perf_counter()
        launch.start(d)
        launch.wait(d)
        launch.delete(d)
        full.append(time.perf_counter() - t)
    return start, full


def oci(tool: str, base: Path, rootfs: Path, runs: int) -> tuple[list[float], list[float]]:
    start, full = [], []
    for _ in range(runs):
        d, cid = bundle(base, rootfs, "sleep", "60")
        with tempfile.TemporaryFile() as err:
            # detached: the container keeps the stdio it is given, so no pipes here
            t = time.perf_counter()
            r = subprocess.run([tool, "run", "-d", "-b", str(d), cid], stdout=subprocess.DEVNULL,
                               stderr=err, stdin=subprocess.DEVNULL)
            elapsed = time.perf_counter() - t
            subprocess.run([tool, "delete", "-f", cid], capture_output=True)
            if r.returncode != 0:
                err.seek(0)
                raise RuntimeError((err.read().decode().strip().splitlines() or ["?"])[-1])
        start.append(elapsed)
        d, cid = bundle(base, rootfs, "true")
        t = time.perf_counter()
        subprocess.run([tool, "run", "-b", str(d), cid], capture_output=True,
                       stdin=subprocess.DEVNULL, check=True)
        full.append(time.perf_counter() - t)
    return start, full


def shim_memory(base: Path, rootfs: Path, count: int) -> dict[str, float]:
    """Per-shim averages (kB) over `count` idle shims: Pss shares the interpreter's file
    pages among them, as on a host running many containers."""
    dirs = []
    for _ in range(count):
        d, _ = bundle(base, rootfs, "sleep", "60")
        launch.start(d)
        dirs.append(d)
    time.sleep(0.5)
    totals: dict[str, float] = {}
    for d in dirs:
        with open(f"/proc/{launch.state(d).shim_pid}/smaps_rollup") as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 3 and parts[2] == "kB":
                    key = parts[0].rstrip(":")
                    totals[key] = totals.get(key, 0) + int(parts[1]) / count
    for d in dirs:
        launch.stop(d, timeout=0)
        launch.delete(d)
    return totals


def cleanup_parent() -> None:
    with open("/proc/self/mountinfo") as f:
        roots = {line.split()[4] for line in f if " - cgroup" in line}
    for root in roots:
        # runc and crun leave the parent, and a failed crun run its child, behind
        for dirpath, _dirs, _files in sorted(os.walk(root + PARENT), reverse=True):
            os.rmdir(dirpath)


# ---- --batch: what `up -d` asks of the runtime ------------------------------------------

SLEEPER = 'trap "exit 0" TERM; while true; do sleep 1; done'
CPUACCT = "/sys/fs/cgroup/cpuacct"


def _busy_jiffies() -> int:
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    return sum(fields) - fields[3] - fields[4]  # all but idle and iowait


def _self_cpu() -> float:
    t = os.times()
    return t.user + t.system


def _cpuacct(path: str) -> int:
    try:
        with open(f"{CPUACCT}{path}/cpuacct.usage") as f:
            return int(f.read())
    except FileNotFoundError:
        return 0


class Stack:
    """N containers in a temporary engine root, on one bridge network, as `up` makes them."""

    def __init__(self, base: Path, count: int) -> None:
        from engine import Engine
        from engine.requests import CreateRequest, NetworkAttachment

        self.engine = Engine(base / "root")
        tar = busybox.make_rootfs_tar(base / "busybox.tar")
        self.engine.images.import_rootfs(str(tar), "busybox:latest")
        self.network = f"bench{os.getpid()}_default"
        self.engine.networks.create_network(self.network)
        self.containers = [self.engine.containers.create(CreateRequest(
            image="busybox", config=ContainerConfig(id="", cmd=("sh", "-c", SLEEPER)),
            name=f"bench{os.getpid()}-s{i:03d}-1",
            networks=(NetworkAttachment(self.network, aliases=(f"s{i:03d}",)),)))
            for i in range(count)]
        self.dirs = [str(c.directory) for c in self.containers]

    def prepare(self) -> None:
        from engine import prepare

        for c in self.containers:
            prepare.bundle(self.engine, c)

    def cgroups(self) -> list[str]:
        from engine.runtime import state as st

        return [st.read_json(os.path.join(d, "config.json"))["linux"]["cgroupsPath"]
                for d in self.dirs]

    def stop(self) -> None:
        for c in self.containers:
            self.engine.containers.stop(c, timeout=0)

    def close(self) -> None:
        self.stop()
        for c in self.containers:
            self.engine.containers.remove(c, force=True)
        self.engine.networks.remove_network(self.network)
        self.engine.store.close()
        # The root's run directory (names, locks) is outside the temporary base.
        shutil.rmtree(self.engine.layout.run, ignore_errors=True)


def _server_cgroup() -> str:
    """Moves the open fork server into a cpuacct cgroup of its own (its shims and their
    children inherit it); returns the cgroup's path."""
    path = f"/shipyard-bench-cpu-{os.getpid()}"
    os.makedirs(CPUACCT + path, exist_ok=True)
    with open(f"{CPUACCT}{path}/cgroup.procs", "w") as f:
        f.write(str(launch._forkserver._proc.pid))  # type: ignore[union-attr]
    return path


def _remove_server_cgroup(path: str) -> None:
    deadline = time.monotonic() + 5
    while True:
        try:
            os.rmdir(CPUACCT + path)
            return
        except FileNotFoundError:
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.01)


def batch_round(stack: Stack, parallel: bool, forkserver: bool = True) -> dict[str, float]:
    """Starts every container (threads at once, or one by one); returns wall time (s), CPU
    of fork server + shims + inits (s, cpuacct), busy CPU of the machine (s, /proc/stat)
    and of this process (s), and the per-start wall times."""
    import threading

    stack.prepare()
    tick = os.sysconf("SC_CLK_TCK")
    scope = launch.forkserver() if forkserver else contextlib.nullcontext()
    group = ""
    with scope:
        if forkserver:
            group = _server_cgroup()
            time.sleep(0.3)  # `up` prepares while the server boots: let it finish
        per: list[float] = [0.0] * len(stack.dirs)

        def one(i: int) -> None:
            t0 = time.perf_counter()
            launch.start(stack.dirs[i])
            per[i] = time.perf_counter() - t0

        acct0 = _cpuacct(group) if group else 0
        busy0, self0 = _busy_jiffies(), _self_cpu()
        t = time.perf_counter()
        if parallel:
            threads = [threading.Thread(target=one, args=(i,)) for i in range(len(stack.dirs))]
            for th in threads:
                th.start()
            for th in threads:
                th.join()
        else:
            for i in range(len(stack.dirs)):
                one(i)
        wall = time.perf_counter() - t
        busy = (_busy_jiffies() - busy0) / tick
        own = _self_cpu() - self0
        acct = (_cpuacct(group) - acct0) if group else 0
    if group:  # without a fork server the shims run in the bench's own cgroup
        acct += sum(_cpuacct(p) for p in stack.cgroups())
    stack.stop()
    if group:
        _remove_server_cgroup(group)
    return {"wall": wall, "cpu": acct / 1e9, "busy": busy, "self": own, "per": per}


def breakdown(trace_file: str) -> None:
    """Per-step medians from a SHIPYARD_RUNTIME_TRACE file (see engine/runtime/tracing.py):
    wall and CPU time and minor page faults (mostly copy-on-write of the fork server's
    memory) between consecutive marks of each process, by role (server, shim, init)."""
    marks: dict[str, list[tuple[str, int, int, int]]] = {}
    with open(trace_file) as f:
        for line in f:
            pid, label, wall, cpu, faults = line.split()
            marks.setdefault(pid, []).append((label, int(wall), int(cpu), int(faults)))
    steps: dict[str, list[tuple[float, float, int]]] = {}
    totals: dict[str, list[tuple[float, int]]] = {}
    for seq in marks.values():
        role = seq[0][0].split(":")[0]
        if role == "server":  # one process: a step per request
            pairs = [(a, b) for a, b in itertools.pairwise(seq)
                     if a[0] == "server:request" and b[0] == "server:forked"]
        else:
            pairs = list(itertools.pairwise(seq))
            totals.setdefault(role, []).append((seq[-1][2] / 1e6, seq[-1][3]))
        for a, b in pairs:
            steps.setdefault(f"{a[0]} -> {b[0].split(':', 1)[1]}", []).append(
                ((b[1] - a[1]) / 1e6, (b[2] - a[2]) / 1e6, b[3] - a[3]))
    print(f"{'step':<40} {'wall ms':>8} {'cpu ms':>7} {'faults':>7}")
    for step, rows in steps.items():
        print(f"{step:<40} {statistics.median(r[0] for r in rows):8.2f} "
              f"{statistics.median(r[1] for r in rows):7.2f} "
              f"{statistics.median(r[2] for r in rows):7.0f}")
    for role, rows in totals.items():
        print(f"{role + ' process (from its fork to its last mark)':<40} {'':>8} "
              f"{statistics.median(r[0] for r in rows):7.2f} "
              f"{statistics.median(r[1] for r in rows):7.0f}")


def traced(count: int) -> None:
    """One batch at once and one one by one, with the runtime's timestamps on."""
    base = Path(tempfile.mkdtemp(prefix="shipyard-bench-"))
    stack = None
    try:
        stack = Stack(base, count)
        batch_round(stack, parallel=True)
        for parallel in (False, True):
            trace_file = str(base / f"trace-{parallel}.txt")
            os.environ["SHIPYARD_RUNTIME_TRACE"] = trace_file
            try:
                batch_round(stack, parallel=parallel)
            finally:
                del os.environ["SHIPYARD_RUNTIME_TRACE"]
            print(f"\n{count} starts {'at once' if parallel else 'one by one'}:")
            breakdown(trace_file)
    finally:
        if stack is not None:
            stack.close()
        shutil.rmtree(base, ignore_errors=True)


def batch(count: int, rounds: int) -> None:
    base = Path(tempfile.mkdtemp(prefix="shipyard-bench-"))
    stack = None
    results: dict[str, list[dict]] = {"at once": [], "one by one": [], "no fork server": []}
    try:
        stack = Stack(base, count)
        batch_round(stack, parallel=True)  # warm up: page cache, pyc files
        for _ in range(rounds):
            results["at once"].append(batch_round(stack, parallel=True))
            results["one by one"].append(batch_round(stack, parallel=False))
            results["no fork server"].append(batch_round(stack, parallel=False,
                                                         forkserver=False))
    finally:
        if stack is not None:
            stack.close()
        shutil.rmtree(base, ignore_errors=True)
    print(f"{count} busybox containers (engine-prepared, on one network), "
          f"medians of {rounds} rounds\n")
    print(f"{'mode':<16} {'wall':>9} {'per start':>10} {'cpu/start':>10} "
          f"{'machine/start':>14} {'bench/start':>12}")
    for mode, rows in results.items():
        med = {k: statistics.median(r[k] for r in rows) for k in ("wall", "cpu", "busy",
                                                                  "self")}
        per = statistics.median(p for r in rows for p in r["per"])
        cpu = f"{med['cpu'] / count * 1000:7.1f} ms" if med["cpu"] else "    n/a"
        print(f"{mode:<16} {med['wall'] * 1000:6.0f} ms {per * 1000:7.1f} ms {cpu:>10} "
              f"{med['busy'] / count * 1000:11.1f} ms {med['self'] / count * 1000:9.1f} ms")
    print("\ncpu/start: fork server + shims + inits (cpuacct); machine/start: every CPU's "
          "busy time (/proc/stat)\nover the batch, per container; bench/start: this "
          "process (the engine's side of launch.start).")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", "--runs", type=int, default=20)
    parser.add_argument("--batch", type=int, default=0, metavar="N",
                        help="start N engine-made containers at once, as `up -d` does")
    parser.add_argument("--trace", action="store_true",
                        help="with --batch: the per-step breakdown of a start instead")
    args = parser.parse_args()
    if args.batch and args.trace:
        traced(args.batch)
        return
    if args.batch:
        batch(args.batch, args.runs if args.runs != 20 else 5)
        return
    base = Path(tempfile.mkdtemp(prefix="shipyard-bench-"))
    try:
        rootfs = busybox.make_rootfs(base / "rootfs")
        rows = [("shipyard (shim+init)", *ours(base, rootfs, args.runs))]
        for tool in ("runc", "crun"):
            if shutil.which(tool) is None:
                continue
            try:
                rows.append((tool, *oci(tool, base, rootfs, args.runs)))
            except (RuntimeError, subprocess.CalledProcessError) as e:
                rows.append((f"{tool} (fails here: {e})", [], []))
        memory = {n: shim_memory(base, rootfs, n) for n in (1, 10)}
    finally:
        shutil.rmtree(base, ignore_errors=True)
        cleanup_parent()
    print(f"runtime benchmark, medians of {args.runs} runs (busybox rootfs)\n")
    print(f"{'runtime':<44} {'start->running':>15} {'run true':>12}")
    for name, start, full in rows:
        print(f"{name:<44} {ms(start):>15} {ms(full):>12}")
    print("\nidle monitor memory (MB)          Rss      Pss  private")
    for n, mem in memory.items():
        private = mem.get("Private_Clean", 0) + mem.get("Private_Dirty", 0)
        label = f"shipyard shim ({n} running)"
        print(f"{label:<30} {mem.get('Rss', 0) / 1024:8.2f} {mem.get('Pss', 0) / 1024:8.2f}"
              f" {private / 1024:8.2f}")
    print(f"{'conmon (host notes)':<30} {1.95:8.2f} {'':>8} {0.33:8.2f}")
    print(f"{'containerd-shim (host notes)':<30} {13:8.2f} {2.9:8.2f} {2.4:8.2f}")


if __name__ == "__main__":
    main()
