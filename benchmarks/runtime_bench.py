"""Runtime benchmark: our shim+init against `runc` (and `crun` where it works) on one bundle.

    sudo .venv/bin/python benchmarks/runtime_bench.py [-n RUNS]

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", "--runs", type=int, default=20)
    args = parser.parse_args()
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
