"""The registry client against a real `docker-registry` on 127.0.0.1, a token service and
proxy that demand scoped tokens, and a stub registry that lies. Images are seeded with skopeo
from OCI layouts built here; what we push is read back with skopeo."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import anyio
import pytest

from engine import layers
from engine.content import ContentStore
from engine.errors import NotFound
from engine.imageformat import Platform, parse_platform
from engine.images import Images
from engine.layout import Layout
from engine.pull import ALREADY_EXISTS, DOWNLOAD_COMPLETE, PullEvent, fetch_image, pull_image
from engine.push import push_image, push_tagged
from engine.registry import (
    BlobMismatch,
    BlobTruncated,
    ImageNotFound,
    RateLimited,
    RegistryClient,
    RegistryUnavailable,
    Repository,
    TLSFailure,
    Unauthorized,
)
from engine.registryauth import Credentials, CredentialStore
from tests.support import busybox, leaks
from tests.support import registry as reg

pytestmark = pytest.mark.skipif(
    not (reg.available() and busybox.available()),
    reason="needs docker-registry, skopeo and busybox-static (the test command installs them)")

FAST = {"attempts": 3, "backoff": 0.01}


# ---------------------------------------------------------------------------------------------
# Fixtures


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory):
    """One registry for the module, seeded with busybox (single platform) and a two-platform
    index; checks that the registry process is gone afterwards."""
    before = leaks.snapshot()
    tmp = tmp_path_factory.mktemp("registry")
    registry = reg.LocalRegistry(tmp / "registry")
    try:
        layout = reg.OciLayout(tmp / "oci")
        rootfs = busybox.make_rootfs_tar(tmp / "rootfs.tar").read_bytes()
        layer = layout.layer(rootfs)
        image = layout.image([layer])
        layout.tag(image, "latest")
        amd = layout.image([layout.layer(reg.tar_of({"arch": b"amd64\n"}))], arch="amd64")
        arm = layout.image([layout.layer(reg.tar_of({"arch": b"arm64\n"}))], arch="arm64",
                           variant="v8")
        index = layout.index([amd, arm])
        layout.tag(index, "multi")
        reg.skopeo_copy(f"oci:{layout.root}:latest",
                        f"docker://{registry.address}/test/busybox:latest")
        reg.skopeo_copy(f"oci:{layout.root}:multi",
                        f"docker://{registry.address}/test/multi:latest", all_images=True)
        yield {"registry": registry, "layout": layout, "image": image, "layer": layer[0],
               "amd": amd, "arm": arm, "index": index, "tmp": tmp}
    finally:
        registry.stop()
    leaked = leaks.diff(before, leaks.snapshot())
    # These tests make only processes and files; other suites may run beside this one and
    # make cgroups, links and mounts meanwhile, so only our own descendants and mounts under
    # our temporary directory count as leaks here.
    procs = [p for p in leaked.get("processes", []) if _descends_from_us(int(p.split()[0]))]
    mounts = [m for m in leaked.get("mounts", []) if m.startswith(str(tmp))]
    assert procs == [] and mounts == []


def _descends_from_us(pid: int) -> bool:
    me = os.getpid()
    while pid > 1:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            return False
        pid = int(stat.rsplit(")", 1)[1].split()[1])
        if pid == me:
            return True
    return False


@pytest.fixture
def store(tmp_path: Path) -> ContentStore:
    return ContentStore(Layout.at(tmp_path / "root").ensure())


def run_pull(ref: str, store: ContentStore, **kwargs):
    creds = kwargs.pop("credentials", None)
    events: list[PullEvent] = []

    async def main():
        async with RegistryClient(credentials=creds) as client:
            return await fetch_image(ref, store, client, progress=events.append, **FAST,
                                    **kwargs)

    return anyio.run(main), events


def layout_blob(world, digest: str) -> bytes:
    return (world["layout"].root / "blobs" / "sha256" / digest.split(":")[1]).read_bytes()


def ingest_empty(store: ContentStore) -> bool:
    return not any(store.layout.ingest.iterdir())


# ---------------------------------------------------------------------------------------------
# Pull


def test_pull_single_platform_into_store(world, store: ContentStore) -> None:
    address = world["registry"].address
    pulled, events = run_pull(f"{address}/test/busybox", store)
    remote = reg.skopeo_inspect(f"docker://{address}/test/busybox:latest")
    assert pulled.digest == remote["Digest"] == world["image"].digest
    assert pulled.reference == f"{address}/test/busybox:latest"
    assert [d.digest for d in pulled.layers] == [world["layer"].digest]
    # Every blob is in the store, byte for byte what the layout holds.
    for digest in (pulled.digest, pulled.config.digest, world["layer"].digest):
        assert store.read(digest) == layout_blob(world, digest)
    assert pulled.platform == Platform("linux", "amd64")
    assert pulled.downloaded == world["layer"].size + pulled.config.size
    statuses = [e.status for e in events if e.id == world["layer"].digest[7:19]]
    assert statuses[0] == "Waiting" and "Downloading" in statuses
    assert statuses[-3:] == [DOWNLOAD_COMPLETE, "Extracting", "Pull complete"]
    assert ingest_empty(store)
    # Unpacked: the chain id is the diff id of the only layer, and busybox is there.
    diff_id = json.loads(store.read(pulled.config.digest))["rootfs"]["diff_ids"][0]
    assert pulled.chain_ids == (diff_id,)
    unpacked = layers.get(store.layout, diff_id)
    assert unpacked is not None and (unpacked.diff / "bin" / "busybox").is_file()

    again, events = run_pull(f"{address}/test/busybox:latest", store)
    assert again.downloaded == 0 and again.digest == pulled.digest
    assert events[0].status == ALREADY_EXISTS


def test_pull_by_digest(world, store: ContentStore) -> None:
    address = world["registry"].address
    pulled, _ = run_pull(f"{address}/test/busybox@{world['image'].digest}", store)
    assert pulled.manifest.digest == world["image"].digest and pulled.tag is None


def test_pull_registers_the_image(world, tmp_path: Path) -> None:
    address = world["registry"].address
    images = Images(Layout.at(tmp_path / "root"))

    async def main():
        async with RegistryClient() as client:
            return await pull_image(f"{address}/test/multi", images, client, **FAST)

    image = anyio.run(main)
    assert images.resolve(f"{address}/test/multi").id == image.id
    assert images.resolve(f"{address}/test/multi@{world['index'].digest}").id == image.id
    assert image.manifest_digest == world["amd"].digest
    assert (image.os, image.architecture) == ("linux", "amd64")
    assert world["index"].digest in image.blobs  # the index is kept with the image
    [layer_dir] = images.layer_dirs(image.id)
    assert (layer_dir / "arch").read_text() == "amd64\n"

    # `docker push` of a local tag: blobs mount from the repository the image came from.
    images.tag(f"{address}/test/multi", f"{address}/pushed/tagged:v1")

    async def push():
        async with RegistryClient() as client:
            return await push_tagged(f"{address}/pushed/tagged:v1", images, client)

    pushed = anyio.run(push)
    assert (pushed.mounted, pushed.uploaded, pushed.digest) == (2, 0, world["amd"].digest)
    assert reg.skopeo_inspect(f"docker://{address}/pushed/tagged:v1")["Digest"] == (
        world["amd"].digest)


def test_index_picks_this_hosts_platform(world, store: ContentStore) -> None:
    address = world["registry"].address
    pulled, _ = run_pull(f"{address}/test/multi", store, platform=Platform("linux", "amd64"))
    assert pulled.index is not None and pulled.index.digest == world["index"].digest
    assert pulled.digest == world["index"].digest
    assert pulled.manifest.digest == world["amd"].digest
    arm_manifest = json.loads(layout_blob(world, world["arm"].digest))
    assert not store.exists(arm_manifest["layers"][0]["digest"])

    pulled, _ = run_pull(f"{address}/test/multi", store, platform=parse_platform("linux/arm64"))
    assert pulled.manifest.digest == world["arm"].digest
    assert str(pulled.platform) == "linux/arm64/v8"


def test_index_without_our_platform_lists_the_available_ones(world, store) -> None:
    address = world["registry"].address
    with pytest.raises(NotFound) as e:
        run_pull(f"{address}/test/multi", store, platform=Platform("linux", "s390x"))
    assert str(e.value) == (f'image "{address}/test/multi:latest": no image for platform '
                            "linux/s390x in the index (it offers: linux/amd64, linux/arm64/v8)")


def test_missing_image_is_a_clear_404(world, store: ContentStore) -> None:
    address = world["registry"].address
    with pytest.raises(ImageNotFound) as e:
        run_pull(f"{address}/test/nothing:1.0", store)
    assert str(e.value) == (f'image "{address}/test/nothing:1.0" not found in {address} '
                            "(404 from the registry)")
    assert list(store) == []


def test_unreachable_registry_is_named(store: ContentStore) -> None:
    port = reg.free_port()
    with pytest.raises(RegistryUnavailable) as e:
        run_pull(f"127.0.0.1:{port}/x/y", store)
    assert f"registry 127.0.0.1:{port}" in str(e.value) and "unreachable" in str(e.value)


def test_tls_failure_is_named(store: ContentStore, tmp_path: Path) -> None:
    # 127.0.0.2 is loopback too, but not a name we talk plain HTTP to: HTTPS, verified.
    stub = reg.StubRegistry("127.0.0.2", tls=reg.self_signed(tmp_path / "tls"))
    try:
        with pytest.raises(TLSFailure) as e:
            run_pull(f"{stub.address}/x/y", store)
        assert str(e.value).startswith(f"TLS with registry {stub.address} failed: ")
        assert "CERTIFICATE_VERIFY_FAILED" in str(e.value)
        assert str(e.value).endswith("add it to insecure_registries")
    finally:
        stub.close()


# ---------------------------------------------------------------------------------------------
# A registry that lies


def _stub_image(stub: reg.StubRegistry, layer: bytes, served: bytes | None = None,
                send_length: int | None = None) -> str:
    """Serves a manifest for `layer`, but the layer's bytes are `served`."""
    ld = "sha256:" + hashlib.sha256(layer).hexdigest()
    config = json.dumps({"architecture": "amd64", "os": "linux",
                         "rootfs": {"type": "layers", "diff_ids": [ld]}}).encode()
    cd = "sha256:" + hashlib.sha256(config).hexdigest()
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": reg.OCI_MANIFEST,
        "config": {"mediaType": reg.OCI_CONFIG, "digest": cd, "size": len(config)},
        "layers": [{"mediaType": reg.OCI_LAYER_GZIP, "digest": ld, "size": len(layer)}],
    }).encode()
    stub.manifest("lie/img", "latest", manifest)
    stub.blob("lie/img", cd, config)
    stub.blob("lie/img", ld, layer if served is None else served, send_length)
    return ld


def test_digest_mismatch_stores_nothing(store: ContentStore) -> None:
    stub = reg.StubRegistry()
    try:
        good = b"the real layer bytes" * 1000
        bad = bytearray(good)
        bad[5000] ^= 0xFF
        digest = _stub_image(stub, good, bytes(bad))
        with pytest.raises(BlobMismatch) as e:
            run_pull(f"{stub.address}/lie/img", store)
        assert f"served blob {digest}" in str(e.value) and "nothing was stored" in str(e.value)
        assert not store.exists(digest)
        assert not any(store.read(d).startswith(b"{\"schemaVersion\"") for d in store)
        assert ingest_empty(store)
    finally:
        stub.close()


def test_truncated_blob_is_retried_then_fails(store: ContentStore) -> None:
    stub = reg.StubRegistry()
    try:
        layer = bytes(range(256)) * 4096
        digest = _stub_image(stub, layer, layer[:300_000], send_length=len(layer))
        with pytest.raises(BlobTruncated) as e:
            run_pull(f"{stub.address}/lie/img", store)
        assert stub.address in str(e.value)
        gets = [r for r in stub.requests if r[1].endswith(digest)]
        assert len(gets) == 3
        # The retries resume where the stream stopped.
        assert gets[1][2].get("Range") == "bytes=300000-"
        assert not store.exists(digest) and ingest_empty(store)
    finally:
        stub.close()


def test_transient_failures_are_retried(store: ContentStore) -> None:
    stub = reg.StubRegistry()
    try:
        layer = b"layer bytes" * 100
        _stub_image(stub, layer)
        path = "/v2/lie/img/manifests/latest"
        stub.routes[path] = [reg.StubAnswer(503, b'{"errors":[{"code":"UNAVAILABLE"}]}'),
                             reg.StubAnswer(502), stub.routes[path]]
        pulled, _ = run_pull(f"{stub.address}/lie/img", store, unpack=False)
        assert store.exists(pulled.layers[0].digest)
        assert [r[1] for r in stub.requests].count(path) == 3
    finally:
        stub.close()


def test_rate_limit_is_reported(store: ContentStore) -> None:
    stub = reg.StubRegistry()
    try:
        stub.routes["/v2/lie/img/manifests/latest"] = reg.StubAnswer(
            429, b"{}", {"Retry-After": "0"})
        with pytest.raises(RateLimited) as e:
            run_pull(f"{stub.address}/lie/img", store)
        assert "rate-limiting" in str(e.value) and stub.address in str(e.value)
        assert len(stub.requests) == 3
    finally:
        stub.close()


# ---------------------------------------------------------------------------------------------
# Token auth


@pytest.fixture
def guarded(world):
    tokens = reg.TokenService(
        users={"alice": "s3cret"},
        grants={("", "test/busybox"): ("pull",),
                ("alice", "test/busybox"): ("pull",),
                ("alice", "private/busybox"): ("pull", "push"),
                ("alice", "private/copy"): ("pull", "push")})
    proxy = reg.AuthProxy(world["registry"].address, tokens)
    try:
        yield tokens, proxy
    finally:
        proxy.close()
        tokens.close()


def test_token_flow(world, guarded, store: ContentStore) -> None:
    tokens, proxy = guarded
    tokens.use_access_token = True  # the OAuth2 spelling must work too
    pulled, _ = run_pull(f"{proxy.address}/test/busybox", store)
    assert store.exists(world["layer"].digest) and pulled.digest == world["image"].digest
    # Challenge, then exactly one token for the pull scope, then authorised requests.
    assert proxy.requests[0][2]["authorization"] == ""
    assert len(tokens.requests) == 1
    assert "scope=repository%3Atest%2Fbusybox%3Apull" in tokens.requests[0][1]
    assert "service=test-registry" in tokens.requests[0][1]
    assert all(r[2]["authorization"].startswith("Bearer ") for r in proxy.requests[1:])


def test_pull_without_rights_says_login(world, guarded, store: ContentStore) -> None:
    _, proxy = guarded
    with pytest.raises(Unauthorized) as e:
        run_pull(f"{proxy.address}/private/busybox", store)
    assert str(e.value) == (
        f"access to private/busybox in {proxy.address} was denied (401: UNAUTHORIZED: "
        "authentication required): the repository may not exist, or it needs a login: run "
        f"`shipyard login {proxy.address}`")


def test_token_service_refusal_is_reported(world, guarded, store: ContentStore) -> None:
    tokens, proxy = guarded
    tokens.reject = True
    with pytest.raises(Unauthorized) as e:
        run_pull(f"{proxy.address}/test/busybox", store)
    assert f"token service of {proxy.address} refused anonymous access" in str(e.value)


def test_login_check(world, guarded) -> None:
    _, proxy = guarded

    async def login(user: str, password: str) -> None:
        async with RegistryClient() as client:
            await client.check_login(proxy.address, Credentials(user, password))

    anyio.run(login, "alice", "s3cret")
    with pytest.raises(Unauthorized) as e:
        anyio.run(login, "alice", "wrong")
    assert str(e.value) == f"login to {proxy.address} failed: username or password refused (401)"


def test_login_from_docker_config_pushes_and_pulls(world, guarded, store, tmp_path) -> None:
    tokens, proxy = guarded
    creds = CredentialStore(tmp_path / "docker")
    creds.store(proxy.address, Credentials("alice", "s3cret"))
    run_pull(f"{proxy.address}/test/busybox", store, credentials=creds)

    async def push(ref: str, **kw):
        async with RegistryClient(credentials=creds) as client:
            return await push_image(ref, world["image"].digest, store, client, **kw)

    pushed = anyio.run(push, f"{proxy.address}/private/busybox:v1")
    assert pushed.digest == world["image"].digest and pushed.mounted == 0
    # Cross-repo mount needs pull on the source too: the token asks for both scopes.
    mounted = anyio.run(lambda: push(f"{proxy.address}/private/copy:v1",
                                     mount_from=[Repository(proxy.address, "private/busybox")]))
    assert mounted.mounted == 2 and mounted.uploaded == 0
    assert any("scope=repository%3Aprivate%2Fbusybox%3Apull" in r[1] and "private%2Fcopy" in r[1]
               for r in tokens.requests)
    assert all(r[2]["user"] == "alice" for r in tokens.requests)


# --- distribution's own token auth, against our token service ------------------------------


@pytest.fixture(scope="module")
def secured(world):
    """A second docker-registry configured for token auth (RS256 tokens with an x5c chain)
    trusting a TokenService; seeded by skopeo logging in as alice."""
    tmp = world["tmp"]
    tokens = reg.TokenService(
        users={"alice": "s3cret"}, signer=reg.RS256Signer(tmp / "keys"),
        grants={("alice", "team/app"): ("pull", "push"),
                ("alice", "team/copy"): ("pull", "push"),
                ("", "public/app"): ("pull",), ("alice", "public/app"): ("pull", "push")})
    registry = reg.LocalRegistry(tmp / "secured", tokens=tokens)
    try:
        layout = world["layout"]
        for name in ("team/app", "public/app"):
            reg.skopeo_copy(f"oci:{layout.root}:latest",
                            f"docker://{registry.address}/{name}:latest",
                            dest_creds="alice:s3cret")
        yield tokens, registry
    finally:
        registry.stop()
        tokens.close()


def test_real_registry_token_auth_anonymous_pull(world, secured, store) -> None:
    tokens, registry = secured
    tokens.requests.clear()
    pulled, _ = run_pull(f"{registry.address}/public/app", store)
    assert pulled.digest == world["image"].digest
    assert [r[2]["user"] for r in tokens.requests] == [""]
    assert "scope=repository%3Apublic%2Fapp%3Apull" in tokens.requests[0][1]

    with pytest.raises(Unauthorized) as e:
        run_pull(f"{registry.address}/team/app", store)
    assert str(e.value).startswith(f"access to team/app in {registry.address} was denied (401")
    assert str(e.value).endswith(f"run `shipyard login {registry.address}`")


def test_real_registry_token_auth_with_login(world, secured, store, tmp_path) -> None:
    _, registry = secured
    creds = CredentialStore(tmp_path / "docker")

    async def login(password: str) -> None:
        async with RegistryClient() as client:
            await client.check_login(registry.address, Credentials("alice", password))

    with pytest.raises(Unauthorized):
        anyio.run(login, "wrong")
    anyio.run(login, "s3cret")
    creds.store(registry.address, Credentials("alice", "s3cret"))
    pulled, _ = run_pull(f"{registry.address}/team/app", store, credentials=creds)

    async def push():
        async with RegistryClient(credentials=creds) as client:
            return await push_image(f"{registry.address}/team/copy:v1", pulled.digest, store,
                                    client,
                                    mount_from=[Repository(registry.address, "team/app")])

    pushed = anyio.run(push)
    assert (pushed.mounted, pushed.uploaded) == (2, 0)
    assert pushed.digest == world["image"].digest


# ---------------------------------------------------------------------------------------------
# Push


def _push(ref: str, digest: str, store: ContentStore, **kw):
    async def main():
        async with RegistryClient() as client:
            return await push_image(ref, digest, store, client, **kw)

    return anyio.run(main)


@pytest.mark.parametrize("chunk_size", [None, 256 * 1024])
def test_push_reads_back_with_skopeo(world, store, tmp_path, chunk_size) -> None:
    address = world["registry"].address
    pulled, _ = run_pull(f"{address}/test/busybox", store)
    name = f"pushed/chunked{chunk_size}" if chunk_size else "pushed/mono"
    pushed = _push(f"{address}/{name}:v1", pulled.digest, store, chunk_size=chunk_size)
    assert pushed.digest == pulled.digest and pushed.uploaded > world["layer"].size
    remote = reg.skopeo_inspect(f"docker://{address}/{name}:v1")
    assert remote["Digest"] == pulled.digest
    out = tmp_path / "copy"
    reg.skopeo_copy(f"docker://{address}/{name}:v1", f"dir:{out}")
    assert (out / world["layer"].digest[7:]).read_bytes() == store.read(world["layer"].digest)

    again = _push(f"{address}/{name}:v2", pulled.digest, store)
    assert again.skipped == 2 and again.uploaded == 0


def test_push_mounts_from_another_repository(world, store: ContentStore) -> None:
    address = world["registry"].address
    pulled, _ = run_pull(f"{address}/test/busybox", store)
    pushed = _push(f"{address}/mounted/busybox:v1", pulled.digest, store,
                   mount_from=[Repository(address, "test/busybox")])
    assert (pushed.mounted, pushed.uploaded) == (2, 0)
    assert reg.skopeo_inspect(f"docker://{address}/mounted/busybox:v1")["Digest"] == (
        pulled.digest)


def test_push_index_and_list_tags(world, store: ContentStore) -> None:
    address = world["registry"].address
    run_pull(f"{address}/test/multi", store, platform=Platform("linux", "amd64"))
    run_pull(f"{address}/test/multi", store, platform=Platform("linux", "arm64"))
    pushed = _push(f"{address}/pushed/multi:all", world["index"].digest, store)
    assert pushed.digest == world["index"].digest
    raw = reg.skopeo_inspect(f"docker://{address}/pushed/multi:all", raw=True)
    assert {m["digest"] for m in raw["manifests"]} == {world["amd"].digest, world["arm"].digest}

    async def tags():
        async with RegistryClient() as client:
            repo = Repository(address, "pushed/multi")
            return (await client.list_tags(repo), await client.head_manifest(repo, "all"),
                    await client.head_manifest(repo, "nope"))

    tags, head, missing = anyio.run(tags)
    assert tags == ["all"] and missing is None
    assert (head.digest, head.media_type) == (world["index"].digest, reg.OCI_INDEX)
