"""`image load` of malformed docker-save archives: every manifest.json entry is checked before
anything is loaded, and a bad one is one InvalidArgument naming the archive and the entry
(never a TypeError or KeyError), leaving no image, blob or layer behind. Real tar files."""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path
from typing import Any

import pytest

from compose.cli import main
from engine import imagearchive, layers
from engine.errors import InvalidArgument
from engine.images import Images
from engine.layout import Layout
from tests.support.tars import tar_bytes

LAYER = tar_bytes({"etc/hostname": b"box\n"})
DIFF_ID = "sha256:" + hashlib.sha256(LAYER).hexdigest()
CONFIG = json.dumps({"architecture": "amd64", "os": "linux", "config": {},
                     "rootfs": {"type": "layers", "diff_ids": [DIFF_ID]}}).encode()
CONFIG_PATH = hashlib.sha256(CONFIG).hexdigest() + ".json"
GOOD = {"Config": CONFIG_PATH, "RepoTags": ["good:1"], "Layers": ["l1/layer.tar"]}


def docker_archive(path: Path, manifest: Any, *, oci: bool = False) -> Path:
    """A docker-save archive whose manifest.json is `manifest` (any JSON, however wrong)."""
    files = {CONFIG_PATH: CONFIG, "l1/layer.tar": LAYER,
             "manifest.json": json.dumps(manifest).encode()}
    if oci:  # an OCI layout too (as Docker 25+ writes), whose index lists nothing
        files["oci-layout"] = b'{"imageLayoutVersion": "1.0.0"}'
        files["index.json"] = json.dumps({"schemaVersion": 2, "manifests": []}).encode()
    path.write_bytes(tar_bytes(files))
    return path


@pytest.fixture
def images(tmp_path: Path) -> Images:
    return Images(Layout.at(tmp_path / "root"))


def assert_nothing_loaded(images: Images) -> None:
    assert images.list() == []
    assert list(images.content) == []
    assert layers.list_layers(images.layout) == []


BAD_MANIFESTS = [
    pytest.param({"Config": CONFIG_PATH, "Layers": []}, "manifest.json",
                 "is an object (expected a list", id="not-a-list"),
    pytest.param([GOOD, "l1/layer.tar"], "manifest.json[1]",
                 "is a string ('l1/layer.tar') (expected an object", id="entry-not-object"),
    pytest.param([{"RepoTags": None, "Layers": ["l1/layer.tar"]}], "manifest.json[0].Config",
                 "is missing (expected a string", id="config-missing"),
    pytest.param([dict(GOOD, Config=[CONFIG_PATH])], "manifest.json[0].Config",
                 "is a list (expected a string", id="config-list"),
    pytest.param([dict(GOOD, Config=7)], "manifest.json[0].Config",
                 "is a number (7) (expected a string", id="config-number"),
    pytest.param([{"Config": CONFIG_PATH, "RepoTags": None}], "manifest.json[0].Layers",
                 "is missing (expected a list", id="layers-missing"),
    pytest.param([dict(GOOD, Layers="l1/layer.tar")], "manifest.json[0].Layers",
                 "is a string ('l1/layer.tar') (expected a list", id="layers-string"),
    pytest.param([dict(GOOD, Layers=["l1/layer.tar", 5])], "manifest.json[0].Layers[1]",
                 "is a number (5) (expected a string", id="layer-number"),
    pytest.param([dict(GOOD, Layers=[{"path": "l1/layer.tar"}])], "manifest.json[0].Layers[0]",
                 "is an object (expected a string", id="layer-object"),
    pytest.param([dict(GOOD, Layers=[None])], "manifest.json[0].Layers[0]",
                 "is null (expected a string", id="layer-null"),
    pytest.param([dict(GOOD, RepoTags="good:1")], "manifest.json[0].RepoTags",
                 "is a string ('good:1') (expected a list", id="repotags-string"),
    pytest.param([dict(GOOD, RepoTags=["good:1", 3])], "manifest.json[0].RepoTags[1]",
                 "is a number (3) (expected a string", id="repotag-number"),
    pytest.param([dict(GOOD, RepoTags=["Not Valid:1"])], "manifest.json[0].RepoTags[0]",
                 "invalid reference format", id="repotag-invalid"),
]


@pytest.mark.parametrize(("manifest", "where", "what"), BAD_MANIFESTS)
def test_malformed_manifest_entry_is_one_clear_error(images: Images, tmp_path: Path,
                                                     manifest: Any, where: str,
                                                     what: str) -> None:
    path = docker_archive(tmp_path / "bad.tar", manifest)
    with pytest.raises(InvalidArgument) as caught:
        imagearchive.load(images, path)
    assert str(caught.value).startswith(f"image archive {path}: {where}: {what}")
    assert_nothing_loaded(images)


def test_a_later_bad_entry_refuses_the_whole_archive(images: Images, tmp_path: Path) -> None:
    """The first entry is fine; the second is checked before the first is loaded."""
    path = docker_archive(tmp_path / "half.tar", [GOOD, dict(GOOD, Layers=[["l1/layer.tar"]])])
    with pytest.raises(InvalidArgument, match=r"manifest\.json\[1\]\.Layers\[0\]: is a list"):
        imagearchive.load(images, path)
    assert_nothing_loaded(images)


def test_combined_oci_and_docker_archive_checks_manifest_json(images: Images,
                                                               tmp_path: Path) -> None:
    path = docker_archive(tmp_path / "both.tar", [dict(GOOD, RepoTags=[1])], oci=True)
    with pytest.raises(InvalidArgument, match=r"manifest\.json\[0\]\.RepoTags\[0\]: is a num"):
        imagearchive.load(images, path)
    assert_nothing_loaded(images)


def test_a_stream_is_named_by_its_name_or_dash(images: Images, tmp_path: Path) -> None:
    data = docker_archive(tmp_path / "s.tar", [dict(GOOD, Layers=[5])]).read_bytes()
    with pytest.raises(InvalidArgument, match=r"^image archive -: manifest\.json\[0\]"):
        imagearchive.load(images, io.BytesIO(data))
    with open(tmp_path / "s.tar", "rb") as f, pytest.raises(
            InvalidArgument, match=r"^image archive .*s\.tar: manifest\.json\[0\]\.Layers\[0\]"):
        imagearchive.load(images, f)
    assert_nothing_loaded(images)


def test_well_formed_archive_still_loads(images: Images, tmp_path: Path) -> None:
    """The control: the same archive with a correct manifest.json loads, null RepoTags too."""
    path = docker_archive(tmp_path / "ok.tar", [GOOD, dict(GOOD, RepoTags=None)])
    assert imagearchive.load(images, path) == ["Loaded image: good:1"]
    image = images.resolve("good:1")
    assert image.diff_ids == (DIFF_ID,)
    assert (images.layer_dirs(image.id)[0] / "etc/hostname").read_bytes() == b"box\n"


def test_cli_prints_one_line_and_no_traceback(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("SHIPYARD_ROOT", str(tmp_path / "engine"))
    path = docker_archive(tmp_path / "bad.tar", [dict(GOOD, Layers=["l1/layer.tar", 5])])
    assert main(["image", "load", "-i", str(path)]) != 0
    err = capsys.readouterr().err
    assert "Traceback" not in err and "TypeError" not in err
    assert f"image archive {path}: manifest.json[0].Layers[1]: is a number (5)" in err
    assert len(err.strip().splitlines()) == 1
