"""Named and anonymous volumes of the `local` driver.

A volume is a directory `<root>/volumes/<name>/_data` plus a record in the store. The
`local` driver's options work as Docker's do: `type`, `o` and `device` describe a mount
(`o: bind` with `device: /some/dir` binds a host directory; `type: tmpfs` mounts a tmpfs);
such a volume is mounted on first use by a container and unmounted when the last user goes.
The first time a container mounts an empty volume, the image's content at the mount point is
copied in with ownership and modes (`populate`), unless the mount asks for `nocopy`.
"""

from __future__ import annotations

import os
import re
import subprocess
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from engine.errors import AlreadyExists, Conflict, InvalidArgument, NotFound
from engine.fsremove import remove_tree
from engine.layout import Layout
from engine.snapshots import is_mounted as _is_mounted
from engine.store import Store, dumps, loads

SCHEMA = """
CREATE TABLE IF NOT EXISTS volumes (
    name TEXT PRIMARY KEY,
    driver TEXT NOT NULL,
    options TEXT NOT NULL,
    labels TEXT NOT NULL,
    created REAL NOT NULL,
    anonymous INTEGER NOT NULL DEFAULT 0,
    populated INTEGER NOT NULL DEFAULT 0
)
"""

NAME_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]*$")
LOCAL_OPTIONS = frozenset({"type", "o", "device"})


@dataclass(frozen=True, slots=True)
class Volume:
    """A named volume's record."""

    name: str
    driver: str
    options: Mapping[str, str]
    labels: Mapping[str, str]
    created: float
    anonymous: bool
    mountpoint: Path
    populated: bool = False
    extra: Mapping[str, str] = field(default_factory=dict)

    @property
    def driver_mounted(self) -> bool:
        """Whether the local driver mounts something on `mountpoint` (type/device given)."""
        return bool(self.options.get("type") or self.options.get("device"))

    def inspect(self) -> dict:
        """Docker's `volume inspect` shape."""
        return {
            "CreatedAt": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.created)),
            "Driver": self.driver,
            "Labels": dict(self.labels),
            "Mountpoint": str(self.mountpoint),
            "Name": self.name,
            "Options": dict(self.options),
            "Scope": "local",
        }


# Who uses a volume: filled in by the container module so `remove` can refuse volumes in use.
UsersLookup = Callable[[str], list[str]]


class Volumes:
    def __init__(self, layout: Layout, store: Store,
                 users: UsersLookup | None = None) -> None:
        self.layout = layout
        self.store = store
        self.users: UsersLookup = users or (lambda name: [])
        store.ensure_schema(SCHEMA)

    def create(self, name: str | None = None, *, driver: str = "local",
               options: Mapping[str, str] | None = None,
               labels: Mapping[str, str] | None = None) -> Volume:
        """Creates a volume; an unnamed one gets a random 64-hex name (anonymous).

        Creating an existing name with the same driver and options returns it (as Docker
        does); with different ones it is an error."""
        options = dict(options or {})
        labels = dict(labels or {})
        anonymous = name is None
        name = name or os.urandom(32).hex()
        if not NAME_RE.match(name):
            raise InvalidArgument(
                f'invalid volume name "{name}": only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed')
        if driver != "local":
            raise InvalidArgument(
                f'volume "{name}": driver "{driver}" is not supported (only "local")')
        unknown = sorted(set(options) - LOCAL_OPTIONS)
        if unknown:
            raise InvalidArgument(
                f'volume "{name}": unknown driver option "{unknown[0]}" '
                f"(the local driver takes type, o and device)")
        if options.get("o") and "bind" in options["o"].split(","):
            device = options.get("device", "")
            if not device or not os.path.isabs(device):
                raise InvalidArgument(
                    f'volume "{name}": o=bind needs an absolute "device" path')
            if not os.path.isdir(device):
                raise NotFound(f'volume "{name}": bind device "{device}" does not exist')
        with self.store.tx() as conn:
            row = conn.execute("SELECT * FROM volumes WHERE name = ?", (name,)).fetchone()
            if row is not None:
                if row["driver"] != driver or loads(row["options"]) != options:
                    raise AlreadyExists(
                        f'volume "{name}" already exists with other options')
                return self._volume(row)
            data = self.layout.volume(name) / "_data"
            data.mkdir(parents=True, exist_ok=True)
            os.chmod(data.parent, 0o701)
            conn.execute(
                "INSERT INTO volumes (name, driver, options, labels, created, anonymous)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (name, driver, dumps(options), dumps(labels), time.time(), int(anonymous)))
            row = conn.execute("SELECT * FROM volumes WHERE name = ?", (name,)).fetchone()
        return self._volume(row)

    def get(self, name: str) -> Volume:
        rows = self.store.query("SELECT * FROM volumes WHERE name = ?", (name,))
        if not rows:
            raise NotFound(f'volume "{name}" not found')
        return self._volume(rows[0])

    def exists(self, name: str) -> bool:
        return bool(self.store.query("SELECT 1 FROM volumes WHERE name = ?", (name,)))

    def list(self, labels: Mapping[str, str | None] | None = None) -> list[Volume]:
        """Volumes whose labels match: a value of None means "has the label"."""
        vols = [self._volume(r) for r in self.store.query("SELECT * FROM volumes ORDER BY name")]
        if labels:
            vols = [v for v in vols if all(
                k in v.labels and (want is None or v.labels[k] == want)
                for k, want in labels.items())]
        return vols

    def remove(self, name: str, *, force: bool = False) -> None:
        volume = self.get(name)
        users = self.users(name)
        if users:
            raise Conflict(f'volume "{name}" is in use by container {", ".join(users)}')
        self._unmount(volume)
        with self.store.tx() as conn:
            conn.execute("DELETE FROM volumes WHERE name = ?", (name,))
        remove_tree(self.layout.volume(name), ignore_errors=True)

    def prune(self, *, all_volumes: bool = False) -> list[str]:
        """Removes unused volumes: anonymous ones, or all unused with `all_volumes`."""
        removed = []
        for volume in self.list():
            if (all_volumes or volume.anonymous) and not self.users(volume.name):
                self.remove(volume.name)
                removed.append(volume.name)
        return removed

    def source(self, name: str) -> Path:
        """The host directory a container's mount binds, mounting the driver's device first
        when the volume has one."""
        return self._source(self.get(name))

    def _source(self, volume: Volume) -> Path:
        if volume.driver_mounted:
            self._mount(volume)
        return volume.mountpoint

    def populate(self, name: str, image_dir: Path) -> bool:
        """Copies `image_dir` (the image's content at the mount point) into the volume if the
        volume was never populated and is empty. Returns whether it copied."""
        volume = self.get(name)
        if volume.populated:
            return False
        target = self._source(volume)
        if any(target.iterdir()) or not image_dir.is_dir():
            self._mark_populated(name)
            return False
        # cp -a keeps owners, modes, times, links, xattrs and sparse files; the image's
        # numeric ids must survive (mysql is uid 100 in the image, not the host's mysql).
        result = subprocess.run(["cp", "-a", "--", f"{image_dir}/.", f"{target}/"],
                                capture_output=True, text=True)
        if result.returncode != 0:
            raise InvalidArgument(
                f'volume "{name}": copying the image content failed: {result.stderr.strip()}')
        stat = image_dir.stat()
        os.chown(target, stat.st_uid, stat.st_gid)
        os.chmod(target, stat.st_mode & 0o7777)
        self._mark_populated(name)
        return True

    def unmount_if_unused(self, name: str, *, exclude: str = "") -> None:
        """Unmounts a driver-mounted volume when no container but `exclude` uses it."""
        try:
            volume = self.get(name)
        except NotFound:
            return
        if not volume.driver_mounted or [u for u in self.users(name) if u != exclude]:
            return
        self._unmount(volume)

    def _mark_populated(self, name: str) -> None:
        with self.store.tx() as conn:
            conn.execute("UPDATE volumes SET populated = 1 WHERE name = ?", (name,))

    def _mount(self, volume: Volume) -> None:
        if _is_mounted(volume.mountpoint):
            return
        options = volume.options
        command = ["mount"]
        if options.get("type"):
            command += ["-t", options["type"]]
        if options.get("o"):
            command += ["-o", options["o"]]
        command += [options.get("device") or options.get("type", "none"),
                    str(volume.mountpoint)]
        result = subprocess.run(command, capture_output=True, text=True)
        if result.returncode != 0:
            raise InvalidArgument(
                f'volume "{volume.name}": mounting failed: {result.stderr.strip()}')

    def _unmount(self, volume: Volume) -> None:
        while _is_mounted(volume.mountpoint):
            result = subprocess.run(["umount", str(volume.mountpoint)], capture_output=True,
                                    text=True)
            if result.returncode != 0:
                raise Conflict(
                    f'volume "{volume.name}": unmounting failed: {result.stderr.strip()}')

    def _volume(self, row) -> Volume:
        return Volume(name=row["name"], driver=row["driver"], options=loads(row["options"]),
                      labels=loads(row["labels"]), created=row["created"],
                      anonymous=bool(row["anonymous"]), populated=bool(row["populated"]),
                      mountpoint=self.layout.volume(row["name"]) / "_data")

