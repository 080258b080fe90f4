"""OCI distribution client: manifests, blobs, uploads and tags over HTTP(S), with token auth.

Contracts:
- One `RegistryClient` per operation (pull, push); it owns an `httpx.AsyncClient` (pooled
  connections) and must be closed (`async with`). It is safe to use from many tasks at once.
- Plain HTTP is used only for loopback registries (127.0.0.1, localhost, ::1) and for those
  named in `insecure_registries` (host, host:port or CIDR); everything else is HTTPS with
  certificate checks.
- Auth follows the distribution token spec: a request answered 401 with a challenge makes the
  client fetch a token for the request's scope (or use Basic) and send it once more; later
  requests to that host authenticate up front.
- Every failure surfaces as a `RegistryError` (an `engine.errors.Error`) that names the
  registry and says what to do. `transient` tells callers whether a retry may help.
- `download_blob` streams into a `BlobSink` while hashing; a digest or size mismatch raises
  and the caller discards what the sink holds. Interrupted downloads resume with `Range`.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Protocol

import anyio
import httpx

from engine.content import sha256_digest
from engine.errors import InvalidArgument
from engine.registryauth import Authenticator, Credentials, CredentialStore, repository_scope
from engine.registryerrors import (  # re-exported: callers catch these from here
    BlobMismatch,
    BlobTruncated,
    ImageNotFound,
    RateLimited,
    RegistryError,
    RegistryUnavailable,
    TLSFailure,
    Unauthorized,
    first_error,
    retry_delay,
    retrying,
    status_error,
    transport_error,
)

__all__ = ["BlobMismatch", "BlobTruncated", "ImageNotFound", "RateLimited", "RegistryError",
           "RegistryUnavailable", "TLSFailure", "Unauthorized", "first_error", "retrying"]

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
MANIFEST_TYPES = (OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_LIST)
INDEX_TYPES = (OCI_INDEX, DOCKER_LIST)
# Without this Accept, distribution answers 404 for OCI manifests and schema1 for Docker ones.
MANIFEST_ACCEPT = ", ".join(MANIFEST_TYPES)
MAX_MANIFEST_BYTES = 4 * 1024 * 1024
DOCKER_HUB = "docker.io"
DOCKER_HUB_ENDPOINT = "registry-1.docker.io"
USER_AGENT = "shipyard/0.1"


# ---------------------------------------------------------------------------------------------
# Names


@dataclass(frozen=True, slots=True)
class Repository:
    """A repository in a registry: `registry` as written in references (`docker.io`,
    `127.0.0.1:5000`), `path` as the registry names it (`library/busybox`)."""

    registry: str
    path: str

    @classmethod
    def of(cls, registry: str, path: str) -> Repository:
        """Applies Docker Hub's rules: `index.docker.io` is `docker.io`; `busybox` is
        `library/busybox` there."""
        registry = registry.lower()
        if registry in ("index.docker.io", "registry-1.docker.io", "registry.hub.docker.com"):
            registry = DOCKER_HUB
        if registry == DOCKER_HUB and "/" not in path:
            path = f"library/{path}"
        return cls(registry, path)

    @property
    def endpoint(self) -> str:
        """host[:port] that serves the registry API."""
        return endpoint_host(self.registry)

    def __str__(self) -> str:
        return f"{self.registry}/{self.path}"


def endpoint_host(registry: str) -> str:
    return DOCKER_HUB_ENDPOINT if registry in (DOCKER_HUB, "index.docker.io") else registry


def _split_host(registry: str) -> str:
    if registry.startswith("["):
        return registry[1:registry.index("]")]
    if registry.count(":") == 1:
        return registry.split(":", 1)[0]
    return registry


def is_plain_http(registry: str, insecure: Iterable[str] = ()) -> bool:
    """True for loopback registries and those the user named insecure."""
    host = _split_host(registry).lower()
    if host in ("localhost", "127.0.0.1", "::1"):
        return True
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        ip = None
    for entry in insecure:
        entry = entry.strip().lower()
        if entry in (registry.lower(), host):
            return True
        if ip is not None and "/" in entry:
            try:
                if ip in ipaddress.ip_network(entry, strict=False):
                    return True
            except ValueError:
                continue
    return False


# ---------------------------------------------------------------------------------------------
# Results


@dataclass(frozen=True, slots=True)
class Manifest:
    """A manifest or index exactly as served (its digest is over these bytes)."""

    digest: str
    media_type: str
    data: bytes

    @property
    def is_index(self) -> bool:
        return self.media_type in INDEX_TYPES

    def json(self) -> dict:
        return json.loads(self.data)


@dataclass(frozen=True, slots=True)
class ManifestHead:
    """What a registry says about a manifest without sending it."""

    digest: str
    media_type: str
    size: int


class BlobSink(Protocol):
    """Where a download goes. `reset()` discards everything written so far."""

    def write(self, data: bytes, /) -> object: ...

    def reset(self) -> None: ...


def _hasher(digest: str):
    algorithm, _, hexpart = digest.partition(":")
    if algorithm not in ("sha256", "sha512") or not hexpart:
        raise InvalidArgument(f"unsupported digest {digest!r} (expected sha256:<hex>)")
    return hashlib.new(algorithm)


# ---------------------------------------------------------------------------------------------
# The client


class RegistryClient:
    def __init__(self, *, credentials: CredentialStore | None = None,
                 insecure_registries: Iterable[str] = (), timeout: float = 60.0,
                 max_connections: int = 16, transport: httpx.AsyncBaseTransport | None = None
                 ) -> None:
        self.credentials = credentials
        self.insecure = tuple(insecure_registries)
        self._http = httpx.AsyncClient(
            follow_redirects=True, transport=transport,
            timeout=httpx.Timeout(timeout, connect=min(timeout, 15.0)),
            limits=httpx.Limits(max_connections=max_connections),
            headers={"User-Agent": USER_AGENT})
        self.auth = Authenticator(self._http, credentials)

    async def __aenter__(self) -> RegistryClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    def root_url(self, registry: str) -> str:
        """`https://registry-1.docker.io/v2/` etc.: the API root of a registry."""
        scheme = "http" if is_plain_http(registry, self.insecure) else "https"
        return f"{scheme}://{endpoint_host(registry)}/v2/"

    def base_url(self, repo: Repository) -> str:
        return f"{self.root_url(repo.registry)}{repo.path}"

    async def check_login(self, registry: str, creds: Credentials) -> None:
        """Checks `creds` against `registry` as `docker login` does (see Authenticator)."""
        registry = Repository.of(registry, "_/_").registry
        await self.auth.check_login(Repository(registry, ""), self.root_url(registry), creds)

    # --- manifests ----------------------------------------------------------------------

    async def get_manifest(self, repo: Repository, reference: str, *,
                           what: str | None = None) -> Manifest:
        """GET a manifest or index by tag or digest. `what` names the image in errors."""
        url = f"{self.base_url(repo)}/manifests/{reference}"
        async with self._stream("GET", repo, url, headers={"Accept": MANIFEST_ACCEPT},
                                what=what or f"{repo}:{reference}") as resp:
            size = int(resp.headers.get("Content-Length") or 0)
            if size > MAX_MANIFEST_BYTES:
                raise RegistryError(f"{repo.registry} sent a {size}-byte manifest for "
                                    f"{what or repo}; refusing more than {MAX_MANIFEST_BYTES}")
            body = bytearray()
            async for chunk in self._guard(repo, resp.aiter_bytes()):
                body += chunk
                if len(body) > MAX_MANIFEST_BYTES:
                    raise RegistryError(f"{repo.registry} sent an oversized manifest")
            media_type = resp.headers.get("Content-Type", "").split(";")[0].strip()
        data = bytes(body)
        digest = sha256_digest(data)
        if reference.startswith("sha256:") and digest != reference:
            raise BlobMismatch(f"{repo.registry} served manifest {reference} of {repo.path} "
                               f"with content that hashes to {digest}")
        try:
            parsed = json.loads(data)
        except ValueError:
            raise RegistryError(f"{repo.registry} sent a manifest for {what or repo} that is "
                                "not JSON") from None
        if media_type not in MANIFEST_TYPES:
            media_type = parsed.get("mediaType") or (
                OCI_INDEX if "manifests" in parsed else OCI_MANIFEST)
        if media_type not in MANIFEST_TYPES:
            raise RegistryError(f"{what or repo} in {repo.registry} has a manifest of type "
                                f"{media_type!r}, which is not supported (expected one of "
                                f"{', '.join(MANIFEST_TYPES)})")
        return Manifest(digest, media_type, data)

    async def head_manifest(self, repo: Repository, reference: str) -> ManifestHead | None:
        """HEAD a manifest: its digest, type and size, or None if absent."""
        url = f"{self.base_url(repo)}/manifests/{reference}"
        resp = await self._send("HEAD", repo, url, headers={"Accept": MANIFEST_ACCEPT},
                                ok=(200, 404))
        if resp.status_code == 404:
            return None
        return ManifestHead(resp.headers.get("Docker-Content-Digest", ""),
                            resp.headers.get("Content-Type", "").split(";")[0],
                            int(resp.headers.get("Content-Length") or 0))

    async def put_manifest(self, repo: Repository, reference: str, data: bytes,
                           media_type: str) -> str:
        """PUT a manifest under a tag or its digest; returns the digest."""
        url = f"{self.base_url(repo)}/manifests/{reference}"
        resp = await self._send("PUT", repo, url, actions="pull,push", content=data,
                                headers={"Content-Type": media_type}, ok=(200, 201, 202))
        return resp.headers.get("Docker-Content-Digest") or sha256_digest(data)

    async def list_tags(self, repo: Repository) -> list[str]:
        """All tags, following `Link: <...>; rel="next"` pagination."""
        url: str | None = f"{self.base_url(repo)}/tags/list"
        tags: list[str] = []
        while url:
            resp = await self._send("GET", repo, url, what=str(repo))
            tags.extend(resp.json().get("tags") or [])
            nxt = resp.links.get("next", {}).get("url")
            url = str(httpx.URL(url).join(nxt)) if nxt else None
        return tags

    # --- blobs --------------------------------------------------------------------------

    async def blob_size(self, repo: Repository, digest: str) -> int | None:
        """HEAD a blob: its size, or None when the repository does not have it."""
        resp = await self._send("HEAD", repo, f"{self.base_url(repo)}/blobs/{digest}",
                                ok=(200, 404))
        if resp.status_code == 404:
            return None
        return int(resp.headers.get("Content-Length") or 0)

    async def download_blob(self, repo: Repository, digest: str, size: int | None,
                            sink: BlobSink, *, on_bytes: Callable[[int], None] | None = None,
                            attempts: int = 3, backoff: float = 0.5) -> int:
        """Streams a blob into `sink`, verifying size and digest; returns its size.

        A dropped connection resumes with a Range request (up to `attempts` tries); a server
        that ignores Range restarts from zero after `sink.reset()`."""
        hasher = _hasher(digest)
        done = 0
        tries = 0
        url = f"{self.base_url(repo)}/blobs/{digest}"
        while True:
            tries += 1
            headers = {"Accept-Encoding": "identity"}
            if done:
                headers["Range"] = f"bytes={done}-"
            try:
                async with self._stream("GET", repo, url, headers=headers,
                                        ok=(200, 206), what=f"blob {digest} of {repo}") as resp:
                    if done and resp.status_code != 206:
                        hasher, done = _hasher(digest), 0
                        sink.reset()
                    async for chunk in self._guard(repo, resp.aiter_raw()):
                        done += len(chunk)
                        if size is not None and done > size:
                            raise BlobMismatch(
                                f"{repo.registry} sent more than the {size} bytes declared for "
                                f"blob {digest} of {repo.path}")
                        hasher.update(chunk)
                        sink.write(chunk)
                        if on_bytes:
                            on_bytes(done)
                if size is not None and done < size:
                    raise BlobTruncated(f"{repo.registry} ended blob {digest} of {repo.path} "
                                        f"after {done} of {size} bytes")
            except RegistryError as e:
                if not e.transient or tries >= attempts:
                    raise
                await anyio.sleep(retry_delay(e, backoff, tries))
                continue
            break
        actual = f"{digest.partition(':')[0]}:{hasher.hexdigest()}"
        if actual != digest:
            raise BlobMismatch(f"{repo.registry} served blob {digest} of {repo.path} with "
                               f"content that hashes to {actual}; nothing was stored")
        return done

    async def mount_blob(self, repo: Repository, digest: str, source: Repository) -> str | None:
        """Cross-repository mount. Returns None when mounted, else an upload URL to use."""
        url = f"{self.base_url(repo)}/blobs/uploads/"
        resp = await self._send("POST", repo, url, actions="pull,push",
                                extra_scope=repository_scope(source.path, "pull"),
                                params={"mount": digest, "from": source.path},
                                headers={"Content-Length": "0"}, ok=(201, 202))
        if resp.status_code == 201:
            return None
        return self._location(resp)

    async def start_upload(self, repo: Repository) -> str:
        resp = await self._send("POST", repo, f"{self.base_url(repo)}/blobs/uploads/",
                                actions="pull,push", headers={"Content-Length": "0"},
                                ok=(202,))
        return self._location(resp)

    async def upload_blob(self, repo: Repository, digest: str, size: int,
                          read: Callable[[], AsyncIterator[bytes]], *, location: str | None = None,
                          chunk_size: int | None = None) -> None:
        """Uploads a blob: one PUT (monolithic), or PATCHes of `chunk_size` then a PUT.

        `read()` yields the blob's bytes from the start each time it is called."""
        location = location or await self.start_upload(repo)
        if chunk_size:
            offset = 0
            async for piece in _rechunk(read(), chunk_size):
                end = offset + len(piece) - 1
                resp = await self._send(
                    "PATCH", repo, location, actions="pull,push", content=piece,
                    headers={"Content-Type": "application/octet-stream",
                             "Content-Range": f"{offset}-{end}",
                             "Content-Length": str(len(piece))}, ok=(202,))
                location = self._location(resp)
                offset = end + 1
            await self._send("PUT", repo, location, actions="pull,push",
                             params={"digest": digest}, headers={"Content-Length": "0"},
                             ok=(201,))
            return
        await self._send("PUT", repo, location, actions="pull,push", params={"digest": digest},
                         content=read,
                         headers={"Content-Type": "application/octet-stream",
                                  "Content-Length": str(size)}, ok=(201,))

    def _location(self, resp: httpx.Response) -> str:
        loc = resp.headers.get("Location")
        if not loc:
            raise RegistryError(f"{resp.request.url.host} answered an upload without Location")
        return str(resp.request.url.join(loc))

    # --- transport ----------------------------------------------------------------------

    @asynccontextmanager
    async def _stream(self, method: str, repo: Repository, url: str, *,
                      headers: Mapping[str, str] | None = None, ok: tuple[int, ...] = (200,),
                      what: str | None = None) -> AsyncIterator[httpx.Response]:
        resp = await self._send(method, repo, url, headers=headers, ok=ok, what=what,
                                stream=True)
        try:
            yield resp
        finally:
            await resp.aclose()

    async def _guard(self, repo: Repository, chunks: AsyncIterator[bytes]
                     ) -> AsyncIterator[bytes]:
        """Translates transport errors raised mid-body into RegistryErrors."""
        try:
            async for chunk in chunks:
                yield chunk
        except httpx.TransportError as e:
            raise transport_error(repo, e) from None

    async def _send(self, method: str, repo: Repository, url: str, *, actions: str = "pull",
                    extra_scope: str | None = None, headers: Mapping[str, str] | None = None,
                    params: Mapping[str, str] | None = None,
                    content: bytes | Callable[[], AsyncIterator[bytes]] | None = None,
                    ok: tuple[int, ...] = (200,), what: str | None = None,
                    stream: bool = False) -> httpx.Response:
        scope = repository_scope(repo.path, actions)
        if extra_scope:
            scope = f"{scope} {extra_scope}"
        for attempt in (1, 2):
            hdrs = dict(headers or {})
            auth = await self.auth.header(repo, scope)
            if auth:
                hdrs["Authorization"] = auth
            body = content() if callable(content) else content
            # Merge, not replace: upload Locations carry state in their query string.
            target = httpx.URL(url).copy_merge_params(params) if params else url
            request = self._http.build_request(method, target, headers=hdrs, content=body)
            try:
                resp = await self._http.send(request, stream=True)
            except httpx.TransportError as e:
                raise transport_error(repo, e) from None
            if resp.status_code == 401 and attempt == 1:
                await resp.aclose()
                if self.auth.learn(repo, resp.headers.get_list("WWW-Authenticate"), scope):
                    continue
            if resp.status_code not in ok:
                try:
                    await resp.aread()
                except httpx.TransportError:
                    pass
                await resp.aclose()
                raise status_error(repo, resp, what or str(repo), self.auth.who(repo, auth))
            if not stream:
                try:
                    await resp.aread()
                except httpx.TransportError as e:
                    raise transport_error(repo, e) from None
                finally:
                    await resp.aclose()
            return resp
        raise AssertionError("unreachable")


# ---------------------------------------------------------------------------------------------
# Helpers


async def _rechunk(chunks: AsyncIterator[bytes], size: int) -> AsyncIterator[bytes]:
    buf = bytearray()
    async for chunk in chunks:
        buf += chunk
        while len(buf) >= size:
            yield bytes(buf[:size])
            del buf[:size]
    if buf:
        yield bytes(buf)


