"""Whole-stack benchmark of `shipyard up -d` and `down` (whole-process wall time).

    sudo .venv/bin/python benchmarks/stack_bench.py [-n RUNS] [--sizes 1,5,20,100]

Generated stacks of N independent busybox services (each `sleep` under a TERM trap):
`up -d` from nothing and `down -t 0`; `up -d` of a two-service service_healthy chain (from
start to return, and how long after the first healthy probe it returned); `ps` on a running
20-service stack, when the `ps` command exists. Medians over RUNS, in a temporary engine
root. `make_stack` and `timed` are meant for the side-by-side comparison with other tools.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SLEEPER = 'trap "exit 0" TERM; while true; do sleep 1; done'


def make_stack(directory: Path, services: int, image: str = "busybox") -> Path:
    """Writes `compose.yaml` with `services` independent sleepers; returns the file."""
    directory.mkdir(parents=True, exist_ok=True)
    lines = ["services:"]
    for i in range(services):
        lines += [f"  s{i:03d}:", f"    image: {image}",
                  f"    command: [\"sh\", \"-c\", '{SLEEPER}']"]
    path = directory / "compose.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


def make_healthy_chain(directory: Path, image: str = "busybox") -> Path:
    """db (healthy once /tmp/ready exists, after 0.3 s; probed every 100 ms) <- web."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "compose.yaml"
    path.write_text(f"""services:
  db:
    image: {image}
    command: ["sh", "-c", 'sleep 0.3; touch /tmp/ready; {SLEEPER}']
    healthcheck:
      test: ["CMD", "test", "-f", "/tmp/ready"]
      interval: 100ms
      start_interval: 50ms
      retries: 50
  web:
    image: {image}
    command: ["sh", "-c", '{SLEEPER}']
    depends_on:
      db: {{condition: service_healthy}}
""")
    return path


def shipyard() -> list[str]:
    exe = ROOT / ".venv" / "bin" / "shipyard"
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "compose.cli"]


def timed(argv: list[str], cwd: Path, env: dict[str, str]) -> float:
    """Wall time of one whole process; raises if it fails."""
    started = time.perf_counter()
    done = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed: {done.stderr.strip()}")
    return elapsed


def median_ms(samples: list[float]) -> str:
    return f"{statistics.median(samples) * 1000:7.0f} ms" if samples else "    n/a"


def bench_sizes(work: Path, env: dict[str, str], sizes: list[int], runs: int) -> None:
    cli = shipyard()
    print(f"{'services':>8}  {'up -d':>10}  {'down -t 0':>10}")
    for n in sizes:
        project = work / f"stack{n}"
        make_stack(project, n)
        ups, downs = [], []
        for _ in range(runs):
            ups.append(timed([*cli, "up", "-d"], project, env))
            downs.append(timed([*cli, "down", "-t", "0"], project, env))
        print(f"{n:>8}  {median_ms(ups):>10}  {median_ms(downs):>10}")


def bench_healthy(work: Path, env: dict[str, str], runs: int) -> None:
    from engine import Engine

    cli = shipyard()
    project = work / "chain"
    make_healthy_chain(project)
    totals, lags = [], []
    for _ in range(runs):
        started = time.time()
        totals.append(timed([*cli, "up", "-d"], project, env))
        ended = time.time()
        engine = Engine(env["SHIPYARD_ROOT"])
        db = engine.containers.get("chain-db-1")
        health = engine.containers.state(db).health
        first = min(_epoch(r.end) for r in health.log if r.exit_code == 0) if health else 0
        lags.append(max(0.0, ended - first) if first > started else float("nan"))
        engine.store.close()
        timed([*cli, "down", "-t", "0"], project, env)
    print(f"healthy chain up -d: {median_ms(totals)}; returned "
          f"{statistics.median(lags) * 1000:.0f} ms after the first healthy probe")


def _epoch(rfc3339: str) -> float:
    from datetime import datetime

    whole, _, frac = rfc3339.rstrip("Z").partition(".")
    base = datetime.strptime(whole, "%Y-%m-%dT%H:%M:%S").timestamp() - time.timezone
    return base + float(f"0.{frac or '0'}")


def bench_ps(work: Path, env: dict[str, str], runs: int) -> None:
    from compose.cli import COMMANDS

    if "ps" not in COMMANDS:
        print("ps: not available yet")
        return
    cli = shipyard()
    project = work / "stack20"
    make_stack(project, 20)
    timed([*cli, "up", "-d"], project, env)
    try:
        samples = [timed([*cli, "ps"], project, env) for _ in range(max(runs, 5))]
    finally:
        timed([*cli, "down", "-t", "0"], project, env)
    print(f"ps on 20 running services: {median_ms(samples)}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", "--runs", type=int, default=3)
    parser.add_argument("--sizes", default="1,5,20,100")
    parser.add_argument("--skip", default="", help="comma list of: sizes,healthy,ps")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("needs root (containers)", file=sys.stderr)
        return 1
    from tests.support import busybox

    skip = set(filter(None, args.skip.split(",")))
    with tempfile.TemporaryDirectory(prefix="stack-bench-") as tmp:
        work = Path(tmp)
        # Bytecode cached as in an installed copy (this environment may turn writing it off).
        env = {**os.environ, "SHIPYARD_ROOT": str(work / "root")}
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        tar = busybox.make_rootfs_tar(work / "busybox.tar")
        timed([*shipyard(), "image", "import", str(tar), "busybox"], work, env)
        try:
            if "sizes" not in skip:
                bench_sizes(work, env, [int(s) for s in args.sizes.split(",")], args.runs)
            if "healthy" not in skip:
                bench_healthy(work, env, args.runs)
            if "ps" not in skip:
                bench_ps(work, env, args.runs)
        finally:
            for project in work.iterdir():
                if (project / "compose.yaml").exists():
                    subprocess.run([*shipyard(), "down", "-t", "0", "-v"], cwd=project, env=env,
                                   capture_output=True)
            from engine.layout import Layout

            # The engine's run directory (names, locks) goes with the temporary root.
            shutil.rmtree(Layout.at(work / "root").run, ignore_errors=True)
    print(json.dumps({"runs": args.runs}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
