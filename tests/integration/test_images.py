"""`shipyard image ...` end to end, as root: import busybox, list, inspect, mount its rootfs,
save/load (and skopeo interop when installed), rm, prune; nothing may leak."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from compose.cli import main
from engine import snapshots
from engine.images import Images
from engine.layout import Layout
from tests.support import busybox, leaks

pytestmark = pytest.mark.skipif(not busybox.available(),
                                reason="needs /bin/busybox (Debian's busybox-static)")


@pytest.fixture
def root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "engine"
    monkeypatch.setenv("SHIPYARD_ROOT", str(path))
    return path


def shipyard(capsys: pytest.CaptureFixture[str], *argv: str, rc: int = 0) -> str:
    capsys.readouterr()
    assert main(["image", *argv]) == rc, capsys.readouterr()
    captured = capsys.readouterr()
    return captured.out if rc == 0 else captured.err


def test_image_lifecycle(root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    before = leaks.snapshot()
    tar = busybox.make_rootfs_tar(tmp_path / "busybox.tar")

    image_id = shipyard(capsys, "import", "-c", 'CMD ["sh"]', "-c", "ENV GREETING=hi",
                        str(tar), "busybox:test").strip()
    assert image_id.startswith("sha256:") and len(image_id) == 71

    table = shipyard(capsys, "ls").splitlines()
    assert table[0].split() == ["REPOSITORY", "TAG", "IMAGE", "ID", "CREATED", "SIZE"]
    assert table[1].split()[:3] == ["busybox", "test", image_id[7:19]]
    assert shipyard(capsys, "ls", "-q").split() == [image_id[7:19]]

    [inspect] = json.loads(shipyard(capsys, "inspect", "busybox:test"))
    assert inspect["Id"] == image_id and inspect["RepoTags"] == ["busybox:test"]
    assert inspect["Config"]["Cmd"] == ["sh"] and "GREETING=hi" in inspect["Config"]["Env"]
    assert shipyard(capsys, "inspect", "-f", "{{.Os}}/{{.Architecture}}",
                    image_id[7:12]).strip().startswith("linux/")

    # The image's root filesystem, mounted through overlayfs for a container.
    images = Images(Layout.at(root))
    container = root / "containers" / "c1"
    rootfs = snapshots.mount_rootfs(container, images.layer_dirs(image_id))
    try:
        assert (rootfs / "bin/busybox").is_file()
        out = subprocess.run(["chroot", str(rootfs), "/bin/busybox", "echo", "inside"],
                             capture_output=True, text=True, check=True).stdout
        assert out.strip() == "inside"
        (rootfs / "etc/changed").write_text("1")
        (rootfs / "etc/passwd").unlink()
    finally:
        snapshots.unmount_rootfs(container)
    assert (container / "upper/etc/changed").read_text() == "1"
    assert (container / "upper/etc/passwd").is_char_device()  # an overlay whiteout
    assert (images.layer_dirs(image_id)[0] / "etc/passwd").is_file()  # the layer is intact

    # A read-only view (for volume copy-up) of a single-layer image is a bind mount.
    view = snapshots.mount_readonly(images.layer_dirs(image_id), tmp_path / "view")
    try:
        assert (view / "bin/busybox").is_file()
        with pytest.raises(OSError):
            (view / "new").write_text("x")
    finally:
        snapshots.unmount(view)

    # Save and load round trip, into a second engine root.
    archive = tmp_path / "saved.tar"
    shipyard(capsys, "tag", "busybox:test", "localhost:5000/bb:1")
    shipyard(capsys, "save", "-o", str(archive), "busybox:test", "localhost:5000/bb:1")
    os.environ["SHIPYARD_ROOT"] = str(tmp_path / "second")
    try:
        loaded = shipyard(capsys, "load", "-i", str(archive)).splitlines()
        assert loaded == ["Loaded image: busybox:test", "Loaded image: localhost:5000/bb:1"]
        [again] = json.loads(shipyard(capsys, "inspect", "localhost:5000/bb:1"))
        assert again["Id"] == image_id and again["RootFS"] == inspect["RootFS"]
    finally:
        os.environ["SHIPYARD_ROOT"] = str(root)

    if shutil.which("skopeo"):
        skopeo_interop(capsys, archive, tmp_path, image_id, root)

    # rm: by id with two tags needs -f; by tag untags; the last tag deletes.
    assert "multiple repositories" in shipyard(capsys, "rm", image_id[7:19], rc=1)
    assert shipyard(capsys, "rm", "localhost:5000/bb:1") == "Untagged: localhost:5000/bb:1\n"
    out = shipyard(capsys, "rm", "busybox:test").splitlines()
    assert out == ["Untagged: busybox:test", f"Deleted: {image_id}"]
    assert "No such image" in shipyard(capsys, "inspect", "busybox:test", rc=1)

    # prune removes dangling images only, -a every unused one.
    shipyard(capsys, "import", str(tar))
    shipyard(capsys, "import", str(tar), "kept")
    out = shipyard(capsys, "prune", "-f")
    assert out.startswith("Deleted Images:\ndeleted: sha256:") and "Total reclaimed" in out
    assert shipyard(capsys, "ls", "--format", "{{.Repository}}:{{.Tag}}").split() == [
        "kept:latest"]
    shipyard(capsys, "prune", "-a", "-f")
    assert shipyard(capsys, "ls", "-q") == ""
    assert os.listdir(root / "layers") == [] and os.listdir(root / "blobs/sha256") == []

    snapshots.remove_rootfs(container)
    # Other suites may run at the same time on this machine: count only what is ours.
    leaked = leaks.diff(before, leaks.snapshot())
    ours = {kind: [item for item in items if str(tmp_path) in str(item)]
            for kind, items in leaked.items()}
    assert {kind: items for kind, items in ours.items() if items} == {}


def skopeo_interop(capsys: pytest.CaptureFixture[str], archive: Path, tmp_path: Path,
                   image_id: str, root: Path) -> None:
    """skopeo reads our archive as both kinds, and what it writes loads back."""
    for kind in ("oci-archive", "docker-archive"):
        dest = tmp_path / f"skopeo-{kind}"
        # oci-archive picks by org.opencontainers.image.ref.name (the tag, as Docker writes).
        source = f"{kind}:{archive}:" + ("busybox:test" if kind == "docker-archive" else "test")
        subprocess.run(["skopeo", "copy", "-q", source, f"dir:{dest}"], check=True,
                       capture_output=True)
        assert (dest / image_id[7:]).is_file()  # the config blob, same digest
    out_tar = tmp_path / "from-skopeo.tar"
    subprocess.run(["skopeo", "copy", "-q", f"dir:{tmp_path / 'skopeo-oci-archive'}",
                    f"oci-archive:{out_tar}:skopeo/made:1"], check=True, capture_output=True)
    os.environ["SHIPYARD_ROOT"] = str(tmp_path / "third")
    try:
        assert shipyard(capsys, "load", "-i", str(out_tar)).strip() == \
            "Loaded image: skopeo/made:1"
        [made] = json.loads(shipyard(capsys, "inspect", "skopeo/made:1"))
        assert made["Id"] == image_id
    finally:
        os.environ["SHIPYARD_ROOT"] = str(root)


def test_many_layers_overflowing_one_page_still_mount(tmp_path: Path) -> None:
    """60 layers under a long root make a lowerdir list longer than mount(2)'s page."""
    import io
    import tarfile

    from engine import layers

    layout = Layout.at(tmp_path / ("a-rather-long-directory-name-" * 3) / "root")
    dirs, parent = [], None
    for i in range(60):
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            info = tarfile.TarInfo(f"f{i}")
            info.size = len(str(i))
            tar.addfile(info, io.BytesIO(str(i).encode()))
            info = tarfile.TarInfo("same")
            info.size = len(str(i))
            tar.addfile(info, io.BytesIO(str(i).encode()))
        layer = layers.unpack(layout, io.BytesIO(buf.getvalue()), parent=parent)
        parent = layer.chain_id
        dirs.append(layer.diff)
    container = layout.container("c")
    assert not snapshots.prepare(container, dirs).fits
    rootfs = snapshots.mount_rootfs(container, dirs)
    try:
        assert len(os.listdir(rootfs)) == 61
        assert (rootfs / "same").read_text() == "59"  # the top layer wins
        assert snapshots.rootfs_mounted(container) and snapshots.is_mounted(rootfs)
    finally:
        snapshots.unmount_rootfs(container)
    assert not snapshots.is_mounted(rootfs)
    assert not snapshots.rootfs_mounted(container)
