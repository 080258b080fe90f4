"""engine/fsremove.py: removing a directory tree without following links or crossing mounts."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from engine.fsremove import remove_tree


def test_removes_everything_below_and_nothing_a_link_points_to(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    (outside / "keep").mkdir(parents=True)
    (outside / "keep" / "file").write_text("x")
    tree = tmp_path / "tree"
    (tree / "a" / "b" / "c").mkdir(parents=True)
    (tree / "a" / "b" / "c" / "f").write_text("f")
    (tree / "a" / "g").write_text("g")
    (tree / "a" / "dir-link").symlink_to(outside / "keep")
    (tree / "file-link").symlink_to(outside / "keep" / "file")
    os.mkfifo(tree / "fifo")
    (tree / "ro").mkdir()
    (tree / "ro" / "h").write_text("h")
    (tree / "ro").chmod(0o500)  # (root writes anyway; others get the error below)
    if os.geteuid() == 0:
        remove_tree(tree)
        assert not tree.exists()
    else:
        with pytest.raises(PermissionError):
            remove_tree(tree)
        (tree / "ro").chmod(0o700)
        remove_tree(tree)
        assert not tree.exists()
    assert (outside / "keep" / "file").read_text() == "x"


def test_a_missing_tree_is_fine_and_a_file_is_not_a_tree(tmp_path: Path) -> None:
    remove_tree(tmp_path / "missing")
    (tmp_path / "file").write_text("x")
    with pytest.raises(NotADirectoryError):
        remove_tree(tmp_path / "file")
    remove_tree(tmp_path / "file", ignore_errors=True)
    assert (tmp_path / "file").exists()
    (tmp_path / "link").symlink_to(tmp_path)
    with pytest.raises(OSError):  # (ELOOP: a link to a directory is not followed either)
        remove_tree(tmp_path / "link")


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting needs root")
def test_a_file_system_mounted_in_the_tree_is_not_entered(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    (tree / "mnt").mkdir(parents=True)
    (tree / "other").write_text("o")
    subprocess.run(["mount", "-t", "tmpfs", "tmpfs", str(tree / "mnt")], check=True)
    try:
        (tree / "mnt" / "data").write_text("d")
        with pytest.raises(OSError, match="mounted"):
            remove_tree(tree)
        assert (tree / "mnt" / "data").read_text() == "d"
        assert not (tree / "other").exists()  # the rest went
    finally:
        subprocess.run(["umount", str(tree / "mnt")], check=True)
    remove_tree(tree)
    assert not tree.exists()
