"""Pull of a multi-layer image from a local registry: Shipyard's client vs `skopeo copy`.

Builds an image of LAYERS layers (~TOTAL_MB MB of incompressible data, gzip'd), seeds a local
`docker-registry` with skopeo, then times, REPEAT times each (median shown):
  - shipyard: `engine.pull.fetch_image` into an empty content store (download + verify),
  - shipyard+unpack: the same, also unpacking the layers,
  - skopeo: `skopeo copy docker://... dir:DIR` (download + verify, no unpacking).
Run: .venv/bin/python benchmarks/pull_bench.py [--layers 5] [--mb 100] [--repeat 3]
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

import anyio

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.content import ContentStore
from engine.layout import Layout
from engine.pull import fetch_image
from engine.registry import RegistryClient
from tests.support import registry as reg


def build_image(tmp: Path, layers: int, total_mb: int) -> reg.OciLayout:
    layout = reg.OciLayout(tmp / "oci")
    per = total_mb * 1024 * 1024 // layers
    descs = [layout.layer(reg.tar_of({f"data/{i}.bin": os.urandom(per)}), level=1)
             for i in range(layers)]
    layout.tag(layout.image(descs), "latest")
    return layout


def time_shipyard(ref: str, root: Path, unpack: bool) -> float:
    shutil.rmtree(root, ignore_errors=True)
    store = ContentStore(Layout.at(root).ensure())

    async def main() -> None:
        async with RegistryClient() as client:
            await fetch_image(ref, store, client, unpack=unpack)

    start = time.perf_counter()
    anyio.run(main)
    return time.perf_counter() - start


def time_skopeo(ref: str, dest: Path) -> float:
    shutil.rmtree(dest, ignore_errors=True)
    start = time.perf_counter()
    subprocess.run([reg.SKOPEO, "copy", "--quiet", "--src-tls-verify=false",
                    f"docker://{ref}", f"dir:{dest}"], check=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=5)
    parser.add_argument("--mb", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    if not reg.available():
        sys.exit("needs docker-registry and skopeo (apt-get install docker-registry skopeo)")
    with tempfile.TemporaryDirectory(prefix="pull-bench-") as t:
        tmp = Path(t)
        layout = build_image(tmp, args.layers, args.mb)
        size = sum(p.stat().st_size for p in (layout.root / "blobs" / "sha256").iterdir())
        registry = reg.LocalRegistry(tmp / "registry")
        try:
            ref = f"{registry.address}/bench/image:latest"
            reg.skopeo_copy(f"oci:{layout.root}:latest", f"docker://{ref}")
            results: dict[str, list[float]] = {"shipyard": [], "shipyard+unpack": [],
                                               "skopeo": []}
            for _ in range(args.repeat):
                results["skopeo"].append(time_skopeo(ref, tmp / "skopeo"))
                results["shipyard"].append(time_shipyard(ref, tmp / "root", False))
                results["shipyard+unpack"].append(time_shipyard(ref, tmp / "root", True))
        finally:
            registry.stop()
    print(f"image: {args.layers} layers, {size / 1e6:.1f} MB of blobs; median of {args.repeat}")
    medians = {name: statistics.median(times) for name, times in results.items()}
    for name, seconds in medians.items():
        print(f"  {name:16s} {seconds:6.2f} s  {size / 1e6 / seconds:7.1f} MB/s")
    print(f"  ratio shipyard/skopeo: {medians['shipyard'] / medians['skopeo']:.2f} "
          f"(with unpacking: {medians['shipyard+unpack'] / medians['skopeo']:.2f})")


if __name__ == "__main__":
    main()
