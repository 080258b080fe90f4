"""Image records of one engine root: what images there are, and finding them by name or id.

An image is its config blob (id = config digest), the manifest that lists its layers, and
the unpacked layers (engine.layers). Records live in the store; blobs in engine.content.

    images = Images(Layout.at(root))
    image = images.import_rootfs("rootfs.tar.gz", "busybox:latest", ["CMD [\"sh\"]"])
    images.resolve("busybox").id             # name, name:tag, name@digest, id or id prefix
    images.layer_dirs(image.id)              # bottom-first, for engine.snapshots

Containers hold images with `hold(image_id, container_id)` / `release(container_id)`;
`remove()` refuses a held image unless forced (and then only untags it).

Making images (`commit`, `import_rootfs`) lives in engine.imagecommit and removing them
(`remove`, `prune`, `drop_unreferenced`) in engine.imageremove. `Images` forwards to them,
importing each on first use, so `import engine.images` stays cheap for name lookups (the tar
unpacker and the decompressors load only when a layer is actually unpacked).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from engine import layers as layerstore
from engine import reference
from engine.content import ContentStore, parse_digest
from engine.errors import InvalidArgument, NotFound
from engine.layout import Layout
from engine.store import Store, loads

if TYPE_CHECKING:  # (image formats load only when an image is made or moved)
    from engine.imageformat import Platform

SCHEMA = """
CREATE TABLE IF NOT EXISTS images (
    id TEXT PRIMARY KEY,
    manifest_digest TEXT NOT NULL,
    manifest_media_type TEXT NOT NULL,
    created TEXT NOT NULL,
    size INTEGER NOT NULL,
    os TEXT NOT NULL,
    architecture TEXT NOT NULL,
    variant TEXT NOT NULL DEFAULT '',
    diff_ids TEXT NOT NULL,
    chain_ids TEXT NOT NULL,
    layers TEXT NOT NULL,
    blobs TEXT NOT NULL,
    added TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS image_tags (
    ref TEXT PRIMARY KEY,
    image_id TEXT NOT NULL REFERENCES images(id) ON DELETE CASCADE,
    tagged TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS image_digests (
    ref TEXT PRIMARY KEY,
    image_id TEXT NOT NULL REFERENCES images(id) ON DELETE CASCADE
);
CREATE TABLE IF NOT EXISTS image_users (
    image_id TEXT NOT NULL,
    user TEXT NOT NULL,
    PRIMARY KEY (image_id, user)
);
CREATE INDEX IF NOT EXISTS image_tags_by_image ON image_tags(image_id);
CREATE INDEX IF NOT EXISTS image_users_by_user ON image_users(user)
"""


@dataclass(frozen=True, slots=True)
class LayerRef:
    """One layer of an image: its blob (as stored) and its uncompressed identity."""

    digest: str
    media_type: str
    size: int
    diff_id: str
    tar_size: int


@dataclass(frozen=True, slots=True)
class Image:
    """An image in the store (its id is the digest of its config)."""

    id: str
    manifest_digest: str
    manifest_media_type: str
    created: str
    size: int
    os: str
    architecture: str
    variant: str
    diff_ids: tuple[str, ...]
    chain_ids: tuple[str, ...]
    layers: tuple[LayerRef, ...]
    blobs: tuple[str, ...]
    repo_tags: tuple[str, ...] = ()
    repo_digests: tuple[str, ...] = ()

    @property
    def short_id(self) -> str:
        return self.id.removeprefix("sha256:")[:12]

    @property
    def config_digest(self) -> str:
        return self.id


@dataclass(frozen=True, slots=True)
class Removal:
    """One step of `remove`/`prune`, printed as `Untagged: x` / `Deleted: sha256:...`."""

    action: str  # "Untagged" | "Deleted"
    subject: str


def now_rfc3339() -> str:
    """Now, as Docker writes an image's times (RFC 3339, UTC, microseconds)."""
    from engine.runtime import state

    return state.now(6)


class Images:
    """The image records of one engine root (thread-confined like `Store`)."""

    def __init__(self, layout: Layout, store: Store | None = None) -> None:
        self.layout = layout
        for path in (layout.blobs, layout.ingest, layout.layers, layout.tmp):
            path.mkdir(parents=True, exist_ok=True)
        self.store = store or Store(layout.database)
        self.store.ensure_schema(SCHEMA)
        self.content = ContentStore(layout)
        # What an image id fixes for ever (the id is its config's digest, which lists the
        # layers' diff_ids): the config's bytes and the layers' chain ids. `up` asks for
        # them once or twice per container.
        self._configs: dict[str, bytes] = {}
        self._chains: dict[str, tuple[str, ...]] = {}

    # -- reading ---------------------------------------------------------------------------

    def list(self) -> list[Image]:
        """Every image, newest first."""
        rows = self.store.query("SELECT * FROM images ORDER BY created DESC, id")
        return [self._image(row) for row in rows]

    def get(self, image_id: str) -> Image:
        rows = self.store.query("SELECT * FROM images WHERE id = ?", (image_id,))
        if not rows:
            raise NotFound(f"No such image: {image_id}")
        return self._image(rows[0])

    def _image(self, row: Any) -> Image:
        tags = tuple(r[0] for r in self.store.query(
            "SELECT ref FROM image_tags WHERE image_id = ? ORDER BY tagged, ref", (row["id"],)))
        digests = tuple(r[0] for r in self.store.query(
            "SELECT ref FROM image_digests WHERE image_id = ? ORDER BY ref", (row["id"],)))
        return Image(
            id=row["id"], manifest_digest=row["manifest_digest"],
            manifest_media_type=row["manifest_media_type"], created=row["created"],
            size=row["size"], os=row["os"], architecture=row["architecture"],
            variant=row["variant"], diff_ids=tuple(loads(row["diff_ids"])),
            chain_ids=tuple(loads(row["chain_ids"])),
            layers=tuple(LayerRef(**layer) for layer in loads(row["layers"])),
            blobs=tuple(loads(row["blobs"])), repo_tags=tags, repo_digests=digests)

    def resolve(self, name_or_id: str) -> Image:
        """By reference (`busybox`, `busybox:1`, `x@sha256:..`), full id or unique id prefix."""
        return self.get(self.resolve_id(name_or_id))

    def resolve_id(self, name_or_id: str) -> str:
        """`resolve(name_or_id).id`, without reading the whole record."""
        found = self.lookup(name_or_id)
        if found is None:
            raise NotFound(f"No such image: {name_or_id}")
        return found[0]


    def lookup(self, text: str) -> tuple[str, str | None] | None:
        """(image id, the normalised reference it was found by, or None if by id), or None
        when nothing matches. An ambiguous id prefix or a malformed name is InvalidArgument."""
        if text.startswith("sha256:") and len(text) == 71:
            parse_digest(text)
            rows = self.store.query("SELECT id FROM images WHERE id = ?", (text,))
            return (text, None) if rows else None
        try:
            ref = reference.parse(text)
        except InvalidArgument:
            ref = None
        if ref is not None:
            table = "image_digests" if ref.digest else "image_tags"
            key = f"{ref.name}@{ref.digest}" if ref.digest else str(ref)
            rows = self.store.query(f"SELECT image_id FROM {table} WHERE ref = ?", (key,))
            if rows:
                return rows[0][0], key
        if reference.is_id_prefix(text):
            prefix = "sha256:" + text.removeprefix("sha256:")
            rows = self.store.query(
                "SELECT id FROM images WHERE substr(id, 1, ?) = ?", (len(prefix), prefix))
            if len(rows) > 1:
                raise InvalidArgument(f"image id prefix {text!r} is ambiguous "
                                      f"({len(rows)} images match)")
            if rows:
                return rows[0][0], None
        if ref is None:
            reference.parse(text)  # re-raise the reference's own error
        return None

    def config(self, image_id: str) -> dict[str, Any]:
        """The image's config blob, parsed (OCI image config / Docker image JSON): a new
        dict on every call, the caller's to change."""
        data = self._configs.get(image_id)
        if data is None:
            data = self._configs[image_id] = self.content.read(image_id)
        return json.loads(data)

    def layer_dirs(self, image_id: str) -> list[Path]:
        """The image's unpacked layer trees, bottom-first (re-unpacked if one went missing)."""
        chain_ids = self._chains.get(image_id)
        if chain_ids is None or any(layerstore.get(self.layout, c) is None for c in chain_ids):
            image = self.get(image_id)
            layerstore.ensure_chain(self.content, [layer.digest for layer in image.layers],
                                    image.diff_ids)
            chain_ids = self._chains[image_id] = image.chain_ids
        return [layerstore.layer_path(self.layout, chain_id) / "diff" for chain_id in chain_ids]

    def layer_tar_size(self, chain: str) -> int:
        layer = layerstore.get(self.layout, chain)
        if layer is None:
            raise NotFound(f"layer {chain} is not unpacked")
        return layer.tar_size

    def inspect(self, name_or_id: str) -> dict[str, Any]:
        """Docker-shaped `image inspect` JSON for one image."""
        image = self.resolve(name_or_id)
        config = self.config(image.id)
        history = config.get("history") or []
        dirs = [str(d) for d in reversed(self.layer_dirs(image.id))]
        out: dict[str, Any] = {
            "Id": image.id,
            "RepoTags": [reference.parse(t).familiar() for t in image.repo_tags],
            "RepoDigests": [reference.parse(d, default_tag=False).familiar()
                            for d in image.repo_digests],
            "Parent": "",
            "Comment": (history[-1].get("comment", "") if history else ""),
            "Created": config.get("created", image.created),
            "DockerVersion": config.get("docker_version", ""),
            "Author": config.get("author", ""),
            "Config": docker_container_config(config.get("config")),
            "Architecture": image.architecture,
            "Os": image.os,
            "Size": image.size,
            "GraphDriver": {"Name": "overlay", "Data": {"LowerDir": ":".join(dirs)}},
            "RootFS": {"Type": "layers", "Layers": list(image.diff_ids)},
            "Metadata": {"LastTagTime": self._last_tag_time(image.id)},
        }
        if image.variant:
            out["Variant"] = image.variant
        return out

    def _last_tag_time(self, image_id: str) -> str:
        rows = self.store.query("SELECT max(tagged) FROM image_tags WHERE image_id = ?",
                                (image_id,))
        return rows[0][0] or "0001-01-01T00:00:00Z"

    # -- users (containers) ----------------------------------------------------------------

    def hold(self, image_id: str, user: str) -> None:
        """Marks `image_id` as used by `user` (a container id): it is not removed or pruned."""
        with self.store.tx() as conn:
            conn.execute("INSERT OR IGNORE INTO image_users(image_id, user) VALUES (?, ?)",
                         (image_id, user))

    def release(self, user: str) -> None:
        with self.store.tx() as conn:
            conn.execute("DELETE FROM image_users WHERE user = ?", (user,))

    def users(self, image_id: str) -> list[str]:
        return [r[0] for r in self.store.query(
            "SELECT user FROM image_users WHERE image_id = ? ORDER BY user", (image_id,))]

    # -- tags ------------------------------------------------------------------------------

    def tag(self, source: str, target: str) -> str:
        """Points `target` (a name, normalised) at the image `source` resolves to."""
        image = self.resolve(source)
        ref = reference.parse(target)
        if ref.digest:
            raise InvalidArgument(f"refusing to create a tag with a digest reference: {target}")
        with self.store.tx() as conn:
            set_tag(conn, ref, image.id, now_rfc3339())
        return str(ref)

    # -- making and removing (engine.imagecommit, engine.imageremove) ----------------------

    def commit(self, manifest_digest: str, *, tags: Iterable[str] = (),
               repo_digests: Iterable[str] = (), extra_blobs: Iterable[str] = ()) -> Image:
        """Registers the image whose manifest (and config and layer blobs) are in the content
        store: unpacks missing layers (verifying each diff_id), records it, moves `tags`
        (names, normalised here) onto it. Idempotent."""
        from engine.imagecommit import commit

        return commit(self, manifest_digest, tags=tags, repo_digests=repo_digests,
                      extra_blobs=extra_blobs)

    def import_rootfs(self, source: str | os.PathLike[str] | BinaryIO, ref: str | None = None,
                      changes: Sequence[str] = (), message: str = "",
                      platform: Platform | None = None) -> Image:
        """A root filesystem tarball (plain, gzip or zstd) -> a one-layer image.

        `changes` are Dockerfile instructions (CMD, ENTRYPOINT, ENV, WORKDIR, USER, EXPOSE,
        LABEL, VOLUME, STOPSIGNAL). Bad changes or a bad reference fail before any work."""
        from engine.imagecommit import import_rootfs

        return import_rootfs(self, source, ref, changes, message, platform)

    def remove(self, name_or_id: str, force: bool = False) -> list[Removal]:
        """`image rm`: untags; deletes the image when no tag is left and no container uses it.

        By id, an image with several tags needs `force`. An image a container uses is never
        deleted: without `force` that is a Conflict, with it the image is only untagged."""
        from engine.imageremove import remove

        return remove(self, name_or_id, force)

    def prune(self, all: bool = False) -> tuple[list[Removal], int]:
        """Deletes dangling images (every unused image with `all`); returns the steps and
        the bytes reclaimed (unpacked layers removed)."""
        from engine.imageremove import prune

        return prune(self, all)

    def drop_unreferenced(self, blobs: Iterable[str]) -> None:
        """Deletes those of `blobs` that no image record lists."""
        from engine.imageremove import drop_unreferenced

        drop_unreferenced(self, blobs)


def set_tag(conn: Any, ref: reference.Reference, image_id: str, now: str) -> None:
    """Points `ref` (a tag, or a name@digest) at `image_id` inside transaction `conn`."""
    if ref.digest:
        conn.execute("INSERT OR REPLACE INTO image_digests(ref, image_id) VALUES (?,?)",
                     (f"{ref.name}@{ref.digest}", image_id))
        return
    conn.execute("INSERT OR REPLACE INTO image_tags(ref, image_id, tagged) VALUES (?,?,?)",
                 (str(ref.tagged()), image_id, now))


DOCKER_CONFIG_DEFAULTS: dict[str, Any] = {
    "Hostname": "", "Domainname": "", "User": "", "AttachStdin": False,
    "AttachStdout": False, "AttachStderr": False, "Tty": False, "OpenStdin": False,
    "StdinOnce": False, "Env": None, "Cmd": None, "Image": "", "Volumes": None,
    "WorkingDir": "", "Entrypoint": None, "OnBuild": None, "Labels": None,
}


def docker_container_config(config: dict[str, Any] | None) -> dict[str, Any]:
    """The image config's `config` in the shape `docker image inspect` prints."""
    out = dict(DOCKER_CONFIG_DEFAULTS)
    out.update(config or {})
    return out


__all__ = ["Image", "Images", "LayerRef", "Removal", "docker_container_config"]
