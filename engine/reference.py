"""Image references, normalised as Docker does.

`mysql:5.7` is `docker.io/library/mysql:5.7`; `localhost:5000/x` keeps its registry;
`ghcr.io/a/b@sha256:...` pins a digest. A name without tag or digest gets `latest` (when
asked). `Reference.familiar()` gives the short form Docker displays (`mysql:5.7`).

Grammar (from the distribution reference specification):
    reference  := name [":" tag] ["@" digest]
    name       := [domain "/"] path-component ["/" path-component]*
    domain     := host [":" port]      (a dot, a port or "localhost" marks the first part)
    path-component := [a-z0-9]+ ((\\.|_|__|-+) [a-z0-9]+)*
    tag        := [\\w][\\w.-]{0,127}
    digest     := algorithm ":" hex    (algorithm [A-Za-z][A-Za-z0-9]*([+._-]...)*)
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from engine.errors import InvalidArgument

DEFAULT_DOMAIN = "docker.io"
LEGACY_DOMAINS = ("index.docker.io", "registry-1.docker.io")
OFFICIAL_PREFIX = "library/"
DEFAULT_TAG = "latest"
NAME_MAX = 255

_COMPONENT = r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*"
_PATH = re.compile(rf"{_COMPONENT}(?:/{_COMPONENT})*")
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_HOST = rf"(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|\[[0-9a-fA-F:.]+\])"
_DOMAIN = re.compile(rf"{_HOST}(?::[0-9]+)?")
_TAG = re.compile(r"[\w][\w.-]{0,127}")
_DIGEST = re.compile(r"([A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*):([0-9a-fA-F]{32,})")
_DIGEST_HEX_LEN = {"sha256": 64, "sha384": 96, "sha512": 128}
_ID = re.compile(r"[a-f0-9]{64}")


@dataclass(frozen=True, slots=True)
class Reference:
    """A fully normalised reference. `tag` and `digest` may both be set, or neither."""

    domain: str
    path: str
    tag: str | None = None
    digest: str | None = None

    @property
    def name(self) -> str:
        """`docker.io/library/mysql`: the repository, without tag or digest."""
        return f"{self.domain}/{self.path}"

    def __str__(self) -> str:
        return self.name + (f":{self.tag}" if self.tag else "") + (
            f"@{self.digest}" if self.digest else "")

    def familiar_name(self) -> str:
        """`mysql`, `someone/app`, `ghcr.io/a/b`: the repository as Docker displays it."""
        if self.domain != DEFAULT_DOMAIN:
            return self.name
        rest = self.path[len(OFFICIAL_PREFIX):]
        if self.path.startswith(OFFICIAL_PREFIX) and "/" not in rest:
            return rest
        return self.path

    def familiar(self) -> str:
        """`mysql:5.7`: the whole reference as Docker displays it."""
        return self.familiar_name() + (f":{self.tag}" if self.tag else "") + (
            f"@{self.digest}" if self.digest else "")

    def with_tag(self, tag: str) -> Reference:
        _check_tag(tag, tag)
        return Reference(self.domain, self.path, tag, None)

    def with_digest(self, digest: str) -> Reference:
        _check_digest(digest, digest)
        return Reference(self.domain, self.path, None, digest)

    def tagged(self) -> Reference:
        """This reference, with the default tag if it has neither tag nor digest."""
        if self.tag or self.digest:
            return self
        return Reference(self.domain, self.path, DEFAULT_TAG, None)


def parse(text: str, *, default_tag: bool = True) -> Reference:
    """Parses and normalises `text`; `default_tag` adds `latest` when no tag/digest is given.

    Raises InvalidArgument with a message naming what is wrong."""
    if not isinstance(text, str) or not text:
        raise InvalidArgument("invalid reference format: empty image reference")
    if text != text.strip() or any(c.isspace() for c in text):
        raise InvalidArgument(f"invalid reference format: {text!r} contains whitespace")
    if _ID.fullmatch(text):
        raise InvalidArgument(f"invalid repository name ({text}), cannot specify 64-byte "
                              "hexadecimal strings")
    rest, digest = text, None
    if "@" in rest:
        rest, digest = rest.split("@", 1)
        _check_digest(digest, text)
    tag = None
    # A colon after the last slash separates the tag; one before it is a registry port.
    colon = rest.rfind(":")
    if colon > rest.rfind("/"):
        rest, tag = rest[:colon], rest[colon + 1:]
        _check_tag(tag, text)
    domain, path = split_domain(rest, text)
    if len(domain) + 1 + len(path) > NAME_MAX:
        raise InvalidArgument(f"invalid reference format: repository name {text!r} is longer "
                              f"than {NAME_MAX} characters")
    ref = Reference(domain, path, tag, digest)
    return ref.tagged() if default_tag else ref


def split_domain(name: str, text: str | None = None) -> tuple[str, str]:
    """`mysql` -> (docker.io, library/mysql); `localhost:5000/x` -> (localhost:5000, x)."""
    text = name if text is None else text
    first, sep, remainder = name.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost" or first != first.lower()):
        domain, path = first, remainder
        if not _DOMAIN.fullmatch(domain):
            raise InvalidArgument(f"invalid reference format: {domain!r} in {text!r} is not a "
                                  "valid registry host[:port]")
    else:
        domain, path = DEFAULT_DOMAIN, name
    if domain in LEGACY_DOMAINS:
        domain = DEFAULT_DOMAIN
    if domain == DEFAULT_DOMAIN and "/" not in path:
        path = OFFICIAL_PREFIX + path
    if not path:
        raise InvalidArgument(f"invalid reference format: {text!r} has no repository name")
    if path != path.lower():
        raise InvalidArgument(f"invalid reference format: repository name ({path}) must be "
                              "lowercase")
    if not _PATH.fullmatch(path):
        raise InvalidArgument(
            f"invalid reference format: {text!r} (repository names are lowercase letters, "
            "digits and separators '.', '_', '__', '-' between '/'-separated components)")
    return domain, path


def _check_tag(tag: str, text: str) -> None:
    if not _TAG.fullmatch(tag):
        raise InvalidArgument(f"invalid reference format: tag {tag!r} in {text!r} (expected "
                              "up to 128 letters, digits, '_', '.', '-', not starting with "
                              "'.' or '-')")


def _check_digest(digest: str, text: str) -> None:
    match = _DIGEST.fullmatch(digest)
    want = _DIGEST_HEX_LEN.get(match.group(1)) if match else None
    if not match or (want is not None and len(match.group(2)) != want):
        raise InvalidArgument(f"invalid reference format: digest {digest!r} in {text!r} "
                              "(expected e.g. sha256:<64 hex digits>)")


def is_id_prefix(text: str) -> bool:
    """True if `text` could abbreviate an image id (`sha256:` optional, lowercase hex)."""
    hexpart = text.removeprefix("sha256:")
    return 0 < len(hexpart) <= 64 and all(c in "0123456789abcdef" for c in hexpart)
