"""Container records and lifecycle: create, start, stop, kill, remove, list, inspect.

A container is a record in the store (its `CreateRequest`, the image it was created from,
the concrete volumes its mounts resolved to) and a directory under the engine root. Starting
it prepares everything around the process (rootfs overlay, network namespace and
attachments, volumes, /etc files, config.json) and hands the bundle to the runtime's shim;
the shim owns the process from then on and records its state in the container directory.
Stopping or removing it undoes the preparation in reverse order. Every step is idempotent,
so a command killed half-way leaves a state the next stop or remove converges from.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import os
import re
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine import prepare
from engine.errors import Conflict, InvalidArgument, NotFound
from engine.fsremove import remove_tree
from engine.requests import CreateRequest
from engine.serde import from_dict, to_dict
from engine.store import dumps, loads

if TYPE_CHECKING:
    from engine import Engine
    from engine.runtime.state import State

SCHEMA = """
CREATE TABLE IF NOT EXISTS containers (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    image TEXT NOT NULL,
    image_id TEXT NOT NULL,
    created REAL NOT NULL,
    labels TEXT NOT NULL,
    request TEXT NOT NULL,
    volumes TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS container_volumes (
    container_id TEXT NOT NULL REFERENCES containers(id) ON DELETE CASCADE,
    volume TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS container_volumes_by_volume ON container_volumes(volume)
"""

NAME_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]*$")


@dataclass(frozen=True, slots=True)
class Container:
    """A container's record: what it was created from and where its files are."""

    id: str
    name: str
    image: str
    image_id: str
    created: float
    labels: Mapping[str, str]
    request: CreateRequest
    volumes: tuple[str, ...]        # concrete volume name per mount ("" for non-volumes)
    directory: Path

    @property
    def short_id(self) -> str:
        return self.id[:12]


class Containers:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.layout = engine.layout
        self.store = engine.store
        self.store.ensure_schema(SCHEMA)
        self._lock_fds: dict[str, int] = {}

    # ---- records ---------------------------------------------------------------------------

    def create(self, request: CreateRequest) -> Container:
        """Records a new container: resolves its image, claims its name, creates its
        anonymous volumes. Nothing runs yet."""
        from engine import ports

        ports.check(request.ports)
        image_id = self.engine.images.resolve_id(request.image)
        name = request.name or _generated_name()
        if not NAME_RE.match(name):
            raise InvalidArgument(
                f'invalid container name "{name}": only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed')
        container_id = os.urandom(32).hex()
        mounts = prepare.with_image_volumes(request.mounts,
                                            self.engine.images.config(image_id))
        request = dataclasses.replace(request, mounts=mounts)
        volume_names = self._claim_volumes(request)
        # Serialised before the transaction: other writers wait while it is open.
        row = (container_id, name, request.image, image_id, time.time(),
               dumps(dict(request.labels)), dumps(to_dict(request)), dumps(list(volume_names)))
        try:
            with self.store.tx() as conn:
                holder = conn.execute("SELECT id FROM containers WHERE name = ?",
                                      (name,)).fetchone()
                if holder is not None:
                    raise Conflict(
                        f'container name "{name}" is already in use by container '
                        f'{holder["id"][:12]}; remove it or choose another name')
                conn.execute(
                    "INSERT INTO containers (id, name, image, image_id, created, labels,"
                    " request, volumes) VALUES (?, ?, ?, ?, ?, ?, ?, ?)", row)
                conn.executemany(
                    "INSERT INTO container_volumes (container_id, volume) VALUES (?, ?)",
                    [(container_id, v) for v in volume_names if v])
                self.engine.images.hold(image_id, container_id)
        except BaseException:
            for mount, volume in zip(request.mounts, volume_names, strict=True):
                if volume and not mount.source:
                    self.engine.volumes.remove(volume)
            raise
        directory = self.layout.container(container_id)
        directory.mkdir(parents=True, exist_ok=True)
        # What `get` would read back, without reading it back: the store's JSON round trip
        # is exact (tests/unit/test_serde.py), and parsing the request again cost each of
        # `up`'s creates ~0.5 ms of the interpreter lock.
        return Container(id=container_id, name=name, image=request.image, image_id=image_id,
                         created=row[4], labels=dict(request.labels), request=request,
                         volumes=volume_names, directory=directory)

    def _claim_volumes(self, request: CreateRequest) -> tuple[str, ...]:
        names = []
        for mount in request.mounts:
            if mount.type != "volume":
                names.append("")
                continue
            if mount.source and self.engine.volumes.exists(mount.source):
                names.append(mount.source)
                continue
            volume = self.engine.volumes.create(mount.source or None,
                                                labels=mount.volume_labels)
            names.append(volume.name)
        return tuple(names)

    def get(self, ref: str) -> Container:
        """By full id, name, or unique id prefix."""
        rows = self.store.query("SELECT * FROM containers WHERE id = ? OR name = ?",
                                (ref, ref.lstrip("/")))
        if not rows and re.fullmatch(r"[0-9a-f]{1,64}", ref):
            rows = self.store.query("SELECT * FROM containers WHERE id LIKE ?", (ref + "%",))
            if len(rows) > 1:
                raise InvalidArgument(f'"{ref}" matches several containers; give more of the id')
        if not rows:
            raise NotFound(f'no such container: "{ref}"')
        return self._container(rows[0])

    def list(self, labels: Mapping[str, str | None] | None = None) -> list[Container]:
        """Every container, oldest first; `labels` filters (None = has the label)."""
        found = [self._container(r)
                 for r in self.store.query("SELECT * FROM containers ORDER BY created")]
        if labels:
            found = [c for c in found if all(
                k in c.labels and (v is None or c.labels[k] == v) for k, v in labels.items())]
        return found

    def using_volume(self, volume: str) -> list[str]:
        rows = self.store.query(
            "SELECT c.name FROM container_volumes v JOIN containers c ON c.id = v.container_id"
            " WHERE v.volume = ?", (volume,))
        return [r["name"] for r in rows]

    def _container(self, row: Any) -> Container:
        return Container(
            id=row["id"], name=row["name"], image=row["image"], image_id=row["image_id"],
            created=row["created"], labels=loads(row["labels"]),
            request=from_dict(CreateRequest, loads(row["request"])),
            volumes=tuple(loads(row["volumes"])), directory=self.layout.container(row["id"]))

    # ---- lifecycle -------------------------------------------------------------------------

    def state(self, ref: str | Container) -> State:
        from engine.runtime import launch

        container = ref if isinstance(ref, Container) else self.get(ref)
        try:
            return launch.state(str(container.directory))
        except NotFound:
            # A create killed between its record's commit and its directory's making: the
            # record is the truth, and a container that never ran is "created".
            return launch.State.from_dict({"id": container.id, "status": "created"})

    def start(self, ref: str | Container, *, waited: bool = False) -> Container:
        """Prepares the bundle and starts the process; a running container is left alone.
        A failure undoes the preparation and raises the runtime's clear message. `waited`:
        the caller will `launch.wait` for its end and then release it (see launch.start)."""
        from engine import ports
        from engine.runtime import launch

        container = ref if isinstance(ref, Container) else self.get(ref)
        if not container.directory.is_dir():
            # A create killed before making the directory. Made before the lock, which lives
            # in it (without it the start would run unlocked), and only while the record
            # stands (not for a container `rm` took away meanwhile).
            self.get(container.id)
            container.directory.mkdir(parents=True, exist_ok=True)
        with self._locked(container):
            if not container.directory.is_dir():  # removed while we waited for the lock
                raise NotFound(f"no such container: {container.name}")
            if self.state(container).running:
                return container
            # Leftovers of an earlier run, or of a start killed half-way (a namespace, leases,
            # a mounted rootfs): bundle() starts from nothing.
            launch.delete(str(container.directory))
            prepare.release(self.engine, container)
            try:
                prepare.bundle(self.engine, container)
                launch.start(str(container.directory), waited=waited)
            except BaseException:
                self.release(container)
                raise
            finally:
                ports.close_held(container.id)  # the shim holds its own copies now
        return container

    def stop(self, ref: str | Container, timeout: float | None = None) -> Container:
        """Stops the process and undoes its preparation. A container that never got as far
        as a bundle (created, or its first start killed early) has nothing to stop: only its
        leftovers are released."""
        from engine.runtime import launch

        container = ref if isinstance(ref, Container) else self.get(ref)
        if timeout is None:
            timeout = container.request.config.stop_timeout
        if (container.directory / "config.json").is_file():
            launch.stop(str(container.directory), 10.0 if timeout is None else timeout)
        self.release(container)
        return container

    def kill(self, ref: str | Container, signal: str = "KILL") -> Container:
        from engine.runtime import launch

        container = ref if isinstance(ref, Container) else self.get(ref)
        if not self.state(container).running:
            raise Conflict(f"container {container.name} is not running")
        launch.kill(str(container.directory), signal)
        return container

    def release(self, container: Container) -> None:
        """Undoes `prepare.bundle` once the process is gone (idempotent). The runtime's
        final state stays, so `ls -a` can say how the container ended."""
        with self._locked(container):
            if self.state(container).running:
                return
            prepare.release(self.engine, container)

    # ---- release on exit, published ports --------------------------------------------------

    @contextlib.contextmanager
    def _locked(self, container: Container) -> Iterator[None]:
        """Serialises preparing and releasing one container across processes (commands,
        the shim's exit hook). Re-entrant within this object."""
        if container.id in self._lock_fds or not container.directory.is_dir():
            yield
            return
        fd = os.open(container.directory / "lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC,
                     0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            self._lock_fds[container.id] = fd
            yield
        finally:
            self._lock_fds.pop(container.id, None)
            os.close(fd)

    @contextlib.contextmanager
    def adopt_lock(self, container_id: str, fd: int) -> Iterator[None]:
        """Uses a lock some other process took for us (the shim, for engine.reaper). The
        caller keeps `fd`: the lock lasts until it closes it (or exits)."""
        self._lock_fds[container_id] = fd
        try:
            yield
        finally:
            self._lock_fds.pop(container_id, None)

    def published_ports(self, ref: str | Container) -> list[Any]:
        """The container's served port bindings (`ports.Published`: actual host ports),
        empty when it is not running."""
        from engine import ports

        container = ref if isinstance(ref, Container) else self.get(ref)
        return ports.published(self.engine, container)

    def remove(self, ref: str | Container, *, force: bool = False,
               volumes: bool = False) -> None:
        """Removes the container (stopping it first with `force`) and, with `volumes`, its
        anonymous volumes. Leaves no mount, cgroup, netns, process or file of it."""
        from engine.runtime import launch

        container = ref if isinstance(ref, Container) else self.get(ref)
        # Under the container's lock, as a start prepares under it: a start in another
        # process waits, then finds the directory gone (and does not run a removed
        # container); the shim's exit hook leaves the release to us.
        with self._locked(container):
            current = self.state(container)
            if current.running:
                if not force:
                    raise Conflict(f"container {container.name} is {current.status}: "
                                   "stop it first or use -f")
                self.stop(container, timeout=0)
            self.release(container)
            launch.delete(str(container.directory))
            with self.store.tx() as conn:
                conn.execute("DELETE FROM containers WHERE id = ?", (container.id,))
                self.engine.images.release(container.id)
            remove_tree(container.directory, ignore_errors=True)
            # (empty, unless a start was killed between making it and marking it)
            prepare.remove_run_files(self.engine, container)
        if volumes:
            for mount, volume in zip(container.request.mounts, container.volumes, strict=True):
                if volume and not mount.source and not self.using_volume(volume):
                    self.engine.volumes.remove(volume)


_ADJECTIVES = ("brave", "calm", "eager", "fancy", "gentle", "happy", "jolly", "keen",
               "lucid", "merry", "nifty", "proud", "quiet", "sharp", "tender", "vivid")
_NAMES = ("hopper", "lovelace", "turing", "ritchie", "thompson", "torvalds", "knuth",
          "liskov", "hamilton", "dijkstra", "kay", "lamport", "perlman", "wirth")


def _generated_name() -> str:
    """Docker-style `adjective_name`, made unique with a short random suffix."""
    return f"{_pick(_ADJECTIVES)}_{_pick(_NAMES)}_{os.urandom(2).hex()}"


def _pick(words: tuple[str, ...]) -> str:
    # os.urandom, as `secrets` does: importing `secrets` costs ~12 ms (hmac loads OpenSSL)
    return words[int.from_bytes(os.urandom(2), "big") % len(words)]

