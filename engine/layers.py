"""Layer bookkeeping: one directory per layer chain, unpacked once and shared by every image.

    layers/<chain id hex>/diff/        the layer's files (an overlayfs lower directory)
    layers/<chain id hex>/layer.json   marker + metadata (chain_id, diff_id, parent, size,
                                       tar_size)

`unpack()` extracts a layer tarball (engine.layertar, the safe unpacker, loaded only when a
layer is actually unpacked) into a temporary directory that is renamed into place when
complete, so a layer directory with its marker is always whole. Refusals leave nothing behind.
Importing this module is cheap: lookups (`get`, `layer_path`, `chain_ids`) need no tar code.
"""

from __future__ import annotations

import errno
import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from engine import sha256
from engine.errors import InvalidArgument
from engine.layout import Layout

if TYPE_CHECKING:
    from engine.content import ContentStore

MARKER = "layer.json"


@dataclass(frozen=True, slots=True)
class Layer:
    """An unpacked layer. `size`: bytes of regular-file content; `tar_size`: uncompressed
    tar length (what `image save` writes)."""

    chain_id: str
    diff_id: str
    parent: str | None
    path: Path
    size: int
    tar_size: int

    @property
    def diff(self) -> Path:
        return self.path / "diff"


def chain_id(parent: str | None, diff_id: str) -> str:
    """OCI ChainID: the first layer's is its diff_id, then sha256("<parent> <diff_id>")."""
    if parent is None:
        return diff_id
    return "sha256:" + sha256.hexdigest(f"{parent} {diff_id}")


def chain_ids(diff_ids: Iterable[str]) -> list[str]:
    out: list[str] = []
    for diff_id in diff_ids:
        out.append(chain_id(out[-1] if out else None, diff_id))
    return out


def layer_path(layout: Layout, chain: str) -> Path:
    return layout.layers / chain.removeprefix("sha256:")


def get(layout: Layout, chain: str) -> Layer | None:
    """The complete layer with this chain id, or None."""
    path = layer_path(layout, chain)
    try:
        meta = json.loads((path / MARKER).read_text())
    except (FileNotFoundError, NotADirectoryError, ValueError):
        return None
    return Layer(meta["chain_id"], meta["diff_id"], meta.get("parent"), path,
                 int(meta["size"]), int(meta["tar_size"]))


def list_layers(layout: Layout) -> list[Layer]:
    try:
        names = sorted(os.listdir(layout.layers))
    except FileNotFoundError:
        return []
    found = (get(layout, "sha256:" + name) for name in names if len(name) == 64)
    return [layer for layer in found if layer is not None]


def remove(layout: Layout, chain: str) -> bool:
    """Deletes a layer directory (renamed away first, so it vanishes atomically)."""
    path = layer_path(layout, chain)
    if not path.exists():
        return False
    layout.tmp.mkdir(parents=True, exist_ok=True)
    doomed = layout.tmp / f"rm-{_unique()}"
    try:
        os.rename(path, doomed)
    except FileNotFoundError:
        return False
    force_rmtree(doomed)
    return True


def unpack(layout: Layout, stream: BinaryIO, *, parent: str | None = None,
           expected_diff_id: str | None = None, name: str = "layer",
           allow_devices: bool | None = None) -> Layer:
    """Unpacks one layer on top of chain `parent` (None for the first) and returns it.

    If the layer is already there (same chain id) the new copy is dropped. `name` is used in
    messages. `allow_devices` defaults to "running as root". Raises InvalidArgument (hostile
    or corrupt input, diff_id mismatch) or Unavailable (needs root); nothing is left then."""
    if expected_diff_id is not None:
        existing = get(layout, chain_id(parent, expected_diff_id))
        if existing is not None:
            return existing
    layout.tmp.mkdir(parents=True, exist_ok=True)
    layout.layers.mkdir(parents=True, exist_ok=True)
    work = layout.tmp / f"unpack-{_unique()}"
    (work / "diff").mkdir(parents=True, mode=0o755)
    try:
        from engine.layertar import extract  # the tar machinery loads only when unpacking

        made = extract(stream, work / "diff", name, allow_devices)
        diff_id, tar_size, size = made.diff_id, made.tar_size, made.content_size
        if expected_diff_id is not None and diff_id != expected_diff_id:
            raise InvalidArgument(f"{name}: content does not match its diff_id (expected "
                                  f"{expected_diff_id}, got {diff_id})")
        chain = chain_id(parent, diff_id)
        meta = {"chain_id": chain, "diff_id": diff_id, "parent": parent, "size": size,
                "tar_size": tar_size}
        (work / MARKER).write_text(json.dumps(meta, sort_keys=True))
        final = layer_path(layout, chain)
        try:
            os.rename(work, final)
        except OSError as error:
            if error.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                raise
            # Another unpack of the same layer won the race; share its copy.
            force_rmtree(work)
    except BaseException:
        force_rmtree(work)
        raise
    layer = get(layout, chain)
    assert layer is not None
    return layer


def unpack_file(layout: Layout, path: str | os.PathLike[str], **kwargs) -> Layer:
    with open(path, "rb") as f:
        return unpack(layout, f, **kwargs)


def unpack_blob(content: ContentStore, digest: str, *, parent: str | None,
                diff_id: str) -> Layer:
    """The layer of blob `digest` on top of chain `parent`: the unpacked one if it is there
    (the blob is then not read, so it need not exist), else unpacked from the content store
    with `diff_id` verified."""
    existing = get(content.layout, chain_id(parent, diff_id))
    if existing is not None:
        return existing
    with content.open(digest) as blob:
        return unpack(content.layout, blob, parent=parent, expected_diff_id=diff_id,
                      name=f"layer {digest}")


def ensure_chain(content: ContentStore, blobs: Sequence[str],
                 diff_ids: Sequence[str]) -> list[Layer]:
    """The layers of an image (blobs and diff_ids bottom-first), unpacking each one that is
    not unpacked yet from the content store with its diff_id verified."""
    out: list[Layer] = []
    for digest, diff_id in zip(blobs, diff_ids, strict=True):
        out.append(unpack_blob(content, digest, parent=out[-1].chain_id if out else None,
                               diff_id=diff_id))
    return out


def force_rmtree(path: Path) -> None:
    """Removes a tree we made, even when it holds directories without write permission."""
    if not os.path.lexists(path):
        return
    import shutil
    if os.geteuid() != 0:
        for top, dirs, _ in os.walk(path):
            for d in dirs:
                p = os.path.join(top, d)
                if not os.path.islink(p):
                    os.chmod(p, 0o700)
    shutil.rmtree(path)


def _unique() -> str:
    """A fresh name for a scratch directory under tmp/ (uuid4-like, without importing uuid)."""
    return os.urandom(16).hex()
