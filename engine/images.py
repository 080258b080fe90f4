"""Images: OCI / Docker schema2 formats, platform choice, and the image records of one root.

An image is its config blob (id = config digest), the manifest that lists its layers, and
the unpacked layers (engine.layers). Records live in the store; blobs in engine.content.

    images = Images(Layout.at(root))
    image = images.import_rootfs("rootfs.tar.gz", "busybox:latest", ["CMD [\"sh\"]"])
    images.resolve("busybox").id             # name, name:tag, name@digest, id or id prefix
    images.layer_dirs(image.id)              # bottom-first, for engine.snapshots

Containers hold images with `hold(image_id, container_id)` / `release(container_id)`;
`remove()` refuses a held image unless forced (and then only untags it).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO

from engine import layers as layerstore
from engine import reference
from engine.content import Blob, ContentStore, parse_digest
from engine.errors import Conflict, InvalidArgument, NotFound
from engine.imageformat import (
    MANIFEST_TYPES,
    OCI_CONFIG,
    OCI_LAYER,
    OCI_MANIFEST,
    Descriptor,
    Platform,
    host_platform,
    parse_manifest,
)
from engine.layout import Layout
from engine.store import Store, dumps, loads

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

_LAYER_TYPES = {"none": OCI_LAYER, "gzip": OCI_LAYER + "+gzip", "zstd": OCI_LAYER + "+zstd"}


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
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class Images:
    """The image records of one engine root (thread-confined like `Store`)."""

    def __init__(self, layout: Layout, store: Store | None = None) -> None:
        self.layout = layout
        for path in (layout.blobs, layout.ingest, layout.layers, layout.tmp):
            path.mkdir(parents=True, exist_ok=True)
        self.store = store or Store(layout.database)
        self.store.ensure_schema(SCHEMA)
        self.content = ContentStore(layout)

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
        found = self._lookup(name_or_id)
        if found is None:
            raise NotFound(f"No such image: {name_or_id}")
        return self.get(found[0])

    def _lookup(self, text: str) -> tuple[str, str | None] | None:
        """(image id, the normalised reference it was found by, or None if by id)."""
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
        """The image's config blob, parsed (OCI image config / Docker image JSON)."""
        return json.loads(self.content.read(image_id))

    def layer_dirs(self, image_id: str) -> list[Path]:
        """The image's unpacked layer trees, bottom-first (re-unpacked if one went missing)."""
        image = self.get(image_id)
        self._ensure_layers([layer.digest for layer in image.layers], image.diff_ids)
        return [layerstore.layer_path(self.layout, chain) / "diff" for chain in image.chain_ids]

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

    # -- creating --------------------------------------------------------------------------

    def commit(self, manifest_digest: str, *, tags: Iterable[str] = (),
               repo_digests: Iterable[str] = (), extra_blobs: Iterable[str] = ()) -> Image:
        """Registers the image whose manifest (and config and layer blobs) are in the content
        store: unpacks missing layers (verifying each diff_id), records it, moves `tags`
        (names, normalised here) onto it. Idempotent."""
        manifest = parse_manifest(self.content.read(manifest_digest))
        config = _parse_config(self.content.read(manifest.config.digest), manifest.config)
        diff_ids = config["rootfs"]["diff_ids"]
        if len(diff_ids) != len(manifest.layers):
            raise InvalidArgument(
                f"image {manifest.config.digest}: the manifest lists {len(manifest.layers)} "
                f"layers but the config has {len(diff_ids)} diff_ids")
        for desc in manifest.layers:
            self._check_layer_blob(desc)
        chains = layerstore.chain_ids(diff_ids)
        self._ensure_layers([d.digest for d in manifest.layers], diff_ids)
        unpacked = [layerstore.get(self.layout, chain) for chain in chains]
        refs = [LayerRef(desc.digest, desc.media_type, desc.size, diff_id, layer.tar_size)
                for desc, diff_id, layer in zip(manifest.layers, diff_ids, unpacked, strict=True)
                if layer is not None]
        size = sum(ref_layer.size for ref_layer in unpacked if ref_layer is not None)
        blobs = [manifest_digest, manifest.config.digest, *(r.digest for r in refs),
                 *extra_blobs]
        now = now_rfc3339()
        with self.store.tx() as conn:
            # Upsert (not REPLACE, which would cascade to the tags); the same image may come
            # again with another manifest (say compressed differently): keep both's blobs.
            for row in conn.execute("SELECT blobs FROM images WHERE id = ?",
                                    (manifest.config.digest,)):
                blobs += loads(row[0])
            conn.execute(
                "INSERT INTO images(id, manifest_digest, manifest_media_type, created, size, os, "
                "architecture, variant, diff_ids, chain_ids, layers, blobs, added) "
                "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?) ON CONFLICT(id) DO UPDATE SET "
                "manifest_digest=excluded.manifest_digest, "
                "manifest_media_type=excluded.manifest_media_type, layers=excluded.layers, "
                "blobs=excluded.blobs",
                (manifest.config.digest, manifest_digest, manifest.media_type,
                 config.get("created") or now, size, config.get("os", ""),
                 config.get("architecture", ""), config.get("variant", ""), dumps(diff_ids),
                 dumps(chains), dumps([_layer_dict(r) for r in refs]),
                 dumps(sorted(set(blobs))), now))
            for tag in tags:
                self._set_tag(conn, reference.parse(tag), manifest.config.digest, now)
            for digest_ref in repo_digests:
                conn.execute("INSERT OR REPLACE INTO image_digests(ref, image_id) VALUES (?,?)",
                             (digest_ref, manifest.config.digest))
        return self.get(manifest.config.digest)

    def _check_layer_blob(self, desc: Descriptor) -> None:
        if "foreign" in desc.media_type or "nondistributable" in desc.media_type:
            raise InvalidArgument(f"layer {desc.digest}: foreign (non-distributable) layers "
                                  f"are not supported ({desc.media_type})")
        if not self.content.exists(desc.digest):
            raise NotFound(f"layer blob {desc.digest} is missing from the content store")

    def _ensure_layers(self, blobs: Sequence[str], diff_ids: Sequence[str]) -> None:
        """Unpacks each layer not unpacked yet, verifying its diff_id."""
        parent: str | None = None
        for digest, diff_id in zip(blobs, diff_ids, strict=True):
            parent = layerstore.unpack_blob(self.content, digest, parent=parent,
                                            diff_id=diff_id).chain_id

    def layer_tar_size(self, chain: str) -> int:
        layer = layerstore.get(self.layout, chain)
        if layer is None:
            raise NotFound(f"layer {chain} is not unpacked")
        return layer.tar_size

    def import_rootfs(self, source: str | os.PathLike[str] | BinaryIO, ref: str | None = None,
                      changes: Sequence[str] = (), message: str = "",
                      platform: Platform | None = None) -> Image:
        """A root filesystem tarball (plain, gzip or zstd) -> a one-layer image.

        `changes` are Dockerfile instructions (CMD, ENTRYPOINT, ENV, WORKDIR, USER, EXPOSE,
        LABEL, VOLUME, STOPSIGNAL). Bad changes or a bad reference fail before any work."""
        from engine.imagechanges import apply_changes

        tags = [str(reference.parse(ref))] if ref else []
        container_config = apply_changes({}, changes)
        platform = platform or host_platform()
        blob = self._ingest(source)
        with self.content.open(blob.digest) as f:
            compression = layerstore.detect_compression(f.read(6))
        if compression not in _LAYER_TYPES:
            self.drop_unreferenced([blob.digest])
            raise InvalidArgument(f"import: {compression} layers are not supported "
                                  "(use a plain, gzip or zstd tar)")
        try:
            with self.content.open(blob.digest) as f:
                layer = layerstore.unpack(self.layout, f, name=f"import {_source_name(source)}")
        except BaseException:
            self.drop_unreferenced([blob.digest])
            raise
        created = now_rfc3339()
        config: dict[str, Any] = {
            "created": created, "architecture": platform.architecture, "os": platform.os,
            "config": container_config,
            "rootfs": {"type": "layers", "diff_ids": [layer.diff_id]},
            "history": [{"created": created, "created_by": "shipyard image import",
                         "comment": message or f"Imported from {_source_name(source)}"}],
        }
        if platform.variant:
            config["variant"] = platform.variant
        config_blob = self.content.write(json.dumps(config, separators=(",", ":")).encode())
        manifest = {
            "schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": config_blob.digest,
                       "size": config_blob.size},
            "layers": [{"mediaType": _LAYER_TYPES[compression], "digest": blob.digest,
                        "size": blob.size}],
        }
        manifest_blob = self.content.write(json.dumps(manifest, separators=(",", ":")).encode())
        return self.commit(manifest_blob.digest, tags=tags)

    def _ingest(self, source: str | os.PathLike[str] | BinaryIO) -> Blob:
        if isinstance(source, (str, os.PathLike)):
            try:
                with open(source, "rb") as f:
                    return self.content.write_stream(f)
            except FileNotFoundError:
                raise NotFound(f"no such file: {os.fspath(source)}") from None
            except IsADirectoryError:
                raise InvalidArgument(f"{os.fspath(source)} is a directory, not a tar "
                                      "archive") from None
        return self.content.write_stream(source)

    # -- tags and removal ------------------------------------------------------------------

    def tag(self, source: str, target: str) -> str:
        """Points `target` (a name, normalised) at the image `source` resolves to."""
        image = self.resolve(source)
        ref = reference.parse(target)
        if ref.digest:
            raise InvalidArgument(f"refusing to create a tag with a digest reference: {target}")
        with self.store.tx() as conn:
            self._set_tag(conn, ref, image.id, now_rfc3339())
        return str(ref)

    def _set_tag(self, conn: Any, ref: reference.Reference, image_id: str, now: str) -> None:
        if ref.digest:
            conn.execute("INSERT OR REPLACE INTO image_digests(ref, image_id) VALUES (?,?)",
                         (f"{ref.name}@{ref.digest}", image_id))
            return
        conn.execute("INSERT OR REPLACE INTO image_tags(ref, image_id, tagged) VALUES (?,?,?)",
                     (str(ref.tagged()), image_id, now))

    def remove(self, name_or_id: str, force: bool = False) -> list[Removal]:
        """`image rm`: untags; deletes the image when no tag is left and no container uses it.

        By id, an image with several tags needs `force`. An image a container uses is never
        deleted: without `force` that is a Conflict, with it the image is only untagged."""
        found = self._lookup(name_or_id)
        if found is None:
            raise NotFound(f"No such image: {name_or_id}")
        image = self.get(found[0])
        by_ref = found[1]
        users = self.users(image.id)
        refs = list(image.repo_tags) + list(image.repo_digests)
        if by_ref is not None:
            remaining = [t for t in image.repo_tags if t != by_ref]
            if users and not remaining and not force:
                raise Conflict(f'conflict: unable to remove repository reference "{name_or_id}" '
                               f"(must force) - container {users[0][:12]} is using its "
                               f"referenced image {image.short_id}")
            untag = [by_ref] if remaining else refs
        else:
            if users and not force:
                raise Conflict(f"conflict: unable to delete {image.short_id} (must be forced) "
                               f"- image is being used by container {users[0][:12]}")
            if len(image.repo_tags) > 1 and not force:
                raise Conflict(f"conflict: unable to delete {image.short_id} (must be forced) "
                               "- image is referenced in multiple repositories")
            untag = refs
        events = self._untag(untag)
        if not [t for t in image.repo_tags if t not in untag] and not users:
            events += self._delete(image)
        return events

    def _untag(self, refs: Sequence[str]) -> list[Removal]:
        events = []
        with self.store.tx() as conn:
            for ref in refs:
                table = "image_digests" if "@" in ref else "image_tags"
                conn.execute(f"DELETE FROM {table} WHERE ref = ?", (ref,))
                events.append(Removal("Untagged", reference.parse(
                    ref, default_tag=False).familiar()))
        return events

    def _delete(self, image: Image) -> list[Removal]:
        with self.store.tx() as conn:
            conn.execute("DELETE FROM images WHERE id = ?", (image.id,))
        self.drop_unreferenced(image.blobs)
        self._drop_unused_layers(image.chain_ids)
        return [Removal("Deleted", image.id)]

    def prune(self, all: bool = False) -> tuple[list[Removal], int]:
        """Deletes dangling images (every unused image with `all`); returns the steps and
        the bytes reclaimed (unpacked layers removed)."""
        before = {layer.chain_id: layer.size for layer in layerstore.list_layers(self.layout)}
        events: list[Removal] = []
        for image in self.list():
            if self.users(image.id) or (image.repo_tags and not all):
                continue
            events += self._untag(list(image.repo_tags) + list(image.repo_digests))
            events += self._delete(image)
        after = {layer.chain_id for layer in layerstore.list_layers(self.layout)}
        return events, sum(size for chain, size in before.items() if chain not in after)

    def _referenced(self, column: str) -> set[str]:
        used: set[str] = set()
        for row in self.store.query(f"SELECT {column} FROM images"):
            used.update(loads(row[0]))
        return used

    def drop_unreferenced(self, blobs: Iterable[str]) -> None:
        """Deletes those of `blobs` that no image record lists."""
        used = self._referenced("blobs")
        for digest in blobs:
            if digest not in used:
                self.content.delete(digest)

    def _drop_unused_layers(self, chains: Iterable[str]) -> None:
        used = self._referenced("chain_ids")
        for chain in chains:
            if chain not in used:
                layerstore.remove(self.layout, chain)


def _parse_config(data: bytes, desc: Descriptor) -> dict[str, Any]:
    try:
        config = json.loads(data)
        diff_ids = config["rootfs"]["diff_ids"]
        if not isinstance(diff_ids, list):
            raise TypeError("rootfs.diff_ids is not a list")
        for diff_id in diff_ids:
            parse_digest(diff_id)
    except (ValueError, KeyError, TypeError) as error:
        raise InvalidArgument(f"image config {desc.digest} is not a valid image config "
                              f"({error})") from None
    return config


def _layer_dict(ref: LayerRef) -> dict[str, Any]:
    return {"digest": ref.digest, "media_type": ref.media_type, "size": ref.size,
            "diff_id": ref.diff_id, "tar_size": ref.tar_size}


def _source_name(source: object) -> str:
    return os.fspath(source) if isinstance(source, (str, os.PathLike)) else "-"


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


__all__ = ["MANIFEST_TYPES", "Image", "Images", "LayerRef", "Removal", "docker_container_config"]
