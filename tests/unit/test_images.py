"""Image records, formats, `--change`, and archives, on real files (no root needed)."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
from pathlib import Path

import pytest

from engine import imagearchive, layers
from engine.errors import Conflict, InvalidArgument, NotFound
from engine.imagechanges import apply_changes, split_words
from engine.imageformat import (
    DOCKER_LAYER_GZIP,
    DOCKER_MANIFEST,
    OCI_INDEX,
    OCI_LAYER_GZIP,
    OCI_MANIFEST,
    Platform,
    choose_manifest,
    convert_manifest,
    host_platform,
    parse_index,
    parse_manifest,
)
from engine.images import Images
from engine.layout import Layout
from tests.support.tars import tar_bytes


def rootfs_tar(files: dict[str, bytes]) -> bytes:
    return tar_bytes(files, mode=0o755)


@pytest.fixture
def images(tmp_path: Path) -> Images:
    return Images(Layout.at(tmp_path / "root"))


@pytest.fixture
def rootfs(tmp_path: Path) -> Path:
    path = tmp_path / "rootfs.tar.gz"
    path.write_bytes(gzip.compress(rootfs_tar({"bin/sh": b"#!shell", "etc/os": b"test"})))
    return path


def test_import_records_the_image(images: Images, rootfs: Path) -> None:
    image = images.import_rootfs(rootfs, "busybox", ['CMD ["sh"]', "ENV PATH=/bin"])
    config = images.config(image.id)
    assert image.id == "sha256:" + hashlib.sha256(images.content.read(image.id)).hexdigest()
    assert image.repo_tags == ("docker.io/library/busybox:latest",)
    assert image.layers[0].media_type == OCI_LAYER_GZIP
    plain = gzip.decompress(rootfs.read_bytes())
    assert image.diff_ids == ("sha256:" + hashlib.sha256(plain).hexdigest(),)
    assert image.chain_ids == image.diff_ids and image.size == len(b"#!shelltest")
    assert config["config"] == {"Cmd": ["sh"], "Env": ["PATH=/bin"]}
    assert (config["os"], config["architecture"]) == ("linux", host_platform().architecture)
    dirs = images.layer_dirs(image.id)
    assert (dirs[0] / "bin/sh").read_bytes() == b"#!shell"
    inspect = images.inspect("busybox:latest")
    assert inspect["Id"] == image.id and inspect["RepoTags"] == ["busybox:latest"]
    assert inspect["RootFS"] == {"Type": "layers", "Layers": list(image.diff_ids)}
    assert inspect["Config"]["Cmd"] == ["sh"] and inspect["Config"]["Entrypoint"] is None
    assert inspect["Os"] == "linux" and inspect["Size"] == image.size


def test_resolve_by_name_id_prefix_and_digest(images: Images, rootfs: Path) -> None:
    image = images.import_rootfs(rootfs, "localhost:5000/app:1")
    for name in ("localhost:5000/app:1", image.id, image.id[7:], image.short_id[:5],
                 "sha256:" + image.short_id):
        assert images.resolve(name).id == image.id
    with pytest.raises(NotFound, match="No such image: localhost:5000/app"):
        images.resolve("localhost:5000/app")  # :latest does not exist
    with pytest.raises(InvalidArgument, match="lowercase"):
        images.resolve("Not/Valid")


def test_tags_rm_and_users(images: Images, rootfs: Path) -> None:
    image = images.import_rootfs(rootfs, "one")
    assert images.tag("one", "two:v2") == "docker.io/library/two:v2"
    with pytest.raises(Conflict, match="referenced in multiple repositories"):
        images.remove(image.short_id)
    steps = images.remove("two:v2")
    assert [(s.action, s.subject) for s in steps] == [("Untagged", "two:v2")]
    images.hold(image.id, "container-1")
    with pytest.raises(Conflict, match="container container-1 is using"):
        images.remove("one")
    steps = images.remove("one", force=True)  # in use: only untagged
    assert [s.action for s in steps] == ["Untagged"]
    assert images.get(image.id).repo_tags == ()
    assert images.prune() == ([], 0)  # dangling but used
    images.release("container-1")
    steps, reclaimed = images.prune()
    assert [s.action for s in steps] == ["Deleted"] and reclaimed == image.size
    assert images.list() == [] and list(images.content) == []
    assert layers.list_layers(images.layout) == []


def test_remove_last_tag_deletes_and_keeps_shared_layers(images: Images, rootfs: Path) -> None:
    first = images.import_rootfs(rootfs, "a", ["CMD a"])
    second = images.import_rootfs(rootfs, "b", ["CMD b"])
    assert first.id != second.id and first.chain_ids == second.chain_ids
    steps = images.remove("a")
    assert [(s.action, s.subject) for s in steps] == [("Untagged", "a:latest"),
                                                       ("Deleted", first.id)]
    assert images.layer_dirs(second.id)[0].is_dir()  # the layer is shared: still there
    assert not images.content.exists(first.id) and images.content.exists(second.id)
    assert images.content.exists(second.layers[0].digest)
    steps, _ = images.prune(all=True)
    assert [s.action for s in steps] == ["Untagged", "Deleted"]
    assert layers.list_layers(images.layout) == []


def test_import_failures_leave_nothing(images: Images, tmp_path: Path) -> None:
    bad = tmp_path / "bad.tar"
    bad.write_bytes(rootfs_tar({"ok": b"1"})[:700])
    with pytest.raises(InvalidArgument):
        images.import_rootfs(bad, "x")
    with pytest.raises(InvalidArgument, match="RUN is not supported"):
        images.import_rootfs(bad, "x", ["RUN make"])
    with pytest.raises(NotFound):
        images.import_rootfs(tmp_path / "missing.tar", "x")
    assert images.list() == [] and list(images.content) == []
    assert layers.list_layers(images.layout) == []


def test_changes() -> None:
    config = apply_changes({}, [
        "ENTRYPOINT /bin/run --flag", 'CMD ["a", "b c"]', "ENV A=1 B=\"two words\"",
        "ENV C legacy value", "ENV D=${A}-$B E=${MISSING:-dflt}", "WORKDIR /srv",
        "WORKDIR app", "USER www-data:www-data", "EXPOSE 80 53/udp 8000-8001",
        "LABEL a=b \"c d\"=e", 'VOLUME ["/data", "/logs"]', "VOLUME /cache",
        "STOPSIGNAL SIGQUIT"])
    assert config == {
        "Entrypoint": ["/bin/sh", "-c", "/bin/run --flag"], "Cmd": ["a", "b c"],
        "Env": ["A=1", "B=two words", "C=legacy value", "D=1-two words", "E=dflt"],
        "WorkingDir": "/srv/app", "User": "www-data:www-data",
        "ExposedPorts": {"80/tcp": {}, "53/udp": {}, "8000/tcp": {}, "8001/tcp": {}},
        "Labels": {"a": "b", "c d": "e"}, "Volumes": {"/data": {}, "/logs": {}, "/cache": {}},
        "StopSignal": "SIGQUIT"}
    assert split_words("'$A' \"$A\" \\$A", {"A": "x"}) == ["$A", "x", "$A"]
    for bad, message in [("EXPOSE 70000", "invalid port"), ("STOPSIGNAL SIGNOPE", "signal"),
                         ("USER", "needs an argument"), ("ENV A=1 B", "not KEY=VALUE"),
                         ("LABEL 'open", "unterminated")]:
        with pytest.raises(InvalidArgument, match=message):
            apply_changes({}, [bad])


def test_formats_convert_and_choose_platform() -> None:
    docker = {"schemaVersion": 2, "mediaType": DOCKER_MANIFEST,
              "config": {"mediaType": "application/vnd.docker.container.image.v1+json",
                         "digest": "sha256:" + "1" * 64, "size": 10},
              "layers": [{"mediaType": DOCKER_LAYER_GZIP, "digest": "sha256:" + "2" * 64,
                          "size": 20}]}
    oci = convert_manifest(docker, "oci")
    assert oci["mediaType"] == OCI_MANIFEST and oci["layers"][0]["mediaType"] == OCI_LAYER_GZIP
    assert convert_manifest(oci, "docker") == docker
    assert parse_manifest(json.dumps(docker).encode()).layers[0].size == 20
    with pytest.raises(InvalidArgument, match="schemaVersion"):
        parse_manifest(json.dumps(dict(docker, schemaVersion=1)).encode())

    def desc(n: str, os_: str, arch: str, variant: str = "") -> dict:
        platform = {"os": os_, "architecture": arch} | ({"variant": variant} if variant else {})
        return {"mediaType": OCI_MANIFEST, "digest": "sha256:" + n * 64, "size": 1,
                "platform": platform}

    index = parse_index(json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
        desc("a", "unknown", "unknown"), desc("b", "linux", "arm", "v6"),
        desc("c", "linux", "arm", "v7"), desc("d", "linux", "arm64", "v8"),
        desc("e", "linux", "amd64")]}).encode())
    assert choose_manifest(index, Platform("linux", "arm", "v7")).digest[7] == "c"
    assert choose_manifest(index, Platform("linux", "arm64", "v8")).digest[7] == "d"
    assert choose_manifest(index, Platform("linux", "arm64")).digest[7] == "d"
    assert choose_manifest(index, Platform("linux", "amd64")).digest[7] == "e"
    with pytest.raises(NotFound, match=r"linux/s390x.*linux/amd64"):
        choose_manifest(index, Platform("linux", "s390x"))


def test_save_and_load_round_trip(images: Images, rootfs: Path, tmp_path: Path) -> None:
    image = images.import_rootfs(rootfs, "app:1", ["CMD x"])
    images.tag("app:1", "app:2")
    archive = tmp_path / "out.tar"
    imagearchive.save_to_file(images, ["app"], archive)
    with tarfile.open(archive) as tar:
        names = set(tar.getnames())
        manifest = json.load(tar.extractfile("manifest.json"))  # type: ignore[arg-type]
        index = json.load(tar.extractfile("index.json"))  # type: ignore[arg-type]
    assert {"oci-layout", "index.json", "manifest.json", "repositories"} <= names
    assert manifest[0]["RepoTags"] == ["app:1", "app:2"]
    assert manifest[0]["Layers"] == ["blobs/sha256/" + image.diff_ids[0][7:]]  # uncompressed
    assert [m["annotations"]["io.containerd.image.name"] for m in index["manifests"]] == [
        "docker.io/library/app:1", "docker.io/library/app:2"]
    other = Images(Layout.at(tmp_path / "other"))
    assert imagearchive.load(other, archive) == ["Loaded image: app:1", "Loaded image: app:2"]
    assert other.resolve("app:2").id == image.id
    assert other.resolve("app:1").diff_ids == image.diff_ids
    # Compressed archive from a stream (as `docker save | gzip | shipyard image load`).
    third = Images(Layout.at(tmp_path / "third"))
    assert imagearchive.load(third, io.BytesIO(gzip.compress(archive.read_bytes()))) == [
        "Loaded image: app:1", "Loaded image: app:2"]


def legacy_docker_archive(config: bytes, layer: bytes) -> bytes:
    """The layout of `docker save` before Docker 25 (layer.tar dirs, a symlinked copy)."""
    cfg = hashlib.sha256(config).hexdigest()
    files = {f"{cfg}.json": config, "aaaa/layer.tar": layer, "aaaa/VERSION": b"1.0",
             "manifest.json": json.dumps([{"Config": f"{cfg}.json", "RepoTags": ["old:1"],
                                           "Layers": ["aaaa/layer.tar", "bbbb/layer.tar"]}]
                                         ).encode()}
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        link = tarfile.TarInfo("bbbb/layer.tar")
        link.type, link.linkname = tarfile.SYMTYPE, "../aaaa/layer.tar"
        tar.addfile(link)
    return buf.getvalue()


def test_load_legacy_docker_archive_and_verify(images: Images, tmp_path: Path) -> None:
    layer = rootfs_tar({"f": b"1"})
    diff_id = "sha256:" + hashlib.sha256(layer).hexdigest()
    config = json.dumps({"architecture": "amd64", "os": "linux", "config": {},
                         "rootfs": {"type": "layers", "diff_ids": [diff_id, diff_id]}}).encode()
    path = tmp_path / "old.tar"
    path.write_bytes(legacy_docker_archive(config, layer))
    assert imagearchive.load(images, path) == ["Loaded image: old:1"]
    image = images.resolve("old:1")
    assert len(image.chain_ids) == 2 and image.chain_ids[0] != image.chain_ids[1]
    # A config whose diff_ids do not match the layer is refused, and nothing stays.
    other = Images(Layout.at(tmp_path / "other"))
    bad = config.replace(diff_id[7:17].encode(), b"0123456789")
    path.write_bytes(legacy_docker_archive(bad, layer))
    with pytest.raises(InvalidArgument, match="does not match its diff_id"):
        imagearchive.load(other, path)
    assert other.list() == [] and list(other.content) == []
    assert layers.list_layers(other.layout) == []


def test_load_refuses_corrupt_oci_blob(images: Images, rootfs: Path, tmp_path: Path) -> None:
    image = images.import_rootfs(rootfs, "app")
    archive = tmp_path / "a.tar"
    imagearchive.save_to_file(images, ["app"], archive)
    data = bytearray(archive.read_bytes())
    config_at = data.find(images.content.read(image.id))
    data[config_at + 2] ^= 1  # flip a bit inside the config blob
    archive.write_bytes(bytes(data))
    other = Images(Layout.at(tmp_path / "other"))
    with pytest.raises(InvalidArgument, match="digest mismatch"):
        imagearchive.load(other, archive)
    assert list(other.content) == [] and other.list() == []
    with pytest.raises(InvalidArgument, match="not an image archive"):
        imagearchive.load(other, rootfs)
