"""mountinfo lookups on real mounts, including mount points whose path needs escaping."""

from __future__ import annotations

import os

import pytest

from engine import mountinfo, snapshots
from engine.runtime.syscalls import MNT_DETACH, mount, umount2


@pytest.mark.parametrize("name", ["plain", "with space", "tab\there", "back\\slash"])
def test_find_sees_a_tmpfs_mounted_at_an_awkward_path(tmp_path, name) -> None:
    target = tmp_path / name
    target.mkdir()
    assert mountinfo.find(target) is None
    assert not snapshots.is_mounted(target)
    mount("tmpfs", str(target), "tmpfs", 0, "size=64k")
    try:
        fields = mountinfo.find(target)
        assert fields is not None and mountinfo.fstype(fields) == "tmpfs"
        assert snapshots.is_mounted(target)
        # A sibling whose name starts the same is not mistaken for it.
        assert mountinfo.find(f"{target}x") is None
    finally:
        umount2(str(target), MNT_DETACH)
    assert mountinfo.find(target) is None


def test_escape_matches_the_kernel_spelling() -> None:
    assert mountinfo.escape("/a b\tc\nd\\e") == "/a\\040b\\011c\\012d\\134e"
    assert mountinfo.escape("/plain/path") == "/plain/path"


def test_the_topmost_of_stacked_mounts_is_reported(tmp_path) -> None:
    target = tmp_path / "stacked"
    target.mkdir()
    mount("tmpfs", str(target), "tmpfs", 0, "size=64k")
    try:
        mount("proc", str(target), "proc", 0, None)
        try:
            assert mountinfo.fstype(mountinfo.find(target) or []) == "proc"
        finally:
            umount2(str(target), MNT_DETACH)
        assert mountinfo.fstype(mountinfo.find(target) or []) == "tmpfs"
    finally:
        umount2(str(target), MNT_DETACH)
    assert not os.path.ismount(target)
