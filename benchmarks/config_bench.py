"""How long a whole `shipyard config -q` process takes.

Generates a 100-service Compose file (ports, volumes, env, healthchecks, depends_on, networks,
labels, deploy limits: what real files hold) and times `.venv/bin/shipyard config -q` on it and
on examples/wordpress, as separate processes (median of N runs). Then prints the modules that
cost the most to import (`python -X importtime`). Goal: under 150 ms for 100 services.

    .venv/bin/python benchmarks/config_bench.py [--runs N] [--services N]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHIPYARD = ROOT / ".venv" / "bin" / "shipyard"
PYTHON = ROOT / ".venv" / "bin" / "python"


def generate(count: int) -> str:
    lines = ["name: bench", "x-common: &common", "  restart: unless-stopped",
             "  logging: {driver: json-file, options: {max-size: 10m}}", "services:"]
    for i in range(count):
        lines += [
            f"  svc{i}:",
            "    <<: *common",
            f"    image: registry.example.com/team/app{i % 7}:1.{i}",
            f"    command: [\"serve\", \"--port\", \"{8000 + i}\"]",
            "    environment:",
            f"      APP_NAME: svc{i}",
            "      LOG_LEVEL: ${LOG_LEVEL:-info}",
            f"      - PLACEHOLDER{i}" if False else f"      DB_URL: postgres://db{i % 3}/app",
            "    ports:",
            f"      - \"{10000 + i}:{8000 + i}\"",
            f"      - \"127.0.0.1:{20000 + i}:9000/udp\"",
            "    volumes:",
            f"      - data{i % 10}:/var/lib/app",
            f"      - ./conf/svc{i}:/etc/app:ro",
            "    labels:",
            f"      - traefik.http.routers.svc{i}.rule=Host(`svc{i}.example.com`)",
            "    healthcheck:",
            f"      test: [\"CMD\", \"curl\", \"-f\", \"http://localhost:{8000 + i}/health\"]",
            "      interval: 30s",
            "      timeout: 5s",
            "      retries: 3",
            "    networks: [front, back]",
            "    deploy:",
            "      resources:",
            "        limits: {cpus: '0.5', memory: 256m}",
        ]
        if i:
            lines += ["    depends_on:", f"      svc{i - 1}:", "        condition: service_started"]
    lines += ["networks:", "  front: {}", "  back: {internal: true}", "volumes:"]
    lines += [f"  data{i}: {{}}" for i in range(10)]
    return "\n".join(lines) + "\n"


def bench_env(compiled: bool) -> dict[str, str]:
    """The environment of the timed processes. With `compiled`, bytecode is cached (under a
    temporary prefix, not in the tree) as it is for an installed package; without it every
    run compiles every module, which is what PYTHONDONTWRITEBYTECODE=1 costs."""
    env = dict(os.environ)
    if compiled:
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = os.path.join(tempfile.gettempdir(), "shipyard-bench-pyc")
    else:
        env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


ENV: dict[str, str] = {}


def time_runs(argv: list[str], runs: int, cwd: Path) -> list[float]:
    subprocess.run(argv, cwd=cwd, capture_output=True, env=ENV)  # warm-up: caches, bytecode
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        result = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, env=ENV)
        times.append((time.perf_counter() - start) * 1000)
        if result.returncode != 0:
            sys.exit(f"{' '.join(argv)} failed:\n{result.stderr}")
    return times


def report(label: str, times: list[float]) -> None:
    print(f"{label:<38} median {statistics.median(times):6.1f} ms   "
          f"min {min(times):6.1f} ms   max {max(times):6.1f} ms   (n={len(times)})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--services", type=int, default=100)
    parser.add_argument("--no-bytecode", action="store_true",
                        help="compile every module on every run (PYTHONDONTWRITEBYTECODE=1)")
    args = parser.parse_args()
    ENV.update(bench_env(compiled=not args.no_bytecode))
    print("bytecode:", "not cached" if args.no_bytecode else "cached", "\n")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        (work / "compose.yaml").write_text(generate(args.services))
        base = [str(SHIPYARD)]
        report("python -c pass (interpreter floor)",
               time_runs([str(PYTHON), "-c", "pass"], args.runs, work))
        report("shipyard version (CLI floor)", time_runs([*base, "version"], args.runs, work))
        report(f"config -q, {args.services} services",
               time_runs([*base, "-f", "compose.yaml", "config", "-q"], args.runs, work))
        report(f"config (print), {args.services} services",
               time_runs([*base, "-f", "compose.yaml", "config"], args.runs, work))
        wordpress = str(ROOT / "examples" / "wordpress" / "compose.yaml")
        report("config -q, examples/wordpress",
               time_runs([*base, "-f", wordpress, "config", "-q"], args.runs, work))
        env = ENV
        result = subprocess.run([str(PYTHON), "-X", "importtime", "-c",
                                 "from compose.cli import main; "
                                 "main(['-f', 'compose.yaml', 'config', '-q'])"],
                                cwd=work, capture_output=True, text=True, env=env)
    rows = []
    for line in result.stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            self_us, total_us, name = line.removeprefix("import time:").split("|")
            if self_us.strip().isdigit():
                rows.append((int(total_us), int(self_us), name.strip()))
    print("\ntop importers (cumulative us, self us, module):")
    for total, own, name in sorted(rows, reverse=True)[:15]:
        print(f"  {total:8d} {own:8d}  {name}")


if __name__ == "__main__":
    main()
