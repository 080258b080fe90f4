"""`image save` / `image load`: tar archives of images, both docker-save and OCI layout.

`save` writes one tar that is at once
  - an OCI image layout: `oci-layout`, `index.json`, `blobs/sha256/<hex>`, and
  - a docker-save archive: `manifest.json` (Config, RepoTags, Layers paths into blobs/) and
    `repositories`,
as Docker 25+ does. Layers are written uncompressed (their digest is their diff_id), so every
loader (old Docker, podman, skopeo, containerd) accepts them.

`load` reads either kind: an OCI layout (index.json, possibly nested indexes: the host's
platform is chosen) or a docker-save archive (manifest.json; layer paths like `<id>/layer.tar`
from older Docker, symlinked duplicates, podman's `<hex>.tar`). The archive may itself be
compressed. Every blob is verified (digest and size) before it is stored, every layer's
diff_id while it is unpacked. The archive is never extracted to disk.
"""

from __future__ import annotations

import json
import os
import posixpath
import shutil
import tarfile
import tempfile
import uuid
from collections.abc import Iterable, Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import IO, Any, BinaryIO

from engine import reference
from engine.compression import decompressed, decompression_errors, detect_compression
from engine.content import CHUNK, parse_digest, sha256_digest
from engine.errors import InvalidArgument, NotFound
from engine.imageformat import (
    DOCKER_LAYER,
    INDEX_TYPES,
    LAYER_TYPES,
    MANIFEST_TYPES,
    OCI_CONFIG,
    OCI_INDEX,
    OCI_LAYER,
    OCI_MANIFEST,
    Descriptor,
    DockerSaveEntry,
    choose_manifest,
    make_manifest,
    media_type_of,
    parse_descriptor,
    parse_docker_save_manifest,
    parse_index,
    parse_manifest,
)
from engine.images import Image, Images

NAME_ANNOTATION = "io.containerd.image.name"
REF_ANNOTATION = "org.opencontainers.image.ref.name"
_UNCOMPRESSED = (OCI_LAYER, DOCKER_LAYER)


# -- save ----------------------------------------------------------------------------------

def save(images: Images, refs: Sequence[str], out: BinaryIO) -> None:
    """Writes the images `refs` name (tags, ids; a bare name means all its tags) to `out`."""
    chosen = _select(images, refs)
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        _add_dir(tar, "blobs/")
        _add_dir(tar, "blobs/sha256/")
        written: set[str] = set()
        index: list[dict[str, Any]] = []
        docker_manifest: list[dict[str, Any]] = []
        repositories: dict[str, dict[str, str]] = {}
        for image, tags in chosen:
            layer_paths = [_save_layer(images, tar, image, i, written)
                           for i in range(len(image.layers))]
            config = images.content.read(image.id)
            _add_blob(tar, image.id, config, written)
            manifest = _export_manifest(images, image)
            manifest_digest = sha256_digest(manifest)
            _add_blob(tar, manifest_digest, manifest, written)
            desc = {"mediaType": OCI_MANIFEST, "digest": manifest_digest, "size": len(manifest)}
            refs_of = [reference.parse(t) for t in tags]
            for ref in refs_of:
                index.append(dict(desc, annotations={NAME_ANNOTATION: str(ref),
                                                     REF_ANNOTATION: ref.tag or "latest"}))
                top = image.diff_ids[-1].removeprefix("sha256:") if image.diff_ids else ""
                repositories.setdefault(ref.familiar_name(), {})[ref.tag or "latest"] = top
            if not refs_of:
                index.append(desc)
            docker_manifest.append({
                "Config": f"blobs/sha256/{image.id.removeprefix('sha256:')}",
                "RepoTags": [r.familiar() for r in refs_of] or None,
                "Layers": layer_paths,
            })
        _add_json(tar, "index.json", {"schemaVersion": 2, "mediaType": OCI_INDEX,
                                      "manifests": index})
        _add_json(tar, "manifest.json", docker_manifest)
        _add_json(tar, "oci-layout", {"imageLayoutVersion": "1.0.0"})
        if repositories:
            _add_json(tar, "repositories", repositories)


def save_to_file(images: Images, refs: Sequence[str], path: str | os.PathLike[str]) -> None:
    """`save` into `path` atomically: a failure leaves no partial file."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent or ".")
    try:
        with os.fdopen(fd, "wb") as f:
            save(images, refs, f)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _select(images: Images, refs: Sequence[str]) -> list[tuple[Image, list[str]]]:
    chosen: dict[str, list[str]] = {}
    for text in refs:
        try:
            bare = reference.parse(text, default_tag=False)
        except InvalidArgument:
            bare = None
        if bare is not None and not bare.tag and not bare.digest:
            tagged = [(img.id, t) for img in images.list() for t in img.repo_tags
                      if reference.parse(t).name == bare.name]
            if tagged:
                for image_id, tag in tagged:
                    chosen.setdefault(image_id, [])
                    if tag not in chosen[image_id]:
                        chosen[image_id].append(tag)
                continue
        image = images.resolve(text)
        tags = chosen.setdefault(image.id, [])
        if bare is not None and bare.tag:
            full = str(bare)
            if full in image.repo_tags and full not in tags:
                tags.append(full)
    return [(images.get(image_id), tags) for image_id, tags in chosen.items()]


def _export_manifest(images: Images, image: Image) -> bytes:
    """The stored manifest if its layers are already uncompressed, else an OCI manifest that
    lists the uncompressed layers we write (the config, and so the id, stays the same)."""
    if image.manifest_media_type == OCI_MANIFEST and all(
            layer.media_type in _UNCOMPRESSED for layer in image.layers):
        return images.content.read(image.manifest_digest)
    config = Descriptor(OCI_CONFIG, image.id, images.content.size(image.id))
    layers = [Descriptor(OCI_LAYER, layer.diff_id, _tar_size(images, image, i))
              for i, layer in enumerate(image.layers)]
    return make_manifest(config, layers)


def _tar_size(images: Images, image: Image, i: int) -> int:
    return images.layer_tar_size(image.chain_ids[i])


def _save_layer(images: Images, tar: tarfile.TarFile, image: Image, i: int,
                written: set[str]) -> str:
    layer = image.layers[i]
    path = f"blobs/sha256/{layer.diff_id.removeprefix('sha256:')}"
    if layer.diff_id in written:
        return path
    size = _tar_size(images, image, i)
    info = _info(path, size)
    with images.content.open(layer.digest) as blob:
        _, plain = decompressed(blob)
        tar.addfile(info, plain)  # type: ignore[arg-type]
    written.add(layer.diff_id)
    return path


def _info(name: str, size: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = size, 0o644, 0
    return info


def _add_dir(tar: tarfile.TarFile, name: str) -> None:
    info = tarfile.TarInfo(name)
    info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, 0
    tar.addfile(info)


def _add_blob(tar: tarfile.TarFile, digest: str, data: bytes, written: set[str]) -> None:
    if digest in written:
        return
    import io
    tar.addfile(_info(f"blobs/sha256/{parse_digest(digest)}", len(data)), io.BytesIO(data))
    written.add(digest)


def _add_json(tar: tarfile.TarFile, name: str, value: Any) -> None:
    import io
    data = json.dumps(value, separators=(",", ":")).encode()
    tar.addfile(_info(name, len(data)), io.BytesIO(data))


# -- load ----------------------------------------------------------------------------------

def load(images: Images, source: str | os.PathLike[str] | BinaryIO) -> list[str]:
    """Loads every image in the archive; returns Docker's lines (`Loaded image: busybox:latest`
    or `Loaded image ID: sha256:...`). On failure, blobs it added and no image uses go."""
    before = set(images.content)
    try:
        loaded = _load(images, source)
    except BaseException:
        images.drop_unreferenced(set(images.content) - before)
        raise
    lines: list[str] = []
    for image_id, tags in loaded:
        if tags:
            lines += [f"Loaded image: {reference.parse(t).familiar()}" for t in tags]
        else:
            lines.append(f"Loaded image ID: {image_id}")
    return lines


def _load(images: Images, source: str | os.PathLike[str] | BinaryIO,
          ) -> list[tuple[str, list[str]]]:
    with ExitStack() as stack:
        path = _seekable_copy(images, source, stack)
        try:
            tar = stack.enter_context(tarfile.open(path, "r:"))
            archive = _Archive(tar, _source_name(source))
        except tarfile.TarError as error:
            raise InvalidArgument(f"not an image archive (not a tar file: {error})") from None
        if "index.json" in archive.names:
            loaded = _load_oci(images, archive)
        elif "manifest.json" in archive.names:
            loaded = []
        else:
            raise InvalidArgument("not an image archive: it has neither index.json (OCI layout) "
                                  "nor manifest.json (docker save); the pre-1.10 docker save "
                                  "format is not supported")
        if "manifest.json" in archive.names:
            seen = {image_id for image_id, _ in loaded}
            loaded += _load_docker(images, archive, seen)
        return loaded


def _seekable_copy(images: Images, source: str | os.PathLike[str] | BinaryIO,
                   stack: ExitStack) -> str:
    """A plain tar file path: the source itself, or a decompressed/spooled copy in tmp/."""
    if isinstance(source, (str, os.PathLike)):
        try:
            raw: IO[bytes] = stack.enter_context(open(source, "rb"))  # noqa: SIM115
        except FileNotFoundError:
            raise NotFound(f"no such file: {os.fspath(source)}") from None
        if detect_compression(raw.read(6)) == "none":
            return os.fspath(source)
        raw.seek(0)
    else:
        raw = source
    kind, plain = decompressed(raw)
    tmp = images.layout.tmp / f"load-{uuid.uuid4().hex}.tar"
    stack.callback(lambda: tmp.unlink(missing_ok=True))
    try:
        with open(tmp, "wb") as out:
            shutil.copyfileobj(plain, out, CHUNK)
    except decompression_errors() as error:
        raise InvalidArgument(f"image archive: truncated or corrupt {kind} data "
                              f"({error})") from None
    return str(tmp)


def _source_name(source: str | os.PathLike[str] | BinaryIO) -> str:
    """The archive as messages name it: its path, a stream's name (`<stdin>`), or `-`."""
    if isinstance(source, (str, os.PathLike)):
        return os.fspath(source)
    name = getattr(source, "name", None)
    return name if isinstance(name, str) else "-"


class _Archive:
    """Random access to the members of an (untrusted) archive by normalised name."""

    def __init__(self, tar: tarfile.TarFile, name: str) -> None:
        self.tar = tar
        self.name = name
        self.names: dict[str, tarfile.TarInfo] = {}
        for member in tar.getmembers():
            self.names[posixpath.normpath(member.name).lstrip("/")] = member

    def member(self, name: str) -> tarfile.TarInfo:
        name = posixpath.normpath(name).lstrip("/")
        for _ in range(16):  # older docker save links duplicate layers: <id>/layer.tar -> ..
            member = self.names.get(name)
            if member is None:
                raise InvalidArgument(f"image archive: {name!r} is missing")
            if not member.issym() and not member.islnk():
                return member
            base = posixpath.dirname(name) if member.issym() else ""
            target = posixpath.normpath(posixpath.join(base, member.linkname))
            if target.startswith("../") or target == ".." or member.linkname.startswith("/"):
                raise InvalidArgument(f"image archive: {name!r} links outside the archive")
            name = target
        raise InvalidArgument(f"image archive: too many links at {name!r}")

    def open(self, name: str) -> IO[bytes]:
        member = self.member(name)
        if not member.isreg():
            raise InvalidArgument(f"image archive: {name!r} is not a file")
        stream = self.tar.extractfile(member)
        assert stream is not None
        return stream

    def read(self, name: str, limit: int = 64 << 20) -> bytes:
        if self.member(name).size > limit:
            raise InvalidArgument(f"image archive: {name!r} is implausibly large")
        with self.open(name) as f:
            return f.read()

    def json(self, name: str) -> Any:
        try:
            return json.loads(self.read(name))
        except ValueError as error:
            raise InvalidArgument(f"image archive: {name} is not valid JSON ({error})") from None


def _blob_path(digest: str) -> str:
    algorithm, _, hexpart = digest.partition(":")
    return f"blobs/{algorithm}/{hexpart}"


def _ingest(images: Images, archive: _Archive, desc: Descriptor) -> None:
    if images.content.exists(desc.digest):
        return
    with archive.open(_blob_path(desc.digest)) as f:
        images.content.write_stream(f, expected=desc.digest, expected_size=desc.size)


def _load_oci(images: Images, archive: _Archive) -> list[tuple[str, list[str]]]:
    index_doc = archive.json("index.json")
    if not isinstance(index_doc, dict) or not isinstance(index_doc.get("manifests"), list):
        raise InvalidArgument("image archive: index.json has no manifests list")
    by_config: dict[str, list[str]] = {}
    docker_tags = _docker_tags(archive)
    for i, raw in enumerate(index_doc["manifests"]):
        desc = parse_descriptor(raw, f"index.json manifests[{i}]")
        image_id = _load_descriptor(images, archive, desc, depth=0)
        tags = by_config.setdefault(image_id, [])
        for tag in _names(desc, docker_tags.get(image_id, [])):
            if tag not in tags:
                tags.append(tag)
    for image_id, tags in by_config.items():
        images.commit(images.get(image_id).manifest_digest, tags=tags)
    return list(by_config.items())


def _load_descriptor(images: Images, archive: _Archive, desc: Descriptor, depth: int) -> str:
    """Ingests the manifest (choosing from indexes) and its blobs, commits; returns the id."""
    if depth > 4:
        raise InvalidArgument("image archive: indexes nested too deeply")
    _ingest(images, archive, desc)
    data = images.content.read(desc.digest)
    media_type = media_type_of(data)
    if media_type in INDEX_TYPES:
        chosen = choose_manifest(parse_index(data))
        return _load_descriptor(images, archive, chosen, depth + 1)
    if media_type not in MANIFEST_TYPES:
        raise InvalidArgument(f"image archive: {desc.digest} has unsupported media type "
                              f"{media_type!r}")
    manifest = parse_manifest(data)
    for blob in (manifest.config, *manifest.layers):
        _ingest(images, archive, blob)
    return images.commit(desc.digest).id


def _names(desc: Descriptor, docker_tags: Iterable[str]) -> list[str]:
    names: list[str] = []
    full = desc.annotations.get(NAME_ANNOTATION)
    ref_name = desc.annotations.get(REF_ANNOTATION, "")
    if full:
        names.append(str(reference.parse(full)))
    elif "/" in ref_name or ":" in ref_name:
        try:
            names.append(str(reference.parse(ref_name)))
        except InvalidArgument:
            pass  # a bare OCI ref name ("latest") is not a repository name
    for tag in docker_tags:
        if tag not in names:
            names.append(tag)
    return names


def _docker_tags(archive: _Archive) -> dict[str, list[str]]:
    """Config digest -> normalised RepoTags, from manifest.json when the archive has one."""
    if "manifest.json" not in archive.names:
        return {}
    out: dict[str, list[str]] = {}
    for entry in _docker_entries(archive):
        digest = sha256_digest(archive.read(entry.config))
        out.setdefault(digest, []).extend(entry.repo_tags)
    return out


def _docker_entries(archive: _Archive) -> tuple[DockerSaveEntry, ...]:
    """manifest.json's entries, every one checked before any is used: a malformed archive is
    one InvalidArgument naming the archive and the entry, and nothing is loaded from it."""
    return parse_docker_save_manifest(archive.json("manifest.json"), archive.name)


def _load_docker(images: Images, archive: _Archive,
                 seen: set[str]) -> list[tuple[str, list[str]]]:
    loaded = []
    for entry in _docker_entries(archive):
        config = archive.read(entry.config)
        config_blob = images.content.write(config)
        if config_blob.digest in seen:
            continue
        layers = []
        for path in entry.layers:
            with archive.open(path) as f:
                blob = images.content.write_stream(f)
            with images.content.open(blob.digest) as f:
                kind = detect_compression(f.read(6))
            if kind not in LAYER_TYPES:
                raise InvalidArgument(f"image archive: layer {path}: {kind} compression is not "
                                      "supported")
            layers.append(Descriptor(LAYER_TYPES[kind], blob.digest, blob.size))
        manifest = make_manifest(Descriptor(OCI_CONFIG, config_blob.digest, config_blob.size),
                                 layers)
        manifest_blob = images.content.write(manifest)
        tags = list(entry.repo_tags)
        image = images.commit(manifest_blob.digest, tags=tags)
        seen.add(image.id)
        loaded.append((image.id, tags))
    return loaded
