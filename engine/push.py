"""Push an image from the content store to a registry.

Flow: the image manifest (or an index whose manifests are all in the store) -> for each
layer and the config: skip it if the target repository has it (HEAD), else mount it from
another repository of the same registry that is known to hold it, else upload it (one PUT,
or PATCH chunks then PUT) exactly as stored -> PUT the manifest(s) with their media types,
children before the index, the tag last. Progress uses Docker's push statuses.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass

import anyio

from engine.content import ContentStore
from engine.errors import InvalidArgument, NotFound
from engine.imageformat import Descriptor, parse_descriptor
from engine.images import Images
from engine.pull import PullEvent, parse_target, short_id
from engine.registry import INDEX_TYPES, RegistryClient, Repository, first_error, retrying

PREPARING = "Preparing"
WAITING = "Waiting"
PUSHING = "Pushing"
PUSHED = "Pushed"
LAYER_EXISTS = "Layer already exists"
MOUNTED = "Mounted from"
READ_CHUNK = 1024 * 1024
MAX_MOUNT_TRIES = 3

Progress = Callable[[PullEvent], None]


@dataclass(frozen=True, slots=True)
class PushedImage:
    """What a push did."""

    reference: str
    digest: str                 # of what the tag now points at
    uploaded: int               # bytes sent
    mounted: int                # blobs mounted from other repositories
    skipped: int                # blobs the repository already had


@dataclass
class _Tally:
    """Counts of a push in progress."""

    uploaded: int = 0
    mounted: int = 0
    skipped: int = 0


def _read_manifest(content: ContentStore, digest: str) -> dict:
    try:
        return json.loads(content.read(digest))
    except NotFound:
        raise NotFound(f"manifest {digest} is not in the image store; pull the image first"
                       ) from None


def _media_type(body: dict, fallback: str) -> str:
    return body.get("mediaType") or fallback


async def push_blob(client: RegistryClient, content: ContentStore, repo: Repository,
                    desc: Descriptor, *, mount_from: Sequence[Repository] = (),
                    chunk_size: int | None = None, progress: Progress | None = None,
                    tally: _Tally | None = None) -> str:
    """Makes `repo` hold `desc`: "exists", "mounted" or "uploaded"."""
    emit = progress or (lambda _e: None)
    tally = tally or _Tally()
    if not content.exists(desc.digest):
        raise NotFound(f"blob {desc.digest} is not in the image store; pull the image again")
    if await client.blob_size(repo, desc.digest) is not None:
        emit(PullEvent(short_id(desc.digest), LAYER_EXISTS, desc.size, desc.size))
        tally.skipped += 1
        return "exists"
    location = None
    for source in [r for r in mount_from if r.registry == repo.registry
                   and r.path != repo.path][:MAX_MOUNT_TRIES]:
        location = await client.mount_blob(repo, desc.digest, source)
        if location is None:
            emit(PullEvent(short_id(desc.digest), f"{MOUNTED} {source.path}", desc.size, desc.size))
            tally.mounted += 1
            return "mounted"
        # 202: the registry could not mount and opened an upload session instead: use it.
        break
    sent = [0]

    async def read() -> AsyncIterator[bytes]:
        sent[0] = 0
        with content.open(desc.digest) as f:
            while chunk := f.read(READ_CHUNK):
                sent[0] += len(chunk)
                emit(PullEvent(short_id(desc.digest), PUSHING, sent[0], desc.size))
                yield chunk

    await client.upload_blob(repo, desc.digest, desc.size, read, location=location,
                             chunk_size=chunk_size)
    emit(PullEvent(short_id(desc.digest), PUSHED, desc.size, desc.size))
    tally.uploaded += desc.size
    return "uploaded"


async def _push_manifest_blobs(client: RegistryClient, content: ContentStore,
                               repo: Repository, body: dict, limit: int,
                               mount_from: Sequence[Repository], chunk_size: int | None,
                               progress: Progress | None, tally: _Tally) -> None:
    if "config" not in body:
        raise InvalidArgument("not an image manifest: it has no config")
    blobs = [parse_descriptor(d, "manifest layer") for d in body.get("layers") or []]
    blobs.append(parse_descriptor(body["config"], "manifest config"))
    if progress:
        for d in blobs[:-1]:
            progress(PullEvent(short_id(d.digest), PREPARING))
    limiter = anyio.CapacityLimiter(max(1, limit))

    async def one(desc: Descriptor) -> None:
        if progress and desc is not blobs[-1]:
            progress(PullEvent(short_id(desc.digest), WAITING))
        async with limiter:
            await retrying(lambda: push_blob(
                client, content, repo, desc, mount_from=mount_from, chunk_size=chunk_size,
                progress=progress if desc is not blobs[-1] else None, tally=tally))

    with first_error():
        async with anyio.create_task_group() as tg:
            for desc in blobs:
                tg.start_soon(one, desc)


async def push_image(ref: str, digest: str, content: ContentStore, client: RegistryClient, *,
                     media_type: str | None = None, mount_from: Sequence[Repository] = (),
                     limit: int = 3, chunk_size: int | None = None,
                     progress: Progress | None = None) -> PushedImage:
    """Pushes the manifest (or index) `digest` from `content` and tags it as `ref`.

    An index is pushed with every child manifest; all of them must be in the store."""
    target = parse_target(ref)
    if target.digest and target.digest != digest:
        raise InvalidArgument(f'cannot push {digest} as "{ref}": the reference pins another '
                              "digest")
    repo = target.repository
    tag = target.tag or digest
    body = _read_manifest(content, digest)
    kind = media_type or _media_type(body, "")
    tally = _Tally()
    if kind in INDEX_TYPES or "manifests" in body:
        for entry in body.get("manifests") or []:
            child = parse_descriptor(entry, "index entry")
            child_body = _read_manifest(content, child.digest)
            await _push_manifest_blobs(client, content, repo, child_body, limit, mount_from,
                                       chunk_size, progress, tally)
            await client.put_manifest(repo, child.digest, content.read(child.digest),
                                      _media_type(child_body, child.media_type))
        kind = kind or _media_type(body, "application/vnd.oci.image.index.v1+json")
    else:
        await _push_manifest_blobs(client, content, repo, body, limit, mount_from, chunk_size,
                                   progress, tally)
        kind = kind or "application/vnd.oci.image.manifest.v1+json"
    pushed = await client.put_manifest(repo, tag, content.read(digest), kind)
    if progress:
        progress(PullEvent(tag, f"{tag}: digest: {pushed} size: {content.size(digest)}"))
    return PushedImage(target.canonical, pushed, tally.uploaded, tally.mounted, tally.skipped)


async def push_tagged(ref: str, images: Images, client: RegistryClient, **kwargs
                      ) -> PushedImage:
    """`docker push` semantics: pushes the local image named `ref` under that name. Blobs
    are mounted from the other repositories of the same registry the image came from or was
    pushed to (its tags and repo digests)."""
    target = parse_target(ref)
    image = images.resolve(target.canonical)
    sources: list[Repository] = []
    for name in (*image.repo_digests, *image.repo_tags):
        other = parse_target(name)
        repo = other.repository
        if repo.registry == target.repository.registry and repo != target.repository \
                and repo not in sources:
            sources.append(repo)
    return await push_image(ref, image.manifest_digest, images.content, client,
                            media_type=image.manifest_media_type,
                            mount_from=kwargs.pop("mount_from", sources), **kwargs)
