"""What `Images` remembers per image id (engine/images.py): the config's bytes (each call
still hands out a dict of its own), the layers' chain ids (re-checked on disk, so a layer
that went missing is unpacked again), and `resolve_id`. Real files, no root needed."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from engine import imagearchive, layers
from engine.errors import NotFound
from engine.images import Images
from engine.layout import Layout
from tests.support.tars import tar_bytes

ENV = ["PATH=/bin", "LEVEL=1"]


def docker_archive(layer_tars: list[bytes], tag: str) -> bytes:
    """A `docker save` archive of one image with these (uncompressed) layers, bottom-first."""
    diff_ids = ["sha256:" + hashlib.sha256(t).hexdigest() for t in layer_tars]
    config = json.dumps({"architecture": "amd64", "os": "linux",
                         "config": {"Env": ENV, "Cmd": ["sh"], "Labels": {"a": "1"}},
                         "rootfs": {"type": "layers", "diff_ids": diff_ids}}).encode()
    name = hashlib.sha256(config).hexdigest() + ".json"
    files = {name: config, **{f"l{i}/layer.tar": t for i, t in enumerate(layer_tars)},
             "manifest.json": json.dumps([{
                 "Config": name, "RepoTags": [tag],
                 "Layers": [f"l{i}/layer.tar" for i in range(len(layer_tars))]}]).encode()}
    return tar_bytes(files)


@pytest.fixture
def images(tmp_path: Path) -> Images:
    return Images(Layout.at(tmp_path / "root"))


@pytest.fixture
def image_id(images: Images, tmp_path: Path) -> str:
    """A two-layer image `app:1`: bin/sh below, etc/os above."""
    archive = tmp_path / "app.tar"
    archive.write_bytes(docker_archive([tar_bytes({"bin/sh": b"#!shell"}, mode=0o755),
                                        tar_bytes({"etc/os": b"test"}, mode=0o644)], "app:1"))
    assert imagearchive.load(images, archive) == ["Loaded image: app:1"]
    return images.resolve("app:1").id


def test_config_is_a_new_dict_every_call(images: Images, image_id: str) -> None:
    first = images.config(image_id)
    assert first["config"]["Env"] == ENV
    # Change it every way a caller might: nested list, nested dict, top-level keys.
    first["config"]["Env"].append("INJECTED=1")
    first["config"]["Labels"]["a"] = "changed"
    first["config"]["Cmd"] = ["evil"]
    first["os"] = "plan9"
    del first["rootfs"]
    second = images.config(image_id)
    assert second is not first
    assert second["config"] == {"Env": ENV, "Cmd": ["sh"], "Labels": {"a": "1"}}
    assert second["os"] == "linux" and len(second["rootfs"]["diff_ids"]) == 2
    # and what the second caller gets is its own too
    second["config"]["Env"].clear()
    assert images.config(image_id)["config"]["Env"] == ENV
    # a fresh Images (nothing remembered) reads the same
    assert Images(images.layout).config(image_id) == images.config(image_id)


def test_layer_dirs_twice_are_the_same_existing_trees(images: Images, image_id: str) -> None:
    image = images.get(image_id)
    first = images.layer_dirs(image_id)
    second = images.layer_dirs(image_id)
    assert first == second
    assert first == [layers.layer_path(images.layout, c) / "diff" for c in image.chain_ids]
    assert (first[0] / "bin/sh").read_bytes() == b"#!shell"
    assert (first[1] / "etc/os").read_bytes() == b"test"


@pytest.mark.parametrize("gone", [0, 1], ids=["bottom", "top"])
def test_layer_dirs_unpacks_a_layer_that_went_missing(images: Images, image_id: str,
                                                      tmp_path: Path, gone: int) -> None:
    remembered = images.layer_dirs(image_id)  # now in the memo
    layer_dir = remembered[gone].parent
    os.rename(layer_dir, tmp_path / "renamed-away")
    assert not remembered[gone].exists()
    again = images.layer_dirs(image_id)
    assert again == remembered  # same chain ids, so the same paths
    assert all(d.is_dir() for d in again)
    assert (again[0] / "bin/sh").read_bytes() == b"#!shell"
    assert (again[1] / "etc/os").read_bytes() == b"test"
    assert layers.get(images.layout, images.get(image_id).chain_ids[gone]) is not None


def test_layer_dirs_after_the_whole_chain_went_missing(images: Images, image_id: str,
                                                       tmp_path: Path) -> None:
    remembered = images.layer_dirs(image_id)
    for i, d in enumerate(remembered):
        os.rename(d.parent, tmp_path / f"away{i}")
    again = images.layer_dirs(image_id)
    assert (again[0] / "bin/sh").read_bytes() == b"#!shell"
    assert (again[1] / "etc/os").read_bytes() == b"test"


def test_resolve_id(images: Images, image_id: str) -> None:
    image = images.get(image_id)
    for name in ("app:1", "docker.io/library/app:1", image_id, image_id[7:],
                 image.short_id[:6]):
        assert images.resolve_id(name) == images.resolve(name).id == image_id
    with pytest.raises(NotFound, match="No such image: nothere"):
        images.resolve_id("nothere")
    with pytest.raises(NotFound, match="No such image: app:2"):
        images.resolve_id("app:2")
    with pytest.raises(NotFound):
        images.resolve_id("0123456789ab")  # an id prefix that matches nothing
