"""Layer unpacking: hostile tarballs are refused and leave nothing; good ones keep metadata."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import stat
import tarfile
from pathlib import Path

import pytest
import zstandard

from engine import layers
from engine.errors import InvalidArgument, Unavailable
from engine.layout import Layout

ROOT = os.geteuid() == 0


def entry(name: str, kind: bytes = tarfile.REGTYPE, data: bytes = b"", **attrs) -> tuple:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.mode = attrs.pop("mode", 0o755 if kind == tarfile.DIRTYPE else 0o644)
    info.mtime = attrs.pop("mtime", 1_600_000_000)
    for key, value in attrs.items():
        setattr(info, key, value)
    if kind == tarfile.REGTYPE:
        info.size = len(data)
    return info, data


def make_tar(*entries: tuple) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in entries:
            tar.addfile(info, io.BytesIO(data) if info.type == tarfile.REGTYPE else None)
    return buf.getvalue()


@pytest.fixture
def layout(tmp_path: Path) -> Layout:
    return Layout.at(tmp_path / "root")


def unpack(layout: Layout, data: bytes, **kwargs) -> layers.Layer:
    return layers.unpack(layout, io.BytesIO(data), name="layer", **kwargs)


def assert_nothing_left(layout: Layout, outside: Path | None = None) -> None:
    assert list(layout.layers.iterdir()) == []
    assert list(layout.tmp.iterdir()) == []


def test_unpacks_files_dirs_symlinks_and_hashes_the_stream(layout: Layout) -> None:
    data = make_tar(
        entry("etc", tarfile.DIRTYPE, mode=0o750, mtime=1_500_000_000),
        entry("etc/passwd", data=b"root:x:0:0\n", mode=0o600),
        entry("bin/tool", data=b"#!/bin/sh\n", mode=0o4755),
        entry("bin/link", tarfile.SYMTYPE, linkname="/etc/passwd"),
        entry("./usr/lib/deep/file", data=b"x" * 5000),
    )
    layer = unpack(layout, data)
    assert layer.diff_id == "sha256:" + hashlib.sha256(data).hexdigest()
    assert layer.chain_id == layer.diff_id and layer.tar_size == len(data)
    assert layer.size == 11 + 10 + 5000
    root = layer.diff
    assert (root / "etc/passwd").read_bytes() == b"root:x:0:0\n"
    assert stat.S_IMODE((root / "etc/passwd").stat().st_mode) == 0o600
    assert stat.S_IMODE((root / "bin/tool").stat().st_mode) == 0o4755
    assert stat.S_IMODE((root / "etc").stat().st_mode) == 0o750
    assert (root / "etc").stat().st_mtime == 1_500_000_000
    assert (root / "etc/passwd").stat().st_mtime == 1_600_000_000
    assert os.readlink(root / "bin/link") == "/etc/passwd"
    assert stat.S_IMODE((root / "usr/lib").stat().st_mode) == 0o755  # implicit parents
    assert layers.get(layout, layer.chain_id) == layer
    assert list(layout.tmp.iterdir()) == []


@pytest.mark.parametrize("compress", [gzip.compress, zstandard.ZstdCompressor().compress])
def test_compressed_layers_are_detected_by_magic(layout: Layout, compress) -> None:
    data = make_tar(entry("a", data=b"hello"))
    layer = unpack(layout, compress(data))
    assert layer.diff_id == "sha256:" + hashlib.sha256(data).hexdigest()
    assert (layer.diff / "a").read_bytes() == b"hello"


def test_same_layer_is_unpacked_once_and_chains_differ_by_parent(layout: Layout) -> None:
    data = make_tar(entry("a", data=b"1"))
    first = unpack(layout, data)
    again = unpack(layout, data, expected_diff_id=first.diff_id)
    assert again == first
    on_top = unpack(layout, data, parent="sha256:" + "0" * 64)
    assert on_top.chain_id == layers.chain_id("sha256:" + "0" * 64, first.diff_id)
    assert on_top.chain_id != first.chain_id
    assert len(layers.list_layers(layout)) == 2
    assert layers.remove(layout, on_top.chain_id)
    assert [layer.chain_id for layer in layers.list_layers(layout)] == [first.chain_id]


def test_hard_links_within_the_layer_are_kept(layout: Layout) -> None:
    data = make_tar(entry("a/file", data=b"content"),
                    entry("b/link", tarfile.LNKTYPE, linkname="a/file"))
    root = unpack(layout, data).diff
    assert (root / "a/file").stat().st_ino == (root / "b/link").stat().st_ino
    assert (root / "a/file").stat().st_nlink == 2


def test_later_entries_replace_earlier_ones(layout: Layout) -> None:
    data = make_tar(entry("x", data=b"old"), entry("x", data=b"new"),
                    entry("d/inner", data=b"1"), entry("d", data=b"now a file"))
    root = unpack(layout, data).diff
    assert (root / "x").read_bytes() == b"new"
    assert (root / "d").read_bytes() == b"now a file"


def test_xattrs_from_pax_headers(layout: Layout, tmp_path: Path) -> None:
    probe = tmp_path / "probe"
    probe.write_text("")
    try:
        os.setxattr(probe, "user.test", b"1")
    except OSError:
        pytest.skip("this filesystem has no user xattrs")
    info, data = entry("f", data=b"x")
    info.pax_headers = {"SCHILY.xattr.user.color": "blue",
                        "SCHILY.xattr.trusted.overlay.redirect": "/etc"}
    root = unpack(layout, make_tar((info, data))).diff
    assert os.getxattr(root / "f", "user.color") == b"blue"
    names = os.listxattr(root / "f")
    assert "trusted.overlay.redirect" not in names  # a layer must not steer overlayfs


HOSTILE = {
    "dotdot": [entry("../escape", data=b"x")],
    "dotdot-inner": [entry("a/../../escape", data=b"x")],
    "absolute": [entry("/etc/evil", data=b"x")],
    "symlink-write-through": [entry("a", tarfile.SYMTYPE, linkname="{outside}"),
                              entry("a/passwd", data=b"pwned")],
    "symlink-dir-through": [entry("a", tarfile.SYMTYPE, linkname="{outside}"),
                            entry("a/sub", tarfile.DIRTYPE)],
    "hardlink-escape": [entry("h", tarfile.LNKTYPE, linkname="../../../etc/passwd")],
    "hardlink-absolute": [entry("h", tarfile.LNKTYPE, linkname="/etc/passwd")],
    "hardlink-missing": [entry("h", tarfile.LNKTYPE, linkname="nothing/here")],
    "hardlink-through-symlink": [entry("s", tarfile.SYMTYPE, linkname="{outside}"),
                                 entry("h", tarfile.LNKTYPE, linkname="s/secret")],
    "nul-in-name": [entry("plain", data=b"x", pax_headers={"path": "a\x00b"})],
    "nul-in-symlink": [entry("s", tarfile.SYMTYPE, linkname="x",
                             pax_headers={"linkpath": "x\x00y"})],
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_layers_are_refused_and_leave_nothing(layout: Layout, tmp_path: Path,
                                                      case: str) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_text("keep")
    entries = []
    for info, data in HOSTILE[case]:
        info.linkname = info.linkname.replace("{outside}", str(outside))
        entries.append((info, data))
    good = entry("first/ok", data=b"fine")  # something unpacked before the refusal
    with pytest.raises(InvalidArgument) as raised:
        unpack(layout, make_tar(good, *entries))
    message = str(raised.value)
    assert "refusing member" in message
    if "nul" not in case:
        assert repr(entries[-1][0].name) in message
    assert_nothing_left(layout)
    assert sorted(p.name for p in outside.iterdir()) == ["secret"]
    assert (outside / "secret").read_text() == "keep"
    assert not (tmp_path / "escape").exists()


def test_device_nodes_refused_when_not_allowed(layout: Layout) -> None:
    data = make_tar(entry("dev/null", tarfile.CHRTYPE, devmajor=1, devminor=3))
    with pytest.raises(Unavailable, match="device nodes"):
        unpack(layout, data, allow_devices=False)
    assert_nothing_left(layout)


@pytest.mark.parametrize("cut", [0.5, 0.9])
def test_truncated_gzip_is_refused(layout: Layout, cut: float) -> None:
    data = gzip.compress(make_tar(entry("big", data=os.urandom(200_000))))
    with pytest.raises(InvalidArgument, match="layer"):
        unpack(layout, data[:int(len(data) * cut)])
    assert_nothing_left(layout)


def test_not_a_tar_and_wrong_diff_id_are_refused(layout: Layout) -> None:
    with pytest.raises(InvalidArgument):
        unpack(layout, b"this is not a tar archive" * 40)
    with pytest.raises(InvalidArgument, match="diff_id"):
        unpack(layout, make_tar(entry("a", data=b"1")), expected_diff_id="sha256:" + "1" * 64)
    assert_nothing_left(layout)


def test_many_entries(layout: Layout) -> None:
    data = make_tar(*(entry(f"d{i % 50}/f{i}", data=b"") for i in range(5000)))
    root = unpack(layout, data).diff
    assert sum(len(files) for _, _, files in os.walk(root)) == 5000


@pytest.mark.root
def test_whiteouts_and_opaque_dirs_become_overlay_markers(layout: Layout) -> None:
    data = make_tar(entry("etc", tarfile.DIRTYPE), entry("etc/.wh.motd"),
                    entry("var/cache/.wh..wh..opq"), entry("var/cache/new", data=b"1"),
                    entry(".wh..wh.plnk", tarfile.DIRTYPE))
    root = unpack(layout, data).diff
    st = (root / "etc/motd").lstat()
    assert stat.S_ISCHR(st.st_mode) and st.st_rdev == os.makedev(0, 0)
    assert not (root / "etc/.wh.motd").exists()
    assert os.getxattr(root / "var/cache", "trusted.overlay.opaque") == b"y"
    assert (root / "var/cache/new").read_bytes() == b"1"
    assert not (root / ".wh..wh.plnk").exists()


@pytest.mark.root
def test_ownership_and_devices_as_root(layout: Layout) -> None:
    data = make_tar(entry("owned", data=b"x", uid=1234, gid=5678, mode=0o2750),
                    entry("link", tarfile.SYMTYPE, linkname="owned", uid=42, gid=43),
                    entry("dev/null", tarfile.CHRTYPE, devmajor=1, devminor=3, mode=0o666))
    root = unpack(layout, data).diff
    st = (root / "owned").stat()
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (1234, 5678, 0o2750)
    assert ((root / "link").lstat().st_uid, (root / "link").lstat().st_gid) == (42, 43)
    dev = (root / "dev/null").lstat()
    assert stat.S_ISCHR(dev.st_mode) and dev.st_rdev == os.makedev(1, 3)
    assert stat.S_IMODE(dev.st_mode) == 0o666


@pytest.mark.skipif(ROOT, reason="checks unpacking without root")
def test_whiteouts_without_root(layout: Layout) -> None:
    # Linux >= 5.8 lets anyone create the 0:0 whiteout device; older kernels refuse.
    try:
        layer = unpack(layout, make_tar(entry(".wh.gone")))
    except Unavailable as error:
        assert "whiteouts need root" in str(error)
        assert_nothing_left(layout)
    else:
        assert (layer.diff / "gone").lstat().st_rdev == os.makedev(0, 0)
        layers.remove(layout, layer.chain_id)
    with pytest.raises(Unavailable, match="opaque directories need root"):
        unpack(layout, make_tar(entry("d/.wh..wh..opq")))
    assert_nothing_left(layout)
