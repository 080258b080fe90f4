"""Volumes on the real kernel: driver mounts (bind, tmpfs) and copy-up with ownership."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from engine.layout import Layout
from engine.snapshots import is_mounted as _is_mounted
from engine.store import Store
from engine.volumes import Volumes
from tests.support import leaks


@pytest.fixture
def volumes(tmp_path: Path):
    before = leaks.snapshot()
    layout = Layout.at(tmp_path / "root")
    layout.root.mkdir()
    vols = Volumes(layout, Store(layout.database))
    yield vols
    for volume in vols.list():
        vols.remove(volume.name)
    assert leaks.diff(before, leaks.snapshot()) == {}


def test_copy_up_keeps_image_ownership_and_modes(volumes: Volumes, tmp_path: Path) -> None:
    image_dir = tmp_path / "var-lib-mysql"
    image_dir.mkdir()
    os.chown(image_dir, 100, 101)
    os.chmod(image_dir, 0o750)
    (image_dir / "ibdata").write_text("x")
    os.chown(image_dir / "ibdata", 100, 101)
    os.chmod(image_dir / "ibdata", 0o640)
    volumes.create("db")
    assert volumes.populate("db", image_dir)
    data = volumes.get("db").mountpoint
    st = (data / "ibdata").stat()
    assert (st.st_uid, st.st_gid, st.st_mode & 0o777) == (100, 101, 0o640)
    top = data.stat()
    assert (top.st_uid, top.st_gid, top.st_mode & 0o777) == (100, 101, 0o750)


def test_bind_device_volume_is_mounted_on_use_and_unmounted_on_remove(
        volumes: Volumes, tmp_path: Path) -> None:
    device = tmp_path / "host-dir"
    device.mkdir()
    (device / "hello").write_text("host data")
    volumes.create("shared", options={"type": "none", "o": "bind", "device": str(device)})
    source = volumes.source("shared")
    assert _is_mounted(source)
    assert (source / "hello").read_text() == "host data"
    volumes.remove("shared")
    assert not _is_mounted(source)
    assert (device / "hello").read_text() == "host data"  # removing never touches the device


def test_tmpfs_volume(volumes: Volumes) -> None:
    volumes.create("scratch", options={"type": "tmpfs", "device": "tmpfs", "o": "size=1m"})
    source = volumes.source("scratch")
    (source / "f").write_text("in memory")
    fstype = [line.split()[2] for line in Path("/proc/self/mounts").read_text().splitlines()
              if line.split()[1] == str(source)]
    assert fstype == ["tmpfs"]
