"""Image manifest formats: OCI image index/manifest/config and Docker schema2 (list, manifest,
config), their media types both ways, choosing the manifest for a platform, and the
manifest.json of a `docker save` archive.

Pure: bytes in, frozen dataclasses out; errors are InvalidArgument/NotFound naming the blob.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from engine import reference
from engine.content import parse_digest
from engine.errors import InvalidArgument, NotFound

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
OCI_LAYER_GZIP = OCI_LAYER + "+gzip"
OCI_LAYER_ZSTD = OCI_LAYER + "+zstd"
# A layer blob's media type by its compression (`engine.compression.detect_compression`).
LAYER_TYPES = {"none": OCI_LAYER, "gzip": OCI_LAYER_GZIP, "zstd": OCI_LAYER_ZSTD}
OCI_FOREIGN_GZIP = "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
OCI_FOREIGN = "application/vnd.oci.image.layer.nondistributable.v1.tar"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar"
DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
DOCKER_FOREIGN_GZIP = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"

INDEX_TYPES = frozenset({OCI_INDEX, DOCKER_LIST})
MANIFEST_TYPES = frozenset({OCI_MANIFEST, DOCKER_MANIFEST})
CONFIG_TYPES = frozenset({OCI_CONFIG, DOCKER_CONFIG})

# Docker schema2 <-> OCI: the same documents under other names.
DOCKER_TO_OCI = {
    DOCKER_LIST: OCI_INDEX, DOCKER_MANIFEST: OCI_MANIFEST, DOCKER_CONFIG: OCI_CONFIG,
    DOCKER_LAYER: OCI_LAYER, DOCKER_LAYER_GZIP: OCI_LAYER_GZIP,
    DOCKER_FOREIGN_GZIP: OCI_FOREIGN_GZIP,
}
OCI_TO_DOCKER = {oci: docker for docker, oci in DOCKER_TO_OCI.items()}

# uname machine -> (GOARCH, variant)
_MACHINES = {
    "x86_64": ("amd64", ""), "amd64": ("amd64", ""), "aarch64": ("arm64", "v8"),
    "arm64": ("arm64", "v8"), "armv7l": ("arm", "v7"), "armv6l": ("arm", "v6"),
    "armv5tel": ("arm", "v5"), "i386": ("386", ""), "i686": ("386", ""),
    "ppc64le": ("ppc64le", ""), "s390x": ("s390x", ""), "riscv64": ("riscv64", ""),
    "mips64": ("mips64", ""), "loongarch64": ("loong64", ""),
}


@dataclass(frozen=True, slots=True)
class Platform:
    """An OCI platform (os, architecture, variant)."""

    os: str
    architecture: str
    variant: str = ""

    def __str__(self) -> str:
        return "/".join(p for p in (self.os, self.architecture, self.variant) if p)


@dataclass(frozen=True, slots=True)
class Descriptor:
    """An OCI content descriptor: what a manifest or index points at."""

    media_type: str
    digest: str
    size: int
    platform: Platform | None = None
    annotations: dict[str, str] = field(default_factory=dict, hash=False, compare=False)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"mediaType": self.media_type, "digest": self.digest,
                               "size": self.size}
        if self.platform is not None:
            out["platform"] = {"architecture": self.platform.architecture,
                               "os": self.platform.os}
            if self.platform.variant:
                out["platform"]["variant"] = self.platform.variant
        if self.annotations:
            out["annotations"] = dict(self.annotations)
        return out


@dataclass(frozen=True, slots=True)
class Manifest:
    """An image manifest: the config and the layers, in order."""

    media_type: str
    config: Descriptor
    layers: tuple[Descriptor, ...]


@dataclass(frozen=True, slots=True)
class Index:
    """An image index (or Docker manifest list): one manifest per platform."""

    media_type: str
    manifests: tuple[Descriptor, ...]


def host_platform() -> Platform:
    """This machine's os/architecture/variant in OCI (GOOS/GOARCH) terms."""
    # os.uname() is what platform.machine() reads on Linux, without importing `platform`.
    machine = os.uname().machine.lower()
    arch, variant = _MACHINES.get(machine, (machine, ""))
    return Platform("linux", arch, variant)


def parse_platform(text: str) -> Platform:
    """`linux/arm64/v8`, `linux/amd64` -> Platform."""
    parts = text.strip().lower().split("/")
    if len(parts) not in (2, 3) or not all(parts):
        raise InvalidArgument(f"invalid platform {text!r} (expected os/arch[/variant])")
    return Platform(parts[0], parts[1], parts[2] if len(parts) == 3 else "")


def convert_media_type(media_type: str, to: str) -> str:
    """The same document's media type in `to` ("oci" or "docker"); unknown types pass."""
    table = DOCKER_TO_OCI if to == "oci" else OCI_TO_DOCKER
    if to not in ("oci", "docker"):
        raise ValueError(to)
    return table.get(media_type, media_type)


def convert_manifest(document: dict[str, Any], to: str) -> dict[str, Any]:
    """A manifest or index with every media type renamed to `to` ("oci" or "docker")."""
    out = dict(document)
    if "mediaType" in out:
        out["mediaType"] = convert_media_type(out["mediaType"], to)
    for key in ("layers", "manifests"):
        if key in out:
            out[key] = [dict(d, mediaType=convert_media_type(d.get("mediaType", ""), to))
                        for d in out[key]]
    if "config" in out:
        out["config"] = dict(out["config"],
                             mediaType=convert_media_type(out["config"].get("mediaType", ""), to))
    return out


def media_type_of(data: bytes | dict[str, Any]) -> str:
    """The document's declared mediaType, or what its shape says (OCI allows leaving it out)."""
    doc = _load(data, "document") if isinstance(data, bytes) else data
    declared = doc.get("mediaType")
    if declared:
        return declared
    if "manifests" in doc:
        return OCI_INDEX
    if "layers" in doc and "config" in doc:
        return OCI_MANIFEST
    raise InvalidArgument("document is neither an image manifest nor an index")


def parse_descriptor(value: Any, what: str) -> Descriptor:
    if not isinstance(value, dict):
        raise InvalidArgument(f"{what}: a descriptor must be an object")
    try:
        media_type = str(value["mediaType"])
        digest = str(value["digest"])
        size = int(value["size"])
    except (KeyError, TypeError, ValueError) as error:
        raise InvalidArgument(f"{what}: descriptor without valid {error}") from None
    parse_digest(digest)
    if size < 0:
        raise InvalidArgument(f"{what}: negative size in descriptor {digest}")
    plat = value.get("platform")
    platform = None
    if isinstance(plat, dict) and plat.get("os") and plat.get("architecture"):
        platform = Platform(str(plat["os"]), str(plat["architecture"]),
                            str(plat.get("variant") or ""))
    annotations = value.get("annotations") or {}
    return Descriptor(media_type, digest, size, platform,
                      {str(k): str(v) for k, v in annotations.items()})


def parse_manifest(data: bytes) -> Manifest:
    doc = _load(data, "manifest")
    media_type = media_type_of(doc)
    if media_type not in MANIFEST_TYPES:
        raise InvalidArgument(f"unsupported manifest media type {media_type!r} (expected OCI "
                              "or Docker schema2 image manifest)")
    if doc.get("schemaVersion") != 2:
        raise InvalidArgument(f"unsupported manifest schemaVersion {doc.get('schemaVersion')!r}"
                              " (only 2; Docker schema1 images are not supported)")
    config = parse_descriptor(doc.get("config"), "manifest config")
    layers = doc.get("layers")
    if not isinstance(layers, list):
        raise InvalidArgument("manifest: layers must be a list")
    return Manifest(media_type, config,
                    tuple(parse_descriptor(d, f"manifest layer {i}") for i, d in enumerate(layers)))


def parse_index(data: bytes) -> Index:
    doc = _load(data, "index")
    media_type = media_type_of(doc)
    if media_type not in INDEX_TYPES:
        raise InvalidArgument(f"unsupported index media type {media_type!r}")
    manifests = doc.get("manifests")
    if not isinstance(manifests, list):
        raise InvalidArgument("index: manifests must be a list")
    return Index(media_type, tuple(parse_descriptor(d, f"index manifest {i}")
                                   for i, d in enumerate(manifests)))


def choose_manifest(index: Index | bytes, platform: Platform | None = None) -> Descriptor:
    """The index entry for `platform` (default: this host). Exact variant first, then an entry
    without variant (arm64's "v8" counts as none). Attestations (unknown/unknown) never match.
    NotFound lists what the index offers."""
    if isinstance(index, bytes):
        index = parse_index(index)
    want = platform or host_platform()

    def variant(p: Platform) -> str:
        return "" if (p.architecture == "arm64" and p.variant == "v8") else p.variant

    candidates = [d for d in index.manifests if d.platform is not None
                  and d.platform.os == want.os and d.platform.architecture == want.architecture]
    for match in (lambda d: variant(d.platform) == variant(want),
                  lambda d: not variant(d.platform),
                  lambda d: not want.variant):
        for d in candidates:
            if match(d):
                return d
    offered = sorted({str(d.platform) for d in index.manifests if d.platform is not None
                      and d.platform.os != "unknown"})
    raise NotFound(f"no image for platform {want} in the index (it offers: "
                   f"{', '.join(offered) or 'nothing'})")


def make_manifest(config: Descriptor, layers: Sequence[Descriptor],
                  media_type: str = OCI_MANIFEST) -> bytes:
    doc = {"schemaVersion": 2, "mediaType": media_type, "config": config.to_json(),
           "layers": [d.to_json() for d in layers]}
    return json.dumps(doc, separators=(",", ":")).encode()


@dataclass(frozen=True, slots=True)
class DockerSaveEntry:
    """One checked entry of a docker-save manifest.json: paths inside the archive, and the
    RepoTags normalised (`busybox` -> `docker.io/library/busybox:latest`)."""

    config: str
    repo_tags: tuple[str, ...]
    layers: tuple[str, ...]


def parse_docker_save_manifest(doc: Any, archive: str) -> tuple[DockerSaveEntry, ...]:
    """The entries of a docker-save `manifest.json` (already parsed from JSON), every one
    checked: Config a path, Layers a list of paths, RepoTags null or a list of valid names.
    Anything else is one InvalidArgument naming `archive` and the entry, like
    `image archive x.tar: manifest.json[0].Layers[1]: is a number (5) (expected ...)`."""

    def invalid(where: str, what: str) -> InvalidArgument:
        return InvalidArgument(f"image archive {archive}: {where}: {what}")

    if not isinstance(doc, list):
        raise invalid("manifest.json", f"is {_json_kind(doc)} (expected a list of "
                      "{Config, RepoTags, Layers} entries)")
    out = []
    for n, raw in enumerate(doc):
        where = f"manifest.json[{n}]"
        if not isinstance(raw, dict):
            raise invalid(where, f"is {_json_kind(raw)} (expected an object with Config, "
                          "RepoTags and Layers)")
        config = raw.get("Config", _MISSING)
        if not isinstance(config, str) or not config:
            raise invalid(f"{where}.Config", f"is {_json_kind(config)} (expected a string: "
                          "the path of the image config inside the archive)")
        layers = raw.get("Layers", _MISSING)
        if not isinstance(layers, list):
            raise invalid(f"{where}.Layers", f"is {_json_kind(layers)} (expected a list of "
                          "paths of layer tars inside the archive)")
        for i, path in enumerate(layers):
            if not isinstance(path, str) or not path:
                raise invalid(f"{where}.Layers[{i}]", f"is {_json_kind(path)} (expected a "
                              "string: the path of a layer tar inside the archive)")
        tags = raw.get("RepoTags")
        if not isinstance(tags, list | None):
            raise invalid(f"{where}.RepoTags", f"is {_json_kind(tags)} (expected a list of "
                          'image names like "busybox:latest", or null)')
        repo_tags = []
        for i, tag in enumerate(tags or ()):
            if not isinstance(tag, str):
                raise invalid(f"{where}.RepoTags[{i}]", f"is {_json_kind(tag)} (expected a "
                              'string: an image name like "busybox:latest")')
            try:
                repo_tags.append(str(reference.parse(tag)))
            except InvalidArgument as error:
                raise invalid(f"{where}.RepoTags[{i}]", str(error)) from None
        out.append(DockerSaveEntry(config, tuple(repo_tags), tuple(layers)))
    return tuple(out)


_MISSING = object()


def _json_kind(value: Any) -> str:
    """A JSON value as messages name it: `missing`, `null`, `a number (5)`, `a list`..."""
    if value is _MISSING:
        return "missing"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"a boolean ({json.dumps(value)})"
    if isinstance(value, int | float):
        return f"a number ({json.dumps(value)})"
    if isinstance(value, str):
        return f"a string ({value[:60]!r})" if value else "an empty string"
    return "a list" if isinstance(value, list) else "an object"


def _load(data: bytes, what: str) -> dict[str, Any]:
    try:
        doc = json.loads(data)
    except ValueError as error:
        raise InvalidArgument(f"{what} is not valid JSON: {error}") from None
    if not isinstance(doc, dict):
        raise InvalidArgument(f"{what} must be a JSON object")
    return doc
