"""Image pulls in `shipyard up`, against a real `docker-registry` on 127.0.0.1: busybox is
pushed there and removed locally; `up -d` of a stack naming `127.0.0.1:PORT/busybox:latest`
pulls it, showing each layer's progress, and starts it; the next `up -d` does nothing;
`--pull always` pulls again but keeps the container (same image id); quiet pulls show no
layers; `pull_policy: never` with the image missing and an image the registry lacks are
each one clear error."""

from __future__ import annotations

import io
import re
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.test_up_down import LOOP, Shipyard
from tests.support import busybox, leaks
from tests.support import registry as reg

pytestmark = pytest.mark.skipif(
    not (reg.available() and busybox.available()),
    reason="needs docker-registry, skopeo and busybox-static (the test command installs them)")


@pytest.fixture
def shipyard(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
             registry: reg.LocalRegistry) -> Iterator[Shipyard]:
    """An engine root whose busybox is only in the registry, as `<registry>/busybox`."""
    before = leaks.snapshot()
    root = tmp_path / "root"
    project = tmp_path / "blog"
    project.mkdir()
    monkeypatch.setenv("SHIPYARD_ROOT", str(root))
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "docker"))
    cli = Shipyard(root, project)
    ref = f"{registry.address}/busybox:latest"
    cli("image", "import", str(busybox.make_rootfs_tar(tmp_path / "busybox.tar")), ref)
    cli("image", "push", ref)
    cli("image", "rm", ref)
    assert cli("image", "ls", "-q")[1].strip() == ""
    yield cli
    cli.tear_down(before)


def stack(image: str, extra: str = "") -> str:
    return textwrap.dedent(f"""
        services:
          web:
            image: {image}
            command: ["sh", "-c", '{LOOP.format("echo up")}']
        """) + extra


def test_up_pulls_a_missing_image_with_layer_progress(shipyard: Shipyard,
                                                      registry: reg.LocalRegistry) -> None:
    ref = f"{registry.address}/busybox:latest"
    shipyard.write(stack(ref))
    _, plan, _ = shipyard("up", "-d", "--dry-run")
    assert f"image pull {ref} (missing)\n" in plan
    _, _, err = shipyard("up", "-d")
    assert f"✔ Image {ref}  Pulled" in err
    layers = re.findall(r"✔ Layer ([0-9a-f]{12})  Pull complete", err)
    assert len(layers) == 1, err
    assert err.index("Pull complete") < err.index(f"Image {ref}  Pulled") \
        < err.index("Container blog-web-1  Created")
    first = shipyard.inspect()["blog-web-1"]
    assert first["State"]["Status"] == "running"
    _, out, _ = shipyard("image", "ls", "--format", "{{.Repository}}:{{.Tag}}")
    assert out.split() == [ref]

    _, _, err = shipyard("up", "-d")
    assert "everything is up to date" in err and "Pull" not in err

    # --pull always asks the registry again; the same image keeps the same container.
    _, _, err = shipyard("up", "-d", "--pull", "always")
    assert f"✔ Image {ref}  Pulled" in err
    assert f"✔ Layer {layers[0]}  Already exists" in err
    assert "✔ Container blog-web-1  Running" in err and "Recreated" not in err
    assert shipyard.inspect()["blog-web-1"]["Id"] == first["Id"]


def test_quiet_pull_shows_no_layers(shipyard: Shipyard, registry: reg.LocalRegistry) -> None:
    """The executor's `quiet_pull` (what `up --quiet-pull` asks for): the image's own line
    only."""
    from compose import execute, reconcile
    from compose.cli import Context, load_options
    from compose.loader import load
    from compose.observe import observe
    from compose.progress import Progress

    ref = f"{registry.address}/busybox:latest"
    shipyard.write(stack(ref))
    ctx = Context(environ={"SHIPYARD_ROOT": str(shipyard.root)}, cwd=str(shipyard.project))
    import argparse

    project = load(load_options(argparse.Namespace(), ctx))
    engine = ctx.engine()
    plan = reconcile.up(project, observe(engine, project.name, images=[ref]))
    shown = io.StringIO()
    outcome = execute.run(engine, project, plan, Progress(shown, "plain"),
                          execute.Settings(quiet_pull=True, timeout=0))
    shipyard.ids.record()
    assert outcome.ok, outcome.failed
    assert f"✔ Image {ref}  Pulled" in shown.getvalue()
    assert "Layer" not in shown.getvalue()
    engine.store.close()


def test_pull_failures_are_one_clear_line(shipyard: Shipyard,
                                          registry: reg.LocalRegistry) -> None:
    missing = f"{registry.address}/nope/nothing:1"
    shipyard.write(stack(missing, ""))
    code, _, err = shipyard("up", "-d", ok=False)
    assert code != 0 and "Traceback" not in err
    assert f'image pull {missing}: image "{missing}" not found in {registry.address} ' \
           "(404 from the registry)\n" in err
    assert f"not started because image pull {missing} failed: blog-web-1" in err
    assert "✘ Image" in err
    assert shipyard.inspect() == {}

    shipyard.write(stack(missing).replace("command:", "pull_policy: never\n    command:"))
    code, _, err = shipyard("up", "-d", ok=False)
    assert code != 0
    assert err.strip() == (f'service "web": image "{missing}" is not present and '
                           "pull_policy is never (pull or build it first)")
