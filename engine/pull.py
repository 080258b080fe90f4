"""Pull an image from a registry into the image store.

Flow: reference -> manifest or index -> (index) the entry for the wanted platform
(`engine.imageformat.choose_manifest`) -> config and layer blobs, downloaded in parallel under
a `CapacityLimiter`, skipping blobs the store already has, each verified against its digest
before it lands in `blobs/` (the content store never shows a partial blob). Layers unpack
(`engine.layers`) in order while later ones still download. Manifests go into the store last,
so a manifest there promises its blobs are too. Progress goes to a callback with Docker's
statuses, keyed by the layer's short id.

`fetch_image` does the transfer into a `ContentStore`; `pull_image` then registers the image
(`engine.images.Images.commit`) with its tag and repo digest.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from dataclasses import dataclass

import anyio

from engine import layers as layers_mod
from engine import reference
from engine.content import ContentStore
from engine.errors import InvalidArgument, NotFound
from engine.imageformat import (
    Descriptor,
    Platform,
    choose_manifest,
    host_platform,
    parse_index,
    parse_manifest,
)
from engine.images import Image, Images
from engine.reference import Reference
from engine.registry import (
    Manifest,
    RegistryClient,
    Repository,
    first_error,
    retrying,
)

WAITING = "Waiting"
DOWNLOADING = "Downloading"
VERIFYING = "Verifying"
DOWNLOAD_COMPLETE = "Download complete"
EXTRACTING = "Extracting"
ALREADY_EXISTS = "Already exists"
PULL_COMPLETE = "Pull complete"
PROGRESS_STEP = 512 * 1024  # bytes between Downloading events, so callbacks stay cheap


@dataclass(frozen=True, slots=True)
class PullEvent:
    """One progress event: `id` is a layer's 12-hex short id (or the reference for
    image-wide messages), `status` one of the constants above, bytes done / total."""

    id: str
    status: str
    current: int = 0
    total: int = 0


Progress = Callable[[PullEvent], None]


# ---------------------------------------------------------------------------------------------
# References


@dataclass(frozen=True, slots=True)
class Target:
    """A parsed reference and the repository it lives in."""

    ref: Reference
    repository: Repository

    @property
    def tag(self) -> str | None:
        return self.ref.tag

    @property
    def digest(self) -> str | None:
        return self.ref.digest

    @property
    def reference(self) -> str:
        """What the registry is asked for: the digest if given, else the tag."""
        return self.ref.digest or self.ref.tag or "latest"

    @property
    def canonical(self) -> str:
        return str(self.ref)

    @property
    def familiar(self) -> str:
        return self.ref.familiar()


def parse_target(text: str) -> Target:
    """`busybox` -> docker.io/library/busybox:latest in repository docker.io/library/busybox."""
    ref = reference.parse(text)
    return Target(ref, Repository.of(ref.domain, ref.path))


# ---------------------------------------------------------------------------------------------
# Pulling


def short_id(digest: str) -> str:
    """The 12 hex digits Docker shows for a layer."""
    return digest.partition(":")[2][:12]


@dataclass(frozen=True, slots=True)
class PulledImage:
    """An image now complete in the content store."""

    reference: str                 # canonical, e.g. docker.io/library/busybox:latest
    repository: Repository
    digest: str                    # what the reference resolved to (index or manifest)
    manifest: Descriptor           # the platform's image manifest
    config: Descriptor
    layers: tuple[Descriptor, ...]
    platform: Platform
    index: Descriptor | None = None
    downloaded: int = 0            # bytes fetched (0 when everything was present)
    tag: Reference | None = None   # the tag pulled (None when pulled by digest)
    chain_ids: tuple[str, ...] = ()  # unpacked layers, bottom to top (empty: not unpacked)

    @property
    def repo_digest(self) -> str:
        """`docker.io/library/busybox@sha256:...`: how the registry names what was pulled."""
        return f"{self.repository}@{self.digest}"


class _IngestSink:
    """Adapts a content-store ingest to `BlobSink` (which may need to restart)."""

    def __init__(self, content: ContentStore, desc: Descriptor) -> None:
        self._content, self._desc = content, desc
        self._ingest = content.ingest(desc.digest, desc.size)

    def write(self, data: bytes) -> None:
        self._ingest.write(data)

    def reset(self) -> None:
        self._ingest.abort()
        self._ingest = self._content.ingest(self._desc.digest, self._desc.size)

    def commit(self) -> None:
        self._ingest.commit()

    def abort(self) -> None:
        self._ingest.abort()


def _diff_ids(content: ContentStore, config: Descriptor, count: int, what: str) -> list[str]:
    try:
        diff_ids = json.loads(content.read(config.digest))["rootfs"]["diff_ids"]
    except (ValueError, KeyError, TypeError):
        raise InvalidArgument(f'image "{what}": its config has no rootfs.diff_ids') from None
    if not isinstance(diff_ids, list):
        raise InvalidArgument(f'image "{what}": rootfs.diff_ids in its config is not a list')
    if len(diff_ids) != count:
        raise InvalidArgument(f'image "{what}": its config lists {len(diff_ids)} diff_ids for '
                              f"{count} layers")
    return diff_ids


def _store_manifest(content: ContentStore, manifest: Manifest) -> None:
    if not content.exists(manifest.digest):
        content.write(manifest.data, expected=manifest.digest)


async def fetch_blob(client: RegistryClient, content: ContentStore, repo: Repository,
                     desc: Descriptor, *, limiter: anyio.CapacityLimiter | None = None,
                     progress: Progress | None = None, attempts: int = 3,
                     backoff: float = 0.5) -> int:
    """Brings one blob into the store unless present; returns the bytes downloaded."""
    emit = progress or (lambda _e: None)
    if content.exists(desc.digest):
        emit(PullEvent(short_id(desc.digest), ALREADY_EXISTS, desc.size, desc.size))
        return 0
    emit(PullEvent(short_id(desc.digest), WAITING, 0, desc.size))
    last = [0]

    def on_bytes(done: int) -> None:
        if done - last[0] >= PROGRESS_STEP or done == desc.size:
            last[0] = done
            emit(PullEvent(short_id(desc.digest), DOWNLOADING, done, desc.size))

    async def attempt() -> int:
        sink = _IngestSink(content, desc)
        try:
            n = await client.download_blob(repo, desc.digest, desc.size, sink,
                                           on_bytes=on_bytes, attempts=attempts,
                                           backoff=backoff)
            emit(PullEvent(short_id(desc.digest), VERIFYING, n, desc.size))
            sink.commit()
            return n
        except BaseException:
            sink.abort()
            raise

    if limiter is None:
        n = await attempt()
    else:
        async with limiter:
            n = await attempt()
    emit(PullEvent(short_id(desc.digest), DOWNLOAD_COMPLETE, n, desc.size))
    return n


async def fetch_image(ref: str, content: ContentStore, client: RegistryClient, *,
                      platform: Platform | None = None, progress: Progress | None = None,
                      limit: int = 3, attempts: int = 3, backoff: float = 0.5,
                      unpack: bool = True) -> PulledImage:
    """Brings `ref` for `platform` (default: this host's) into `content`; with `unpack`, also
    unpacks its layers (engine.layers) as they arrive.

    Raises RegistryError subclasses (not found, unauthorised, unreachable, rate limited,
    digest mismatch), NotFound when no manifest matches the platform, InvalidArgument for a
    malformed image. A failure leaves only complete, verified blobs behind, and no manifest."""
    target = parse_target(ref)
    repo = target.repository
    want = platform or host_platform()
    what = target.familiar
    top = await retrying(lambda: client.get_manifest(repo, target.reference, what=what),
                          attempts, backoff)
    index: Descriptor | None = None
    manifest = top
    got: Platform | None = None
    if top.is_index:
        index = Descriptor(top.media_type, top.digest, len(top.data))
        try:
            chosen = choose_manifest(parse_index(top.data), want)
        except NotFound as e:
            raise NotFound(f'image "{what}": {e}') from None
        manifest = await retrying(
            lambda: client.get_manifest(repo, chosen.digest, what=what), attempts, backoff)
        got = chosen.platform
    if manifest.is_index:
        raise InvalidArgument(f'image "{what}": index {manifest.digest} nests another index')
    parsed = parse_manifest(manifest.data)
    config, layers = parsed.config, parsed.layers
    limiter = anyio.CapacityLimiter(max(1, limit))
    total = [0]
    ready = {d.digest: anyio.Event() for d in (config, *layers)}
    chains: list[str] = []

    async def one(desc: Descriptor, show: bool = True) -> None:
        # Docker shows layers only; the config is fetched quietly.
        n = await fetch_blob(client, content, repo, desc, limiter=limiter,
                             progress=progress if show else None, attempts=attempts,
                             backoff=backoff)
        total[0] += n  # after the await: `+=` across it would lose concurrent updates
        ready[desc.digest].set()

    async def unpack_all() -> None:
        # Layers unpack in order (each needs its parent) while later ones still download.
        await ready[config.digest].wait()
        diff_ids = _diff_ids(content, config, len(layers), what)
        parent: str | None = None
        for desc, diff_id in zip(layers, diff_ids, strict=True):
            await ready[desc.digest].wait()
            if progress:
                progress(PullEvent(short_id(desc.digest), EXTRACTING, 0, desc.size))
            done = await anyio.to_thread.run_sync(functools.partial(
                layers_mod.unpack_blob, content, desc.digest, parent=parent, diff_id=diff_id))
            parent = done.chain_id
            chains.append(parent)
            if progress:
                progress(PullEvent(short_id(desc.digest), PULL_COMPLETE, desc.size, desc.size))

    with first_error():
        async with anyio.create_task_group() as tg:
            for desc in {d.digest: d for d in (config, *layers)}.values():
                tg.start_soon(one, desc, desc is not config)
            if unpack:
                tg.start_soon(unpack_all)
    if got is None:
        # Without an index, the image's platform is what its config says.
        cfg = json.loads(content.read(config.digest))
        got = Platform(cfg.get("os", ""), cfg.get("architecture", ""), cfg.get("variant", ""))
    # Manifests last: a manifest in the store promises that its blobs are there too.
    _store_manifest(content, manifest)
    _store_manifest(content, top)
    if progress and not unpack:
        for layer in layers:
            progress(PullEvent(short_id(layer.digest), PULL_COMPLETE, layer.size, layer.size))
    return PulledImage(
        reference=target.canonical, repository=repo, digest=top.digest,
        manifest=Descriptor(manifest.media_type, manifest.digest, len(manifest.data)),
        config=config, layers=layers, platform=got, index=index, downloaded=total[0],
        tag=target.ref.tagged() if target.tag else None, chain_ids=tuple(chains))


async def pull_image(ref: str, images: Images, client: RegistryClient, **kwargs) -> Image:
    """`fetch_image` into the image store, then registers the image: tagged as `ref` (unless
    pulled by digest) with its repo digest. Returns the image record."""
    pulled = await fetch_image(ref, images.content, client, **kwargs)
    extra = (pulled.index.digest,) if pulled.index else ()
    return images.commit(pulled.manifest.digest,
                         tags=(str(pulled.tag),) if pulled.tag else (),
                         repo_digests=(pulled.repo_digest,), extra_blobs=extra)


def pull(ref: str, images: Images, client_factory: Callable[[], RegistryClient],
         **kwargs) -> Image:
    """Synchronous wrapper: runs `pull_image` in its own event loop with a fresh client."""

    async def main() -> Image:
        async with client_factory() as client:
            return await pull_image(ref, images, client, **kwargs)

    return anyio.run(main)
