"""Registry failures as `engine.errors.Error`s, and the retry rules around them.

Every message names the registry and, where it helps, what to do (`shipyard login`, try
later, `insecure_registries`). `RegistryError.transient` says whether a retry may succeed:
`retrying` retries exactly those, with exponential back-off or a 429's Retry-After.
"""

from __future__ import annotations

import ssl
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, TypeVar

import anyio

from engine.errors import Error, InvalidArgument, NotFound, Unavailable

if TYPE_CHECKING:
    import httpx

    from engine.registry import Repository

T = TypeVar("T")


class RegistryError(Error):
    """A registry refused or failed a request. `transient`: a retry may succeed."""

    transient = False


class Unauthorized(RegistryError):
    pass


class ImageNotFound(RegistryError, NotFound):
    pass


class RateLimited(RegistryError):
    transient = True

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class RegistryUnavailable(RegistryError, Unavailable):
    transient = True


class TLSFailure(RegistryError, Unavailable):
    pass


class BlobMismatch(RegistryError, InvalidArgument):
    pass


class BlobTruncated(RegistryError):
    transient = True


@contextmanager
def first_error() -> Iterator[None]:
    """Re-raises the first `Error` out of a task group's exception group, so callers (and the
    CLI) see one clear error instead of a group."""
    try:
        yield
    except BaseExceptionGroup as group:
        pending: list[BaseException] = [group]
        while pending:
            exc = pending.pop(0)
            if isinstance(exc, BaseExceptionGroup):
                pending[:0] = list(exc.exceptions)
            elif isinstance(exc, Error):
                raise exc from None
        raise


async def retrying(fn: Callable[[], Awaitable[T]], attempts: int = 3,
                   backoff: float = 0.5) -> T:
    """Runs `fn()` up to `attempts` times while it fails with a transient RegistryError,
    sleeping `backoff`, 2x, 4x... (or what a 429's Retry-After asks) between tries."""
    for tries in range(1, attempts + 1):
        try:
            return await fn()
        except RegistryError as e:
            if not e.transient or tries >= attempts:
                raise
            await anyio.sleep(retry_delay(e, backoff, tries))
    raise AssertionError("unreachable")


def retry_delay(error: RegistryError, backoff: float, tries: int) -> float:
    if isinstance(error, RateLimited) and error.retry_after is not None:
        return min(error.retry_after, 60.0)
    return backoff * (2 ** (tries - 1))


def detail(resp: httpx.Response) -> str:
    """The registry's own error text (`{"errors":[{"code","message"}]}`), if any."""
    try:
        errors = resp.json().get("errors") or []
        text = "; ".join(f"{e.get('code', '')}: {e.get('message', '')}".strip(": ")
                         for e in errors if isinstance(e, dict))
    except Exception:  # not JSON, not read, not the expected shape: no detail
        return ""
    return f": {text}" if text else ""


def status_error(repo: Repository, resp: httpx.Response, what: str,
                  who: str | None) -> RegistryError:
    """`who`: None if the request carried no authorization, "" for an anonymous token,
    else the user name whose credentials were used."""
    code = resp.status_code
    reg = repo.registry
    if code in (401, 403):
        why = f"({code}{detail(resp)})"
        if who is None:
            return Unauthorized(f"{reg} requires authentication for {repo.path} {why}; "
                                f"run `shipyard login {reg}`")
        if who == "":
            return Unauthorized(f"access to {repo.path} in {reg} was denied {why}: the "
                                "repository may not exist, or it needs a login: run "
                                f"`shipyard login {reg}`")
        return Unauthorized(f"access to {repo.path} in {reg} was denied for user {who!r} "
                            f"{why}: the repository may not exist, or that login may not "
                            f"use it (`shipyard login {reg}` to change it)")
    if code == 404:
        if "/manifests/" in resp.request.url.path:
            return ImageNotFound(f'image "{what}" not found in {reg} (404 from the registry)')
        return ImageNotFound(f"{what} not found in {reg} (404{detail(resp)} from the "
                             "registry)")
    if code == 429:
        after = resp.headers.get("Retry-After")
        seconds = float(after) if after and after.isdigit() else None
        wait = f"; retry after {int(seconds)} s" if seconds is not None else ""
        return RateLimited(f"{reg} is rate-limiting requests (429){wait}", seconds)
    if code >= 500:
        return RegistryUnavailable(f"{reg} failed with {code}{detail(resp)} while serving "
                                   f"{what}; try again later")
    return RegistryError(f"{reg} answered {code}{detail(resp)} for {resp.request.method} "
                         f"{resp.request.url.path}")


def transport_error(repo: Repository, error: httpx.TransportError,
                    what: str | None = None) -> RegistryError:
    import httpx
    name = what or (f"registry {repo.registry}" if repo.endpoint == repo.registry
                    else f"registry {repo.registry} ({repo.endpoint})")
    cause = error.__context__ or error.__cause__
    text = str(error) or type(error).__name__
    if isinstance(cause, ssl.SSLError) or "SSL" in text or "CERTIFICATE" in text.upper():
        return TLSFailure(f"TLS with {name} failed: {text}; if it serves plain HTTP or a "
                          "self-signed certificate, add it to insecure_registries")
    if isinstance(error, httpx.ConnectError):
        return RegistryUnavailable(f"{name} is unreachable: {text}")
    if isinstance(error, httpx.TimeoutException):
        return RegistryUnavailable(f"{name} timed out ({type(error).__name__})")
    if isinstance(error, httpx.RemoteProtocolError | httpx.ReadError):
        return BlobTruncated(f"{name} dropped the connection mid-transfer: {text}")
    return RegistryUnavailable(f"{name} failed: {text}")
