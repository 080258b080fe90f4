"""`shipyard image push|pull`, `login` and `logout` against a real `docker-registry` on
127.0.0.1 (and a token-demanding proxy in front of it): push an imported busybox, remove it,
pull it back with per-layer progress, run it; build FROM an image only the registry has;
log in with the token flow, push to a private repository, log out."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import busybox, leaks
from tests.support import registry as reg
from tests.support.cli import Shipyard as _Runner

pytestmark = pytest.mark.skipif(
    not (reg.available() and busybox.available()),
    reason="needs docker-registry, skopeo and busybox-static (the test command installs them)")


class Shipyard(_Runner):
    pass


@pytest.fixture
def shipyard(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Shipyard]:
    from engine.layout import Layout

    before = leaks.snapshot()
    root = tmp_path / "root"
    monkeypatch.setenv("SHIPYARD_ROOT", str(root))
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "docker"))
    cli = Shipyard()
    cli("image", "import", "-c", 'CMD ["sh"]',
        str(busybox.make_rootfs_tar(tmp_path / "busybox.tar")), "busybox:latest")
    yield cli
    cli.remove_everything()
    leaked = leaks.diff(before, leaks.snapshot())
    marks = (str(tmp_path), str(Layout.at(root).run))
    assert [m for m in leaked.get("mounts", []) if m.startswith(marks)] == []
    assert [p for p in leaked.get("processes", []) if any(m in p for m in marks)] == []


def test_push_remove_pull_and_run(shipyard: Shipyard, registry: reg.LocalRegistry,
                                  tmp_path: Path) -> None:
    ref = f"{registry.address}/test/busybox:1"
    shipyard("image", "tag", "busybox", ref)
    _, _, err = shipyard("image", "push", ref)
    assert f"The push refers to repository [{registry.address}/test/busybox]" in err
    assert ": Pushed" in err and "1: digest: sha256:" in err
    manifest = reg.skopeo_inspect(f"docker://{ref}", raw=True)
    assert len(manifest["layers"]) == 1

    shipyard("image", "rm", ref, "busybox")
    assert shipyard("image", "ls", "-q")[1].strip() == ""
    _, out, err = shipyard("image", "pull", ref)
    assert out.strip() == ref
    assert "1: Pulling from test/busybox" in err
    assert ": Pull complete" in err and "Digest: sha256:" in err
    assert f"Status: Downloaded newer image for {ref}" in err
    _, out, _ = shipyard("container", "run", "--rm", ref, "echo", "pulled back")
    assert out == "pulled back\n"
    _, _, err = shipyard("image", "pull", ref)
    assert "Status: Image is up to date" in err

    # A build whose base is only in the registry pulls it.
    shipyard("image", "rm", ref)
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(f"FROM {ref}\nRUN echo built > /built\n")
    shipyard("image", "build", "--network", "none", "-t", "derived", str(ctx))
    _, out, _ = shipyard("container", "run", "--rm", "derived", "cat", "/built")
    assert out == "built\n"


def test_pull_of_a_missing_image_is_one_clear_line(shipyard: Shipyard,
                                                   registry: reg.LocalRegistry) -> None:
    code, _, err = shipyard("image", "pull", f"{registry.address}/nope/nothing:1", ok=False)
    assert code != 0 and "Traceback" not in err
    assert "nope/nothing" in err.strip().splitlines()[-1]
    code, _, err = shipyard("image", "push", f"{registry.address}/not/here:1", ok=False)
    assert code != 0 and "No such image" in err


def test_login_push_private_logout(shipyard: Shipyard, registry: reg.LocalRegistry,
                                   tmp_path: Path) -> None:
    tokens = reg.TokenService(users={"alice": "s3cret"},
                              grants={("alice", "private/app"): ("pull", "push")})
    proxy = reg.AuthProxy(registry.address, tokens)
    try:
        ref = f"{proxy.address}/private/app:v1"
        shipyard("image", "tag", "busybox", ref)
        code, _, err = shipyard("image", "push", ref, ok=False)
        assert code != 0 and "login" in err and "Traceback" not in err

        code, _, err = shipyard("login", "-u", "alice", "--password-stdin", proxy.address,
                                stdin="wrong\n", ok=False)
        assert code != 0 and "refused" in err
        _, out, _ = shipyard("login", "-u", "alice", "--password-stdin", proxy.address,
                             stdin="s3cret\n")
        assert out.strip() == "Login Succeeded"
        saved = json.loads((tmp_path / "docker" / "config.json").read_text())
        assert proxy.address in saved["auths"]

        _, _, err = shipyard("image", "push", ref)
        assert "v1: digest: sha256:" in err
        assert reg.skopeo_inspect(f"docker://{registry.address}/private/app:v1",
                                  raw=True)["layers"]

        _, out, _ = shipyard("logout", proxy.address)
        assert out.strip() == f"Removing login credentials for {proxy.address}"
        saved = json.loads((tmp_path / "docker" / "config.json").read_text())
        assert proxy.address not in saved.get("auths", {})
        _, out, _ = shipyard("logout", proxy.address)
        assert out.strip() == f"Not logged in to {proxy.address}"
    finally:
        proxy.close()
        tokens.close()
