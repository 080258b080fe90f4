"""The netns directory's shared mount and the mark that saves `create` the mount-table read
(engine/netns.py): the first create makes `layout.netns` a shared mount point of its own and
leaves `layout.run/netns.shared.<boot id>`; the last delete takes the mark, then the mounts,
away; later creates trust the mark. Real kernel, temporary engine roots, leak-checked."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest

from engine import mountinfo, netns
from engine.layout import Layout
from tests.support import leaks


def boot_id() -> str:
    return Path("/proc/sys/kernel/random/boot_id").read_text().strip()


def mark_of(layout: Layout) -> Path:
    return layout.run / f"netns.shared.{boot_id()}"


def netns_mounts(layout: Layout) -> dict[str, list[str]]:
    """Mount point (as mountinfo spells it) -> its optional fields, for every mount at or
    under layout.netns, from /proc/self/mountinfo as it is now."""
    top = mountinfo.escape(str(layout.netns))
    found: dict[str, list[str]] = {}
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            if fields[4] == top or fields[4].startswith(top + "/"):
                found.setdefault(fields[4], []).extend(fields[6:fields.index("-")])
    return found


def dir_is_shared_mount(layout: Layout) -> bool:
    optional = netns_mounts(layout).get(mountinfo.escape(str(layout.netns)))
    return optional is not None and any(f.startswith("shared:") for f in optional)


@pytest.fixture
def env(tmp_path: Path) -> Iterator[SimpleNamespace]:
    before = leaks.snapshot()
    layout = Layout.at(tmp_path / "root").ensure()
    made: list[Path] = []

    def create(name: str) -> Path:
        path = netns.create(layout, name)
        made.append(path)
        return path

    yield SimpleNamespace(layout=layout, create=create)
    for path in made:
        netns.delete(path, layout)
    leaked = leaks.diff(before, leaks.snapshot())
    # Only what this test can make: mounts under its run directory or tmp_path (sessions
    # running alongside make mounts and links of their own meanwhile).
    paths = (str(layout.run), str(tmp_path))
    mine = [m for m in leaked.get("mounts", []) if m.startswith(paths)]
    assert mine == []
    assert netns_mounts(layout) == {}
    assert not mark_of(layout).exists()


def test_first_create_shares_the_dir_and_marks_it_last_delete_takes_both(env) -> None:
    layout = env.layout
    assert not mark_of(layout).exists() and netns_mounts(layout) == {}
    path = env.create("one")
    assert netns.exists(path)
    assert dir_is_shared_mount(layout)
    assert mountinfo.escape(str(path)) in netns_mounts(layout)
    assert mark_of(layout).exists()

    netns.delete(path, layout)
    assert not netns.exists(path)
    assert not mark_of(layout).exists()
    assert netns_mounts(layout) == {}  # neither the namespace nor the directory mount
    assert not layout.netns.exists()

    # A mark of the last round must not stay behind to skip this one: shared again.
    again = env.create("two")
    assert netns.exists(again)
    assert dir_is_shared_mount(layout)
    assert mark_of(layout).exists()
    netns.delete(again, layout)
    assert not mark_of(layout).exists() and netns_mounts(layout) == {}


def test_creates_trusting_the_mark_make_live_namespaces(env) -> None:
    layout = env.layout
    first = env.create("a")
    assert mark_of(layout).exists() and dir_is_shared_mount(layout)
    second = env.create("b")  # the mark is there: no mount-table check this time
    assert netns.exists(first) and netns.exists(second)
    assert os.stat(first).st_ino != os.stat(second).st_ino  # two namespaces, not one
    assert dir_is_shared_mount(layout)
    mounts = netns_mounts(layout)
    assert {mountinfo.escape(str(p)) for p in (first, second)} <= set(mounts)

    # Not the last: the mark and the directory mount stay for the other namespace.
    netns.delete(first, layout)
    assert not netns.exists(first) and netns.exists(second)
    assert mark_of(layout).exists() and dir_is_shared_mount(layout)
    third = env.create("c")
    assert netns.exists(third) and netns.exists(second)

    netns.delete(second, layout)
    netns.delete(third, layout)
    assert not mark_of(layout).exists()
    assert netns_mounts(layout) == {}


def test_a_mark_of_another_boot_is_not_trusted(env) -> None:
    layout = env.layout
    layout.run.mkdir(parents=True, exist_ok=True)
    stale = layout.run / "netns.shared.00000000-0000-0000-0000-000000000000"
    stale.touch()
    try:
        path = env.create("x")
        assert netns.exists(path)
        assert dir_is_shared_mount(layout)
        assert mark_of(layout).exists()
        netns.delete(path, layout)
        assert netns_mounts(layout) == {}
    finally:
        stale.unlink(missing_ok=True)


def test_a_mark_whose_mount_went_is_not_trusted(env) -> None:
    """The mark names the mount it saw: a directory unmounted by someone else, or removed and
    made again, is on another mount, and the next create shares it again."""
    from engine.runtime.syscalls import MNT_DETACH, umount2

    layout = env.layout
    path = env.create("a")
    netns.delete(path, None)  # the namespace only: the directory mount and the mark stay
    assert mark_of(layout).exists() and dir_is_shared_mount(layout)
    umount2(str(layout.netns), MNT_DETACH)  # someone else takes the directory mount away
    assert not dir_is_shared_mount(layout) and mark_of(layout).exists()
    again = env.create("b")
    assert netns.exists(again) and dir_is_shared_mount(layout)
    netns.delete(again, layout)
    assert netns_mounts(layout) == {} and not layout.netns.exists()

    # A mark left with no directory at all (a crash, a hand clean-up): create makes both.
    mark_of(layout).write_text("1")
    third = env.create("c")
    assert netns.exists(third) and dir_is_shared_mount(layout)
