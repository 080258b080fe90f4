"""Upper directory -> layer tar: entries, whiteouts, opaque directories, hard links,
determinism, and a round trip through the layer unpacker."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import stat
import tarfile
from pathlib import Path

import pytest

from engine import layerdiff, layers
from engine.content import ContentStore
from engine.layout import Layout

ROOT = os.geteuid() == 0


def _tree(upper: Path) -> None:
    (upper / "app" / "lib").mkdir(parents=True)
    (upper / "app" / "main.py").write_text("print('hi')\n")
    os.chmod(upper / "app" / "main.py", 0o751)
    (upper / "app" / "lib" / "z.txt").write_text("z")
    (upper / "app" / "lib" / "a.txt").write_text("a")
    os.link(upper / "app" / "lib" / "a.txt", upper / "app" / "hard.txt")
    (upper / "app" / "link").symlink_to("lib/a.txt")
    for path in upper.rglob("*"):
        os.utime(path, (1_700_000_000.5, 1_700_000_000.5), follow_symlinks=False)


def _members(data: bytes) -> list[tarfile.TarInfo]:
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        return tar.getmembers()


def _layer_bytes(upper: Path) -> bytes:
    out = io.BytesIO()
    layerdiff.write_tar(upper, out)
    return out.getvalue()


def test_entries_are_sorted_parents_first_with_links(tmp_path: Path) -> None:
    upper = tmp_path / "upper"
    upper.mkdir()
    _tree(upper)
    members = _members(_layer_bytes(upper))
    names = [m.name for m in members]
    assert names == ["app", "app/hard.txt", "app/lib", "app/lib/a.txt", "app/lib/z.txt",
                     "app/link", "app/main.py"]
    by_name = {m.name: m for m in members}
    # the first name of a hard-linked file carries the content, the later one links to it
    assert by_name["app/hard.txt"].isreg() and by_name["app/lib/a.txt"].islnk()
    assert by_name["app/lib/a.txt"].linkname == "app/hard.txt"
    assert by_name["app/link"].issym() and by_name["app/link"].linkname == "lib/a.txt"
    assert by_name["app/main.py"].mode == 0o751
    assert by_name["app/main.py"].mtime == 1_700_000_000
    assert by_name["app/main.py"].uname == ""


def test_the_same_tree_gives_the_same_blob(tmp_path: Path) -> None:
    layout = Layout.at(tmp_path / "root").ensure()
    content = ContentStore(layout)
    upper = tmp_path / "upper"
    upper.mkdir()
    _tree(upper)
    one = layerdiff.store_layer(upper, content)
    two = layerdiff.store_layer(upper, content)
    assert one == two
    raw = content.read(one.digest)
    plain = gzip.decompress(raw)
    assert one.diff_id == "sha256:" + hashlib.sha256(plain).hexdigest()
    assert one.tar_size == len(plain) and one.entries == 7
    assert one.media_type == layerdiff.GZIP_LAYER


def test_empty_upper_is_empty(tmp_path: Path) -> None:
    assert layerdiff.is_empty(tmp_path)
    (tmp_path / "x").write_text("")
    assert not layerdiff.is_empty(tmp_path)


@pytest.mark.skipif(not ROOT, reason="whiteouts (0:0 devices) and trusted.* xattrs need root")
def test_whiteouts_and_opaque_dirs_round_trip(tmp_path: Path) -> None:
    upper = tmp_path / "upper"
    (upper / "etc").mkdir(parents=True)
    os.mknod(upper / "etc" / "group", stat.S_IFCHR | 0o000, os.makedev(0, 0))
    (upper / "var" / "cache").mkdir(parents=True)
    os.setxattr(upper / "var" / "cache", layerdiff.OPAQUE_XATTR, b"y")
    (upper / "var" / "cache" / "fresh").write_text("new")
    os.setxattr(upper / "var" / "cache" / "fresh", "user.note", b"kept")
    data = _layer_bytes(upper)
    members = _members(data)
    names = [m.name for m in members]
    assert names == ["etc", "etc/.wh.group", "var", "var/cache", "var/cache/.wh..wh..opq",
                     "var/cache/fresh"]
    fresh = members[-1]
    assert fresh.pax_headers.get("SCHILY.xattr.user.note") == "kept"
    assert "SCHILY.xattr.trusted.overlay.opaque" not in members[3].pax_headers
    # the engine's own unpacker turns them back into overlayfs marks
    layout = Layout.at(tmp_path / "root").ensure()
    layer = layers.unpack(layout, io.BytesIO(data))
    st = os.lstat(layer.diff / "etc" / "group")
    assert stat.S_ISCHR(st.st_mode) and st.st_rdev == 0
    assert os.getxattr(layer.diff / "var" / "cache", layerdiff.OPAQUE_XATTR) == b"y"
    assert (layer.diff / "var" / "cache" / "fresh").read_text() == "new"


@pytest.mark.skipif(not ROOT, reason="trusted.* xattrs need root")
def test_redirects_are_refused(tmp_path: Path) -> None:
    upper = tmp_path / "upper"
    (upper / "moved").mkdir(parents=True)
    os.setxattr(upper / "moved", "trusted.overlay.redirect", b"/old")
    with pytest.raises(Exception, match="redirect"):
        _layer_bytes(upper)
