"""`import engine.images` stays cheap: `shipyard up` imports it on every run to resolve image
names, so the tar unpacker and the decompressors must load only when a layer is unpacked."""

from __future__ import annotations

from pathlib import Path

from tests.support.imports import loaded_after

REPO = Path(__file__).resolve().parents[2]
HEAVY = ("tarfile", "uuid", "zstandard", "gzip", "platform", "engine.layertar",
         "engine.compression", "engine.imagecommit", "engine.imageremove")


def test_resolving_names_loads_no_tar_or_compression_code() -> None:
    loaded = loaded_after("import engine.images")
    assert "engine.images" in loaded and "engine.layers" in loaded
    assert [name for name in HEAVY if name in loaded] == []


def test_unpacking_a_layer_loads_the_unpacker(tmp_path: Path) -> None:
    """The control: the same probe does see the modules once a layer is unpacked."""
    code = ("import io, tarfile\n"
            "from engine import layers\nfrom engine.layout import Layout\n"
            "buf = io.BytesIO()\ntarfile.open(fileobj=buf, mode='w').close()\n"
            f"layers.unpack(Layout.at({str(tmp_path)!r}), io.BytesIO(buf.getvalue()))")
    loaded = loaded_after(code)
    assert {"engine.layertar", "engine.compression"} <= loaded
