"""`build:` in `shipyard up`, and `shipyard build`, end to end: a service built FROM an
imported busybox with a COPY'd script as its CMD is built and started by `up -d`; a second
`up -d` does nothing (same image, same container); `up -d --build` with nothing changed
rebuilds from cache to the same image id and keeps the container; a changed context file
rebuilds and recreates; `shipyard build` alone makes a new image that the next `up`
recreates for ("image changed"); `--no-build` with the image gone is one clear error. The
build section's options (inline Dockerfile, args, target, labels, tags, network) reach the
builder, and `--build-arg` overrides."""

from __future__ import annotations

import json
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.test_up_down import Shipyard
from tests.support import busybox, leaks

pytestmark = pytest.mark.skipif(not busybox.available(), reason="busybox-static is missing")

STACK = """
services:
  app:
    build:
      context: ./app
"""

DOCKERFILE = """
FROM busybox
COPY run.sh /run.sh
CMD ["sh", "/run.sh"]
"""

# Ends at once on TERM, so stops take no grace period.
SCRIPT = 'trap "exit 0" TERM; echo "app {}"; while true; do sleep 0.1; done\n'


@pytest.fixture
def shipyard(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Shipyard]:
    before = leaks.snapshot()
    root = tmp_path / "root"
    project = tmp_path / "blog"
    (project / "app").mkdir(parents=True)
    (project / "app" / "Dockerfile").write_text(DOCKERFILE.lstrip())
    (project / "app" / "run.sh").write_text(SCRIPT.format("v1"))
    monkeypatch.setenv("SHIPYARD_ROOT", str(root))
    cli = Shipyard(root, project)
    cli("image", "import", str(busybox.make_rootfs_tar(tmp_path / "busybox.tar")), "busybox")
    yield cli
    cli.tear_down(before)


def image_id(shipyard: Shipyard, ref: str) -> str:
    _, out, _ = shipyard("image", "inspect", ref)
    return json.loads(out)[0]["Id"]


def logs(shipyard: Shipyard) -> str:
    _, out, _ = shipyard("logs", "--no-log-prefix", "app")
    return out


def wait_for_log(shipyard: Shipyard, text: str) -> None:
    import time

    deadline = time.monotonic() + 10
    while text not in logs(shipyard):
        assert time.monotonic() < deadline, f"{text!r} never logged: {logs(shipyard)!r}"
        time.sleep(0.05)


def test_up_builds_runs_caches_and_rebuilds(shipyard: Shipyard) -> None:
    shipyard.write(textwrap.dedent(STACK))
    _, _, err = shipyard("up", "-d")
    assert "✔ Service app  Built" in err
    assert "[app 2/3] COPY run.sh /run.sh" in err      # step lines in plain mode
    first = shipyard.inspect()["blog-app-1"]
    assert first["State"]["Status"] == "running"
    built = image_id(shipyard, "blog-app")
    assert first["Image"] == built
    labels = json.loads(shipyard("image", "inspect", "blog-app")[1])[0]["Config"]["Labels"]
    assert labels["com.docker.compose.project"] == "blog"
    assert labels["com.docker.compose.service"] == "app"
    wait_for_log(shipyard, "app v1")

    # Nothing changed: nothing to do, not even a build.
    _, _, err = shipyard("up", "-d")
    assert "everything is up to date" in err and "Built" not in err
    assert shipyard.inspect()["blog-app-1"]["Id"] == first["Id"]

    # --build with an unchanged context: a cached build, the same image, the same container.
    _, plan, _ = shipyard("up", "-d", "--build", "--dry-run")
    assert plan.splitlines()[0] == "image build blog-app (--build)"
    assert "container refresh blog-app-1 (recreated if the image changed)  <- " \
           "image build blog-app" in plan
    _, _, err = shipyard("up", "-d", "--build")
    assert "✔ Service app  Built" in err and "✔ Container blog-app-1  Running" in err
    assert "Recreated" not in err
    assert image_id(shipyard, "blog-app") == built
    assert shipyard.inspect()["blog-app-1"]["Id"] == first["Id"]

    # A changed context file: rebuilt to a new image, and the container recreated from it.
    (shipyard.project / "app" / "run.sh").write_text(SCRIPT.format("v2"))
    _, _, err = shipyard("up", "-d", "--build")
    assert "✔ Container blog-app-1  Recreated" in err and "✔ Container blog-app-1  Started" \
        in err
    second = shipyard.inspect()["blog-app-1"]
    rebuilt = image_id(shipyard, "blog-app")
    assert rebuilt != built and second["Image"] == rebuilt and second["Id"] != first["Id"]
    assert second["State"]["Status"] == "running"
    wait_for_log(shipyard, "app v2")

    # `shipyard build` alone: a new image, which the next `up` sees as a change.
    (shipyard.project / "app" / "run.sh").write_text(SCRIPT.format("v3"))
    _, out, err = shipyard("build")
    assert out == "" and "✔ Service app  Built" in err
    assert image_id(shipyard, "blog-app") != rebuilt
    assert shipyard.inspect()["blog-app-1"]["Id"] == second["Id"]  # build runs nothing
    _, plan, _ = shipyard("up", "-d", "--dry-run")
    assert plan.splitlines()[0] == "container recreate blog-app-1 (image changed)"
    shipyard("up", "-d")
    wait_for_log(shipyard, "app v3")
    _, out, err = shipyard("build", "-q", "app")
    assert out == "" and err == ""

    # --no-build with the image gone: one clear error, and nothing made.
    shipyard("down", "-t", "0", "--rmi", "local")
    with pytest.raises(AssertionError):
        image_id(shipyard, "blog-app")
    code, _, err = shipyard("up", "-d", "--no-build", ok=False)
    assert code != 0 and "Traceback" not in err
    assert err.strip() == ('service "app": image "blog-app" is not present and --no-build '
                           "was given (build it first: shipyard build app)")
    assert shipyard.inspect() == {}


def test_build_section_options_reach_the_builder(shipyard: Shipyard) -> None:
    shipyard.write(textwrap.dedent("""
        services:
          tool:
            image: blog/tool:dev
            command: ["cat", "/greeting"]
            build:
              context: ./app
              dockerfile_inline: |
                FROM busybox AS base
                ARG GREETING=none
                RUN echo "$$GREETING" > /greeting
                FROM base AS final
                RUN echo never > /greeting
              args: {GREETING: hello, UNSET: null}
              target: base
              labels: {org.example.kind: tool}
              tags: [blog/tool:extra]
              network: none
        """))
    _, _, err = shipyard("build", "tool")
    assert "✔ Service tool  Built" in err
    assert "[tool base 1/3] FROM busybox AS base" in err
    assert "final" not in err          # the target's stage only
    _, out, _ = shipyard("container", "run", "--rm", "blog/tool:dev", "cat", "/greeting")
    assert out == "hello\n"
    assert image_id(shipyard, "blog/tool:extra") == image_id(shipyard, "blog/tool:dev")
    doc = json.loads(shipyard("image", "inspect", "blog/tool:dev")[1])[0]
    assert doc["Config"]["Labels"]["org.example.kind"] == "tool"

    # --build-arg wins over build.args; --no-cache runs every step again.
    shipyard("build", "--no-cache", "--build-arg", "GREETING=override")
    _, out, _ = shipyard("container", "run", "--rm", "blog/tool:dev", "cat", "/greeting")
    assert out == "override\n"

    code, _, err = shipyard("build", "nope", ok=False)
    assert code != 0 and err.strip() == 'no such service: "nope"'
