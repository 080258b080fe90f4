"""Making images: register a manifest that is in the content store, import a rootfs tarball.

`commit` turns a manifest (and the config and layer blobs it names, already stored) into an
image record, unpacking every layer that is not unpacked yet with its diff_id verified.
`import_rootfs` stores a root filesystem tarball as a one-layer image. Both are reached
through `engine.images.Images`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any, BinaryIO

from engine import layers as layerstore
from engine import reference
from engine.compression import detect_compression
from engine.content import Blob, parse_digest
from engine.errors import InvalidArgument, NotFound
from engine.imageformat import (
    LAYER_TYPES,
    OCI_CONFIG,
    Descriptor,
    Platform,
    host_platform,
    make_manifest,
    parse_manifest,
)
from engine.images import Image, LayerRef, now_rfc3339, set_tag
from engine.store import dumps, loads

if TYPE_CHECKING:
    from engine.images import Images

def commit(images: Images, manifest_digest: str, *, tags: Iterable[str] = (),
           repo_digests: Iterable[str] = (), extra_blobs: Iterable[str] = ()) -> Image:
    """Registers the image whose manifest (and config and layer blobs) are in the content
    store: unpacks missing layers (verifying each diff_id), records it, moves `tags`
    (names, normalised here) onto it. Idempotent."""
    manifest = parse_manifest(images.content.read(manifest_digest))
    config = _parse_config(images.content.read(manifest.config.digest), manifest.config)
    diff_ids = config["rootfs"]["diff_ids"]
    if len(diff_ids) != len(manifest.layers):
        raise InvalidArgument(
            f"image {manifest.config.digest}: the manifest lists {len(manifest.layers)} "
            f"layers but the config has {len(diff_ids)} diff_ids")
    for desc in manifest.layers:
        _check_layer_blob(images, desc)
    chains = layerstore.chain_ids(diff_ids)
    layerstore.ensure_chain(images.content, [d.digest for d in manifest.layers], diff_ids)
    unpacked = [layerstore.get(images.layout, chain) for chain in chains]
    refs = [LayerRef(desc.digest, desc.media_type, desc.size, diff_id, layer.tar_size)
            for desc, diff_id, layer in zip(manifest.layers, diff_ids, unpacked, strict=True)
            if layer is not None]
    size = sum(ref_layer.size for ref_layer in unpacked if ref_layer is not None)
    blobs = [manifest_digest, manifest.config.digest, *(r.digest for r in refs), *extra_blobs]
    now = now_rfc3339()
    with images.store.tx() as conn:
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
            set_tag(conn, reference.parse(tag), manifest.config.digest, now)
        for digest_ref in repo_digests:
            conn.execute("INSERT OR REPLACE INTO image_digests(ref, image_id) VALUES (?,?)",
                         (digest_ref, manifest.config.digest))
    return images.get(manifest.config.digest)


def import_rootfs(images: Images, source: str | os.PathLike[str] | BinaryIO,
                  ref: str | None = None, changes: Sequence[str] = (), message: str = "",
                  platform: Platform | None = None) -> Image:
    """A root filesystem tarball (plain, gzip or zstd) -> a one-layer image.

    `changes` are Dockerfile instructions (CMD, ENTRYPOINT, ENV, WORKDIR, USER, EXPOSE,
    LABEL, VOLUME, STOPSIGNAL). Bad changes or a bad reference fail before any work."""
    from engine.imagechanges import apply_changes

    tags = [str(reference.parse(ref))] if ref else []
    container_config = apply_changes({}, changes)
    platform = platform or host_platform()
    blob = _ingest(images, source)
    with images.content.open(blob.digest) as f:
        compression = detect_compression(f.read(6))
    if compression not in LAYER_TYPES:
        images.drop_unreferenced([blob.digest])
        raise InvalidArgument(f"import: {compression} layers are not supported "
                              "(use a plain, gzip or zstd tar)")
    try:
        with images.content.open(blob.digest) as f:
            layer = layerstore.unpack(images.layout, f, name=f"import {_source_name(source)}")
    except BaseException:
        images.drop_unreferenced([blob.digest])
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
    return store_image(images, config,
                       [Descriptor(LAYER_TYPES[compression], blob.digest, blob.size)], tags)


def store_image(images: Images, config: dict[str, Any], layers: Sequence[Descriptor],
                tags: Iterable[str] = ()) -> Image:
    """Writes `config` (an OCI image config) and an OCI manifest naming it and `layers`
    (blobs already in the content store), and commits the image with `tags`."""
    config_blob = images.content.write(json.dumps(config, separators=(",", ":")).encode())
    manifest = make_manifest(Descriptor(OCI_CONFIG, config_blob.digest, config_blob.size),
                             layers)
    return commit(images, images.content.write(manifest).digest, tags=tags)


def _check_layer_blob(images: Images, desc: Descriptor) -> None:
    if "foreign" in desc.media_type or "nondistributable" in desc.media_type:
        raise InvalidArgument(f"layer {desc.digest}: foreign (non-distributable) layers "
                              f"are not supported ({desc.media_type})")
    if not images.content.exists(desc.digest):
        raise NotFound(f"layer blob {desc.digest} is missing from the content store")


def _ingest(images: Images, source: str | os.PathLike[str] | BinaryIO) -> Blob:
    if isinstance(source, (str, os.PathLike)):
        try:
            with open(source, "rb") as f:
                return images.content.write_stream(f)
        except FileNotFoundError:
            raise NotFound(f"no such file: {os.fspath(source)}") from None
        except IsADirectoryError:
            raise InvalidArgument(f"{os.fspath(source)} is a directory, not a tar "
                                  "archive") from None
    return images.content.write_stream(source)


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
