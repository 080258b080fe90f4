"""Builder timings: a cold build and an unchanged rebuild of a two-stage Dockerfile.

    sudo .venv/bin/python benchmarks/build_bench.py [--runs 10] [--network none|default]
    sudo .venv/bin/python benchmarks/build_bench.py --cli     # through `shipyard image build`

Base image: the test suite's busybox rootfs, imported as busybox:latest into a temporary
engine root. The Dockerfile has two stages (WORKDIR, COPY of a small source tree, two RUNs,
then COPY --from and metadata). "cold" builds in a fresh root each run (no cache); "rebuild"
repeats the build unchanged (every step from cache). With --cli each run is a fresh
`shipyard` process (interpreter start and imports included), as a user would see it.
Prints medians (and min/max) in milliseconds. Needs root (mounts, namespaces).
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
from pathlib import Path

HERE = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(HERE))

from engine import Engine  # noqa: E402
from engine.build import build  # noqa: E402
from tests.support import busybox  # noqa: E402

DOCKERFILE = """\
FROM busybox AS builder
ARG VERSION=1.0
WORKDIR /src
COPY src/ ./
RUN cat *.txt > /bundle && echo "version $VERSION" >> /bundle
RUN mkdir -p /out && cp /bundle /out/app && rm /bundle

FROM busybox
COPY --from=builder /out/app /app/app
ENV MODE=production
EXPOSE 8080
USER daemon
WORKDIR /app
CMD ["cat", "/app/app"]
"""


def make_context(path: Path) -> Path:
    (path / "src").mkdir(parents=True)
    for i in range(50):
        (path / "src" / f"part{i:02}.txt").write_text(f"part {i}\n" * 20)
    (path / "Dockerfile").write_text(DOCKERFILE)
    (path / ".dockerignore").write_text("*.tmp\n")
    return path


def new_root(base: Path, tar: Path) -> Engine:
    root = Path(tempfile.mkdtemp(dir=base, prefix="root-"))
    engine = Engine(root)
    engine.images.import_rootfs(tar, "busybox:latest", ['CMD ["sh"]'])
    return engine


def cleanup(engine: Engine) -> None:
    for net in engine.networks.list():
        engine.networks.remove_network(net.name)
    shutil.rmtree(engine.layout.root, ignore_errors=True)


def timed_cli(root: Path, context: Path, network: str) -> float:
    env = dict(os.environ, SHIPYARD_ROOT=str(root))
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "compose.cli", "image", "build", "-q", "--network",
                    network, "-t", "bench:latest", str(context)], cwd=HERE, env=env,
                   check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


def report(name: str, seconds: list[float]) -> None:
    ms = [s * 1000 for s in seconds]
    print(f"{name:<10} median {statistics.median(ms):8.1f} ms   min {min(ms):8.1f}   "
          f"max {max(ms):8.1f}   ({len(ms)} runs)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--network", default="none",
                        help="network for RUN steps: none (default) or default (the bridge)")
    parser.add_argument("--cli", action="store_true", help="time `shipyard image build`")
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("build_bench needs root (overlay mounts, namespaces)")
    base = Path(tempfile.mkdtemp(prefix="shipyard-build-bench-"))
    try:
        tar = busybox.make_rootfs_tar(base / "busybox.tar")
        context = make_context(base / "ctx")
        cold: list[float] = []
        engines = []
        for _ in range(max(1, args.runs // 2)):
            engine = new_root(base, tar)
            engines.append(engine)
            if args.cli:
                cold.append(timed_cli(engine.layout.root, context, args.network))
            else:
                started = time.perf_counter()
                build(engine, context, tags=["bench:latest"], network=args.network)
                cold.append(time.perf_counter() - started)
        warm: list[float] = []
        engine = engines[-1]
        ids = set()
        for _ in range(args.runs):
            if args.cli:
                warm.append(timed_cli(engine.layout.root, context, args.network))
            else:
                started = time.perf_counter()
                ids.add(build(engine, context, tags=["bench:latest"], network=args.network).id)
                warm.append(time.perf_counter() - started)
        print(f"two-stage Dockerfile, {DOCKERFILE.count(chr(10))} lines, RUN network "
              f"{args.network}, {'CLI process' if args.cli else 'in-process API'}")
        report("cold", cold)
        report("rebuild", warm)
        if ids:
            print(f"rebuilds gave {len(ids)} distinct image id(s)")
        for engine in engines:
            cleanup(engine)
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
