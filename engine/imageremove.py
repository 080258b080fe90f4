"""Removing images: `image rm` (untag, then delete what nothing uses), `image prune`, and
dropping blobs and unpacked layers that no image record lists any more.

Reached through `engine.images.Images`; each step is a `Removal` Docker's CLI would print.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from engine import layers as layerstore
from engine import reference
from engine.errors import Conflict, NotFound
from engine.images import Image, Removal
from engine.store import loads

if TYPE_CHECKING:
    from engine.images import Images


def remove(images: Images, name_or_id: str, force: bool = False) -> list[Removal]:
    """`image rm`: untags; deletes the image when no tag is left and no container uses it.

    By id, an image with several tags needs `force`. An image a container uses is never
    deleted: without `force` that is a Conflict, with it the image is only untagged."""
    found = images.lookup(name_or_id)
    if found is None:
        raise NotFound(f"No such image: {name_or_id}")
    image = images.get(found[0])
    by_ref = found[1]
    users = images.users(image.id)
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
    events = _untag(images, untag)
    if not [t for t in image.repo_tags if t not in untag] and not users:
        events += _delete(images, image)
    return events


def prune(images: Images, all: bool = False) -> tuple[list[Removal], int]:
    """Deletes dangling images (every unused image with `all`); returns the steps and
    the bytes reclaimed (unpacked layers removed)."""
    before = {layer.chain_id: layer.size for layer in layerstore.list_layers(images.layout)}
    events: list[Removal] = []
    for image in images.list():
        if images.users(image.id) or (image.repo_tags and not all):
            continue
        events += _untag(images, list(image.repo_tags) + list(image.repo_digests))
        events += _delete(images, image)
    after = {layer.chain_id for layer in layerstore.list_layers(images.layout)}
    return events, sum(size for chain, size in before.items() if chain not in after)


def drop_unreferenced(images: Images, blobs: Iterable[str]) -> None:
    """Deletes those of `blobs` that no image record lists."""
    used = _referenced(images, "blobs")
    for digest in blobs:
        if digest not in used:
            images.content.delete(digest)


def _untag(images: Images, refs: Sequence[str]) -> list[Removal]:
    events = []
    with images.store.tx() as conn:
        for ref in refs:
            table = "image_digests" if "@" in ref else "image_tags"
            conn.execute(f"DELETE FROM {table} WHERE ref = ?", (ref,))
            events.append(Removal("Untagged", reference.parse(
                ref, default_tag=False).familiar()))
    return events


def _delete(images: Images, image: Image) -> list[Removal]:
    with images.store.tx() as conn:
        conn.execute("DELETE FROM images WHERE id = ?", (image.id,))
    drop_unreferenced(images, image.blobs)
    _drop_unused_layers(images, image.chain_ids)
    return [Removal("Deleted", image.id)]


def _referenced(images: Images, column: str) -> set[str]:
    used: set[str] = set()
    for row in images.store.query(f"SELECT {column} FROM images"):
        used.update(loads(row[0]))
    return used


def _drop_unused_layers(images: Images, chains: Iterable[str]) -> None:
    used = _referenced(images, "chain_ids")
    for chain in chains:
        if chain not in used:
            layerstore.remove(images.layout, chain)
