"""Layer unpack throughput: engine.layers.unpack against GNU `tar -x` on the same layer.

    .venv/bin/python benchmarks/unpack_bench.py [--size-mb 200] [--gzip] [--runs 3]

Generates a layer of mixed files (a few large, many medium, very many small, plus symlinks
and hard links), then unpacks it with each tool into a fresh directory on the same
filesystem, best of N runs. Prints MB/s of uncompressed tar for both and the ratio.
"""

from __future__ import annotations

import argparse
import gzip
import io
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from engine import layers
from engine.layout import Layout


def make_layer(path: Path, size_mb: int) -> int:
    """Writes a plain tar of about `size_mb` MB: 50% large files, 35% medium, 15% small."""
    budget = size_mb * 1_000_000
    plan = [(0.50, 4_000_000), (0.35, 32_000), (0.15, 1_500)]
    chunk = os.urandom(1 << 20)
    count = 0
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tar:
        for share, file_size in plan:
            n = max(1, int(budget * share) // file_size)
            for i in range(n):
                d = f"usr/share/s{file_size}/d{i // 200}"
                info = tarfile.TarInfo(f"{d}/f{i}")
                info.size, info.mode, info.mtime = file_size, 0o644, 1_700_000_000
                data = (chunk * (file_size // len(chunk) + 1))[:file_size] if i % 2 else \
                    bytes(file_size)
                tar.addfile(info, io.BytesIO(data))
                count += 1
                if i % 50 == 0:
                    link = tarfile.TarInfo(f"{d}/l{i}")
                    link.type, link.linkname = tarfile.SYMTYPE, f"f{i}"
                    tar.addfile(link)
                    hard = tarfile.TarInfo(f"{d}/h{i}")
                    hard.type, hard.linkname = tarfile.LNKTYPE, f"{d}/f{i}"
                    tar.addfile(hard)
    return count


def best_of(runs: int, fn) -> float:  # type: ignore[no-untyped-def]
    times = []
    for _ in range(runs):
        times.append(fn())
    return min(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=200)
    parser.add_argument("--gzip", action="store_true", help="compress the layer (tar -xzf)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--dir", default=None, help="scratch directory (default: a temp dir)")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="unpack-bench-", dir=args.dir))
    try:
        tar_path = work / "layer.tar"
        files = make_layer(tar_path, args.size_mb)
        tar_size = tar_path.stat().st_size
        layer_path = tar_path
        if args.gzip:
            layer_path = work / "layer.tar.gz"
            with open(tar_path, "rb") as src, gzip.open(layer_path, "wb", compresslevel=1) as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
        packed = f", gzip {layer_path.stat().st_size / 1e6:.0f} MB" if args.gzip else ""
        print(f"layer: {tar_size / 1e6:.0f} MB uncompressed, {files} files{packed}")

        def run_tar() -> float:
            dest = work / "tar-out"
            dest.mkdir()
            flags = "-xzf" if args.gzip else "-xf"
            start = time.perf_counter()
            subprocess.run(["tar", flags, str(layer_path), "-C", str(dest),
                            "--numeric-owner"], check=True)
            elapsed = time.perf_counter() - start
            shutil.rmtree(dest)
            return elapsed

        def run_engine() -> float:
            layout = Layout.at(work / "engine")
            start = time.perf_counter()
            layer = layers.unpack_file(layout, layer_path, name="bench")
            elapsed = time.perf_counter() - start
            layers.remove(layout, layer.chain_id)
            return elapsed

        t_tar = best_of(args.runs, run_tar)
        t_engine = best_of(args.runs, run_engine)
        mb = tar_size / 1e6
        print(f"tar -x:         {mb / t_tar:8.1f} MB/s ({t_tar:.2f} s)")
        print(f"layers.unpack:  {mb / t_engine:8.1f} MB/s ({t_engine:.2f} s, incl. sha256 "
              "diff_id)")
        print(f"ratio (unpack / tar): {t_tar / t_engine:.2f}x the speed of tar")
    finally:
        shutil.rmtree(work)
    return 0


if __name__ == "__main__":
    sys.exit(main())
