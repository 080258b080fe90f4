"""Side-by-side benchmark: Shipyard against podman-compose and docker-compose on this machine.

    sudo bash benchmarks/peers_setup.sh           # installs the peers when missing
    sudo .venv/bin/python benchmarks/peers.py [-n RUNS] [--tools shipyard,podman,docker]

Every tool gets the same busybox image (tests/support/busybox.py, imported under
`busybox:latest`) and the same generated Compose files: 1, 5, 20 and 100 `sleep 3600`
services, and a two-service `service_healthy` chain (healthcheck `CMD true`, interval 1s).
Measured as whole-process wall time, medians over N runs (one run for 100 services):
`up -d`, `down -t 0`, `ps` on the running 20-service stack, and one container's
`run --rm busybox true` (also `runc run` of a bundle). The peers run in private state under
/var/tmp/shipyard-peers: podman with its own storage and containers.conf, dockerd started
here with its own data-root and stopped at the end. Prints one markdown table, writes it to
benchmarks/results/latest.md, removes everything it made and prints "clean" after checking.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import select
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.peers_host import (  # noqa: E402
    DOCKER,
    PEERS,
    Failed,
    host_state,
    last_line,
    leftovers,
    quiet,
    restore_host,
    sh,
    start_dockerd,
    stop_dockerd,
)
from tests.support import busybox  # noqa: E402

SIZES = (1, 5, 20, 100)
IMAGE = "busybox:latest"
NA_UP = "n/a (up not built yet)"
NA_HEALTH = "n/a (healthchecks need systemd here; podman-compose ignores the condition)"


@dataclass(slots=True)
class Tool:
    """One column: how to drive a tool, and what it measured."""

    key: str
    title: str
    env: dict[str, str]
    compose: list[str] | None       # argv before `-f FILE -p NAME up -d`; None: not available
    run: list[str]                  # argv before `--rm busybox:latest true`
    count: Callable[[str], int]     # containers (any state) of a Compose project
    why_na: str = ""
    ls: Callable[..., list[str]] | None = None  # Shipyard: container ids by label filters
    cells: dict[str, str] = field(default_factory=dict)


def timed(argv: list[str], env: dict[str, str], timeout: float, cwd: Path | None = None) -> float:
    """Wall time of one whole process; output goes to a file (no pipe to drain). On timeout
    its whole process group is killed (podman-compose leaves podman children otherwise)."""
    with tempfile.TemporaryFile("w+") as out:
        t = time.perf_counter()
        proc = subprocess.Popen(argv, env=env, cwd=cwd, stdout=out, stderr=out,
                                stdin=subprocess.DEVNULL, start_new_session=True)
        # Woken by the exit itself (a pidfd): Popen.wait(timeout) polls, sleeping up to
        # 50 ms between looks, which rounded every figure up to the next ~50 ms.
        exited = os.pidfd_open(proc.pid)
        try:
            ready, _, _ = select.select([exited], [], [], timeout)
        finally:
            os.close(exited)
        elapsed = time.perf_counter() - t
        if not ready:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            raise Failed(f"timed out after {timeout:.0f} s")
        code = proc.wait()
        if code != 0:
            out.seek(0)
            raise Failed(f"exit {code}: {last_line(out.read())}")
    return elapsed


def fmt(samples: list[float]) -> str:
    if not samples:
        return "-"
    m = statistics.median(samples)
    return f"{m * 1000:.0f} ms" if m < 1 else f"{m:.2f} s"


# --- Compose files -------------------------------------------------------------------------

def write_stacks(base: Path) -> dict[str, Path]:
    """Compose files in the 2.4 format, which docker-compose 1.29 accepts with
    `condition: service_healthy` (its 3.x formats dropped it) and the others read too."""
    files = {}
    for n in SIZES:
        services = "".join(f"  s{i:03d}:\n    image: {IMAGE}\n    command: sleep 3600\n"
                           for i in range(1, n + 1))
        files[f"pb{n}"] = base / f"pb{n}" / "compose.yaml"
        files[f"pb{n}"].parent.mkdir(parents=True, exist_ok=True)
        files[f"pb{n}"].write_text(f'version: "2.4"\nservices:\n{services}')
    health = base / "pbhealth" / "compose.yaml"
    health.parent.mkdir(parents=True, exist_ok=True)
    health.write_text(
        'version: "2.4"\nservices:\n'
        f"  db:\n    image: {IMAGE}\n    command: sleep 3600\n"
        '    healthcheck:\n      test: ["CMD", "true"]\n      interval: 1s\n'
        f"  web:\n    image: {IMAGE}\n    command: sleep 3600\n"
        "    depends_on:\n      db:\n        condition: service_healthy\n")
    files["pbhealth"] = health
    return files


def compose(tool: Tool, file: Path, project: str, *args: str) -> list[str]:
    assert tool.compose is not None
    return [*tool.compose, "-f", str(file), "-p", project, *args]


def bench_stacks(tool: Tool, files: dict[str, Path], runs: int, ps_runs: int) -> None:
    for n in SIZES:
        project, file = f"pb{n}", files[f"pb{n}"]
        timeout = 180 if n >= 100 else 90
        ups, downs, pss = [], [], []
        try:
            for i in range(1 if n >= 100 else runs):
                ups.append(timed(compose(tool, file, project, "up", "-d"), tool.env, timeout,
                                 file.parent))
                if (found := tool.count(project)) != n:
                    raise Failed(f"up -d left {found} of {n} containers")
                if n == 20 and i == 0:
                    pss = [timed(compose(tool, file, project, "ps"), tool.env, 30, file.parent)
                           for _ in range(ps_runs)]
                downs.append(timed(compose(tool, file, project, "down", "-t", "0"), tool.env,
                                   timeout, file.parent))
                if (found := tool.count(project)) != 0:
                    raise Failed(f"down -t 0 left {found} containers")
        except Failed as e:
            print(f"  {tool.key}: {n} services: {e}", file=sys.stderr)
            tool.cells[f"up{n}"] = f"failed: {e}"
            force_down(tool, file, project)
            continue
        finally:
            print(f"  {tool.key}: {n} services: up {fmt(ups)}, down {fmt(downs)}", file=sys.stderr)
        tool.cells[f"up{n}"], tool.cells[f"down{n}"] = fmt(ups), fmt(downs)
        if pss:
            tool.cells["ps20"] = fmt(pss)


def force_down(tool: Tool, file: Path, project: str) -> None:
    try:
        timed(compose(tool, file, project, "down", "-t", "0"), tool.env, 300, file.parent)
    except Failed as e:
        print(f"  {tool.key}: cleanup down of {project}: {e}", file=sys.stderr)


def bench_health(tool: Tool, files: dict[str, Path], runs: int,
                 probe_end: Callable[[str], float | None]) -> None:
    """`up -d` of the chain, and how long after db's first passing probe `up` returned."""
    file, project = files["pbhealth"], "pbhealth"
    ups, lags = [], []
    try:
        for _ in range(runs):
            ups.append(timed(compose(tool, file, project, "up", "-d"), tool.env, 60, file.parent))
            returned = time.time()
            if (found := tool.count(project)) != 2:
                raise Failed(f"up -d left {found} of 2 containers")
            if (end := probe_end(project)) is not None:
                lags.append(returned - end)
            timed(compose(tool, file, project, "down", "-t", "0"), tool.env, 60, file.parent)
    except Failed as e:
        tool.cells["health"] = f"failed: {e}"
        force_down(tool, file, project)
        return
    tool.cells["health"] = fmt(ups)
    tool.cells["lag"] = fmt(lags) if lags else "n/a (no probe log)"


def first_pass(health: dict) -> float | None:
    """End time (epoch s) of the first passing probe in Docker's (or Shipyard's) health log."""
    for probe in health.get("Log") or health.get("log") or []:
        code = probe.get("ExitCode", probe.get("exit_code"))
        end = probe.get("End") or probe.get("end")
        if code == 0 and end:
            # RFC 3339 with nanoseconds: fromisoformat takes at most microseconds
            head, _, frac = end.rstrip("Z").partition(".")
            stamp = datetime.fromisoformat(f"{head}.{(frac + '000000')[:6]}+00:00")
            return stamp.timestamp()
    return None


# --- One container: run --rm true ------------------------------------------------------------

def bench_run(tool: Tool, runs: int) -> None:
    for key, extra in (("run", []), ("run_none", ["--network", "none"])):
        try:
            timed([*tool.run, "--rm", *extra, IMAGE, "true"], tool.env, 60)  # warm-up
            samples = [timed([*tool.run, "--rm", *extra, IMAGE, "true"], tool.env, 60)
                       for _ in range(runs)]
            tool.cells[key] = fmt(samples)
        except Failed as e:
            tool.cells[key] = f"failed: {e}"


def bench_runc(rootfs: Path, runs: int) -> str:
    """`runc run` of busybox `true` from a bundle made by `runc spec` (no network: runc has
    none to offer)."""
    bundle = rootfs.parent
    sh(["runc", "spec", "--bundle", str(bundle)])
    spec_file = bundle / "config.json"
    spec = json.loads(spec_file.read_text())
    spec["root"] = {"path": str(rootfs), "readonly": True}
    spec["process"].update(terminal=False, args=["true"])
    spec_file.write_text(json.dumps(spec))
    samples = []
    for i in range(-1, runs):  # -1: warm-up
        took = timed(["runc", "run", "--bundle", str(bundle), f"peers-bench-{i + 1}"],
                     dict(os.environ), 30)
        if i >= 0:
            samples.append(took)
    return fmt(samples)


# --- The tools ------------------------------------------------------------------------------

def shipyard_tool() -> Tool:
    exe = REPO / ".venv" / "bin" / "shipyard"
    cli = str(exe) if exe.exists() else shutil.which("shipyard") or "shipyard"
    env = {**os.environ, "SHIPYARD_ROOT": str(PEERS / "shipyard-root")}
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # bytecode cached, as in an installed copy
    # `up` lands as a subcommand; until then the stack rows say so
    commands = set(re.findall(r"^ {4}(\w[\w-]*)", sh([cli, "--help"], env), re.M))
    has_up = {"up", "down", "ps"} <= commands

    def ls(*filters: str) -> list[str]:
        argv = [cli, "container", "ls", "-a", "-q", "--no-trunc"]
        for f in filters:
            argv += ["--filter", f"label={f}"]
        return sh(argv, env).split()

    return Tool("shipyard", "Shipyard", env, [cli] if has_up else None, [cli, "container", "run"],
                lambda p: len(ls(f"com.docker.compose.project={p}")),
                "" if has_up else NA_UP, ls)


def podman_tool() -> Tool:
    env = {**os.environ, "CONTAINERS_CONF": str(PEERS / "containers.conf"),
           "CONTAINERS_STORAGE_CONF": str(PEERS / "storage.conf")}
    pc = str(PEERS / "venv" / "bin" / "podman-compose")
    version = re.search(r"podman-compose version ([\d.]+)", sh([pc, "version"], env))
    podman = sh(["podman", "--version"], env).split()[-1]
    return Tool("podman", f"podman-compose {version[1] if version else '?'} on podman {podman}",
                env, [pc], ["podman", "run"],
                lambda p: len(sh(["podman", "ps", "-a", "-q", "--filter",
                                  f"label=com.docker.compose.project={p}"], env).split()))


def docker_tool() -> Tool:
    env = {**os.environ, "DOCKER_HOST": f"unix://{PEERS}/docker.sock"}
    dc = sh(["docker-compose", "version", "--short"], env).strip()
    server = sh([DOCKER, "version", "--format", "{{.Server.Version}}"], env).strip()
    return Tool("docker", f"docker-compose {dc} on dockerd {server}", env, ["docker-compose"],
                [DOCKER, "run"],
                lambda p: len(sh([DOCKER, "ps", "-a", "-q", "--filter",
                                  f"label=com.docker.compose.project={p}"], env).split()))


def docker_probe_end(tool: Tool) -> Callable[[str], float | None]:
    def probe_end(project: str) -> float | None:
        ids = sh([DOCKER, "ps", "-q", "--filter", f"label=com.docker.compose.project={project}",
                  "--filter", "label=com.docker.compose.service=db"], tool.env).split()
        if not ids:
            return None
        state = json.loads(sh([DOCKER, "inspect", ids[0]], tool.env))[0]["State"]
        return first_pass(state.get("Health") or {})
    return probe_end


def shipyard_probe_end(tool: Tool) -> Callable[[str], float | None]:
    def probe_end(project: str) -> float | None:
        assert tool.ls is not None
        ids = tool.ls(f"com.docker.compose.project={project}", "com.docker.compose.service=db")
        if not ids:
            return None
        inspect = sh([*tool.run[:-1], "inspect", ids[0]], tool.env)
        return first_pass(json.loads(inspect)[0]["State"].get("Health") or {})
    return probe_end


# --- Cleaning up and checking ---------------------------------------------------------------

def clean_shipyard(tool: Tool) -> None:
    cli = tool.run[0]
    assert tool.ls is not None
    for cid in tool.ls():
        quiet([cli, "container", "rm", "-f", "-v", cid], tool.env)
    for net in quiet([cli, "network", "ls", "-q"], tool.env).split():
        quiet([cli, "network", "rm", net], tool.env)
    quiet([cli, "image", "rm", IMAGE], tool.env)


def clean_podman(tool: Tool) -> None:
    env = tool.env
    quiet(["podman", "rm", "-a", "-f", "-t", "0"], env)
    quiet(["podman", "pod", "rm", "-a", "-f"], env)
    quiet(["podman", "network", "prune", "-f"], env)
    quiet(["podman", "rmi", "-a", "-f"], env)
    # the storage and network definitions are the benchmark's own: drop them whole
    quiet(["podman", "system", "reset", "-f"], env)


def clean_docker(tool: Tool | None, dockerd: subprocess.Popen | None) -> None:
    env = {**os.environ, "DOCKER_HOST": f"unix://{PEERS}/docker.sock"}
    if dockerd is not None and dockerd.poll() is None:
        ids = quiet([DOCKER, "ps", "-a", "-q"], env).split()
        if ids:
            quiet([DOCKER, "rm", "-f", *ids], env)
        quiet([DOCKER, "network", "prune", "-f"], env)
        quiet([DOCKER, "rmi", "-f", IMAGE], env)
        stop_dockerd(dockerd)


# --- The table ------------------------------------------------------------------------------

GOALS = {"up20": "< 0.5 s", "down20": "< 0.3 s", "ps20": "< 100 ms",
         "lag": "< 0.2 s"}


def stack_rows(runs: int, ps_runs: int) -> list[tuple[str, str]]:
    rows = []
    for n in SIZES:
        times = "1 run" if n >= 100 else f"median of {runs}"
        noun = "service" if n == 1 else "services"
        rows.append((f"up{n}", f"`up -d`, {n} {noun} ({times})"))
        rows.append((f"down{n}", f"`down -t 0`, {n} {noun} ({times})"))
    rows.append(("ps20", f"`ps`, 20 running services (median of {ps_runs})"))
    rows.append(("health", f"`up -d`, 2-service `service_healthy` chain (median of {runs})"))
    rows.append(("lag", "  ... `up` returned this long after db's first passing probe"))
    return rows


def render(tools: list[Tool], runc: str, args: argparse.Namespace, started: str) -> str:
    kernel = os.uname().release
    lines = [f"# Shipyard and its peers, side by side ({started})", "",
             f"Machine: {os.cpu_count()} cores, kernel {kernel}. Whole-process wall time.",
             f"Command: `sudo .venv/bin/python benchmarks/peers.py -n {args.runs}` "
             "(after `sudo bash benchmarks/peers_setup.sh`).", "",
             "## Compose stacks of busybox `sleep 3600` services", "",
             "| measured | " + " | ".join(t.title for t in tools) + " | Shipyard goal |",
             "|---" * (len(tools) + 2) + "|"]
    for key, label in stack_rows(args.runs, args.ps_runs):
        cells = []
        for t in tools:
            if t.compose is None:
                cells.append(t.why_na)
            elif key in ("health", "lag") and t.key == "podman":
                cells.append(NA_HEALTH if key == "health" else "n/a")
            else:
                cells.append(t.cells.get(key, "-"))
        lines.append(f"| {label} | " + " | ".join(cells) + f" | {GOALS.get(key, '')} |")
    lines += ["", f"## One container: `run --rm busybox true` (median of {args.run_runs})", "",
              "| tool | default network | `--network none` |", "|---|---|---|"]
    for t in tools:
        cmd = " ".join(Path(t.run[0]).name if i == 0 else a for i, a in enumerate(t.run))
        lines.append(f"| `{cmd}` | {t.cells.get('run', '-')} | {t.cells.get('run_none', '-')} |")
    lines.append(f"| `runc run` (bundle from `runc spec`, no network) | - | {runc} |")
    lines += ["", "Notes: podman is rootful with runc and private storage; its healthchecks "
              "need systemd timers, which this machine does not run, and podman-compose 1.6 "
              "ignores `condition: service_healthy` on podman 4.3, so that row is skipped. "
              "dockerd runs with `--iptables=false --ip-forward=false` and its own data-root. "
              "The same busybox image (tests/support/busybox.py) is imported into each tool.", ""]
    return "\n".join(lines)


# --- Main -----------------------------------------------------------------------------------

def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", "--runs", type=int, default=3,
                        help="runs per stack size (100 services: always 1)")
    parser.add_argument("--ps-runs", type=int, default=5)
    parser.add_argument("--run-runs", type=int, default=5, help="runs of `run --rm true`")
    parser.add_argument("--tools", default="shipyard,podman,docker")
    parser.add_argument("-o", "--output", type=Path,
                        default=REPO / "benchmarks" / "results" / "latest.md")
    args = parser.parse_args()
    wanted = args.tools.split(",")
    if os.geteuid() != 0:
        print("peers.py needs root (podman rootful, dockerd)", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    before = host_state()
    PEERS.mkdir(parents=True, exist_ok=True)
    base = PEERS / "stacks"
    files = write_stacks(base)
    tar = busybox.make_rootfs_tar(PEERS / "busybox.tar")
    rootfs = busybox.make_rootfs(PEERS / "bundle" / "rootfs")
    tools: list[Tool] = []
    dockerd = None
    cleaned: set[str] = set()
    clock = time.monotonic()
    try:
        if "shipyard" in wanted:
            tool = shipyard_tool()
            tools.append(tool)
            sh([tool.run[0], "image", "import", str(tar), IMAGE], tool.env)
            print("shipyard ...", file=sys.stderr)
            bench_run(tool, args.run_runs)
            if tool.compose is not None:
                bench_stacks(tool, files, args.runs, args.ps_runs)
                bench_health(tool, files, args.runs, shipyard_probe_end(tool))
            clean_shipyard(tool)
            cleaned.add(tool.key)
        if "podman" in wanted:
            tool = podman_tool()
            tools.append(tool)
            sh(["podman", "import", str(tar), IMAGE], tool.env)
            # short names resolve through docker.io: make that name local too, never a pull
            sh(["podman", "tag", f"localhost/{IMAGE}", f"docker.io/library/{IMAGE}"], tool.env)
            print("podman ...", file=sys.stderr)
            bench_run(tool, args.run_runs)
            bench_stacks(tool, files, args.runs, args.ps_runs)
            clean_podman(tool)
            cleaned.add(tool.key)
        if "docker" in wanted:
            dockerd = start_dockerd()
            tool = docker_tool()
            tools.append(tool)
            sh([DOCKER, "import", str(tar), IMAGE], tool.env)
            print("docker ...", file=sys.stderr)
            bench_run(tool, args.run_runs)
            bench_stacks(tool, files, args.runs, args.ps_runs)
            bench_health(tool, files, args.runs, docker_probe_end(tool))
            clean_docker(tool, dockerd)
        try:
            runc = bench_runc(rootfs, args.run_runs) if shutil.which("runc") else "n/a"
        except Failed as e:
            runc = f"failed: {e}"
    finally:
        for tool in (t for t in tools if t.key not in cleaned):
            if tool.key == "shipyard":
                clean_shipyard(tool)
            elif tool.key == "podman":
                clean_podman(tool)
        clean_docker(None, dockerd)
        restore_host(before)
    table = render(tools, runc, args, started)
    print(table)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(table)
    print(f"wrote {args.output} in {time.monotonic() - clock:.0f} s", file=sys.stderr)
    problems = leftovers(before)
    if problems:
        print("NOT clean:\n  " + "\n  ".join(problems))
        return 1
    print("clean")
    return 0


if __name__ == "__main__":
    sys.exit(main())
