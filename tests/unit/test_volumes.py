"""Named volumes: records, validation, idempotent create, labels filter, removal, prune."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.errors import AlreadyExists, Conflict, InvalidArgument, NotFound
from engine.layout import Layout
from engine.store import Store
from engine.volumes import Volumes


@pytest.fixture
def volumes(tmp_path: Path) -> Volumes:
    layout = Layout.at(tmp_path / "root")
    layout.root.mkdir()
    return Volumes(layout, Store(layout.database))


def test_create_is_idempotent_and_lists_by_label(volumes: Volumes) -> None:
    a = volumes.create("blog_db", labels={"com.docker.compose.project": "blog"})
    again = volumes.create("blog_db")
    assert again.created == a.created
    volumes.create("other")
    assert a.mountpoint.is_dir()
    assert a.mountpoint == volumes.layout.root / "volumes" / "blog_db" / "_data"
    found = volumes.list({"com.docker.compose.project": "blog"})
    assert [v.name for v in found] == ["blog_db"]
    assert [v.name for v in volumes.list({"com.docker.compose.project": None})] == ["blog_db"]
    assert volumes.get("blog_db").inspect()["Mountpoint"] == str(a.mountpoint)


def test_same_name_other_options_is_refused(volumes: Volumes, tmp_path: Path) -> None:
    volumes.create("data")
    with pytest.raises(AlreadyExists, match='volume "data" already exists'):
        volumes.create("data", options={"type": "tmpfs", "device": "tmpfs"})


@pytest.mark.parametrize(("name", "options", "fragment"), [
    ("-bad", {}, "invalid volume name"),
    ("ok", {"size": "1g"}, 'unknown driver option "size"'),
    ("ok", {"o": "bind", "device": "relative"}, "needs an absolute"),
    ("ok", {"o": "bind", "device": "/does/not/exist"}, "does not exist"),
])
def test_bad_volumes_are_refused_and_leave_nothing(volumes: Volumes, name: str,
                                                   options: dict, fragment: str) -> None:
    with pytest.raises((InvalidArgument, NotFound), match=fragment):
        volumes.create(name, options=options)
    assert volumes.list() == []
    assert not any(volumes.layout.volumes.glob("*")) if volumes.layout.volumes.exists() else True


def test_remove_refuses_volumes_in_use_and_prune_takes_anonymous(volumes: Volumes) -> None:
    named = volumes.create("keep")
    anon = volumes.create()
    assert anon.anonymous and len(anon.name) == 64
    volumes.users = lambda name: ["web-1"] if name == "keep" else []
    with pytest.raises(Conflict, match="in use by container web-1"):
        volumes.remove("keep")
    assert volumes.prune() == [anon.name]
    volumes.users = lambda name: []
    volumes.remove("keep")
    assert not named.mountpoint.parent.exists()
    with pytest.raises(NotFound):
        volumes.get("keep")


def test_populate_copies_image_content_once(volumes: Volumes, tmp_path: Path) -> None:
    image_dir = tmp_path / "image-mysql"
    (image_dir / "sub").mkdir(parents=True)
    (image_dir / "sub" / "f").write_text("from the image")
    (image_dir / "link").symlink_to("sub/f")
    volumes.create("db")
    assert volumes.populate("db", image_dir) is True
    data = volumes.get("db").mountpoint
    assert (data / "sub" / "f").read_text() == "from the image"
    assert (data / "link").is_symlink()
    (data / "sub" / "f").write_text("changed by the app")
    (data / "sub" / "f").unlink()
    assert volumes.populate("db", image_dir) is False  # only ever the first time
    assert not (data / "sub" / "f").exists()
