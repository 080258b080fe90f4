"""`shipyard image build` end to end on the real kernel: multi-stage builds with COPY --from,
the cache (hits, a miss after a change, same image id), whiteouts, .dockerignore, USER and
WORKDIR in the running image, ADD archives, build args and targets, the default bridge for
RUN, a failing RUN and Dockerfile errors with file:line. Base image: busybox, imported."""

from __future__ import annotations

import glob
import io
import json
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from engine import buildrun
from tests.support import busybox, leaks
from tests.support.cli import Shipyard as _Runner

pytestmark = pytest.mark.skipif(not busybox.available(), reason="busybox-static is missing")


class Shipyard(_Runner):

    def config(self, image: str) -> dict:
        return json.loads(self("image", "inspect", image)[1])[0]


@pytest.fixture
def shipyard(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Shipyard]:
    before = leaks.snapshot()
    sandboxes: list[str] = []
    made = buildrun.Sandbox.__init__

    def record(self: buildrun.Sandbox, *args: object, **kwargs: object) -> None:
        made(self, *args, **kwargs)  # type: ignore[arg-type]
        sandboxes.append(self.id)

    monkeypatch.setattr(buildrun.Sandbox, "__init__", record)
    monkeypatch.setenv("SHIPYARD_ROOT", str(tmp_path / "root"))
    cli = Shipyard()
    cli("image", "import", "-c", 'CMD ["sh"]',
        str(busybox.make_rootfs_tar(tmp_path / "busybox.tar")), "busybox:latest")
    yield cli
    cli.remove_everything()
    assert _own(leaks.diff(before, leaks.snapshot()), tmp_path) == {}
    # The build sandboxes' own cgroups (other suites may make and drop cgroups meanwhile,
    # so the machine-wide cgroup diff is not ours to judge).
    assert [c for s in sandboxes for c in glob.glob(f"/sys/fs/cgroup/*/*/{s}")] == []
    assert not list((tmp_path / "root" / "tmp").iterdir()), "build scratch left behind"


def _own(leaked: dict[str, list], tmp_path: Path) -> dict[str, list]:
    """The leaks this test can have caused: other suites (and other engines) may run on
    this machine meanwhile, so only mounts and processes that name our root count."""
    from engine.layout import Layout

    marks = (str(tmp_path), str(Layout.at(tmp_path / "root").run))
    own = {
        "mounts": [m for m in leaked.get("mounts", []) if m.startswith(marks)],
        "processes": [p for p in leaked.get("processes", []) if any(m in p for m in marks)],
    }
    return {k: v for k, v in own.items() if v}


def _context(tmp_path: Path, dockerfile: str, files: dict[str, str] | None = None) -> Path:
    ctx = tmp_path / "ctx"
    ctx.mkdir(exist_ok=True)
    (ctx / "Dockerfile").write_text(dockerfile)
    for name, text in (files or {}).items():
        (ctx / name).parent.mkdir(parents=True, exist_ok=True)
        (ctx / name).write_text(text)
    return ctx


TWO_STAGE = """\
FROM busybox AS builder
ARG GREETING=hello
WORKDIR /src
COPY greeting.txt ./
RUN cat greeting.txt > /out.txt && echo "$GREETING from the builder" >> /out.txt

FROM busybox
COPY --from=builder /out.txt /app/out.txt
RUN chown -R daemon /app
USER daemon
WORKDIR /app
RUN id -u > /tmp/built-as && pwd >> /tmp/built-as
CMD ["sh", "-c", "cat out.txt; id -u; pwd"]
"""


def test_two_stage_build_runs_and_rebuilds_from_cache(shipyard: Shipyard,
                                                      tmp_path: Path) -> None:
    ctx = _context(tmp_path, TWO_STAGE, {"greeting.txt": "v1\n"})
    _, _, err = shipyard("image", "build", "-t", "app:1", str(ctx))
    assert "[builder 5/5] RUN cat greeting.txt" in err and "Successfully tagged app:1" in err
    _, out, _ = shipyard("container", "run", "--rm", "app:1", "cat", "/app/out.txt",
                         "/tmp/built-as")
    assert out.split("\n")[:4] == ["v1", "hello from the builder", "1", "/app"]
    first = shipyard.config("app:1")
    assert len(first["RootFS"]["Layers"]) == 4  # busybox + COPY --from + 2 RUNs
    config = json.loads(shipyard("image", "inspect", "-f", "{{json .Config}}", "app:1")[1])
    assert config["User"] == "daemon" and config["WorkingDir"] == "/app"
    assert config["Cmd"] == ["sh", "-c", "cat out.txt; id -u; pwd"]

    started = time.monotonic()
    _, _, err = shipyard("image", "build", "-t", "app:1", str(ctx))
    elapsed = time.monotonic() - started
    assert err.count("Using cache") == 7  # WORKDIR, COPY, RUN / COPY --from, RUN, WORKDIR, RUN
    assert shipyard.config("app:1")["Id"] == first["Id"]
    assert elapsed < 1.0, f"an unchanged rebuild took {elapsed:.2f}s"

    (ctx / "greeting.txt").write_text("v2\n")
    _, _, err = shipyard("image", "build", "-t", "app:1", str(ctx))
    assert err.count("Using cache") == 1  # only WORKDIR /src, before the changed COPY
    _, out, _ = shipyard("container", "run", "--rm", "app:1", "cat", "/app/out.txt")
    assert out.split("\n")[:2] == ["v2", "hello from the builder"]

    _, out, _ = shipyard("image", "build", "-q", "--target", "builder", "-t", "stage:b",
                         "--build-arg", "GREETING=hi", str(ctx))
    assert out.strip() == shipyard.config("stage:b")["Id"]
    _, out, _ = shipyard("container", "run", "--rm", "stage:b", "cat", "/out.txt")
    assert out == "v2\nhi from the builder\n"


def test_cmd_user_and_workdir_apply_when_the_image_runs(shipyard: Shipyard,
                                                        tmp_path: Path) -> None:
    ctx = _context(tmp_path, TWO_STAGE, {"greeting.txt": "v1\n"})
    shipyard("image", "build", "--network", "none", "-t", "app:1", str(ctx))
    _, out, _ = shipyard("container", "run", "--rm", "app:1")
    assert out.split("\n")[:4] == ["v1", "hello from the builder", "1", "/app"]


def test_deletions_become_whiteouts_and_dockerignore_applies(shipyard: Shipyard,
                                                             tmp_path: Path) -> None:
    ctx = _context(tmp_path, """\
FROM busybox
RUN mkdir -p /data/cache && echo x > /data/gone && echo y > /data/cache/old
COPY . /ctx/
RUN rm /data/gone /etc/group && rm -rf /data/cache && mkdir /data/cache \\
    && echo new > /data/cache/fresh
""", {"keep.txt": "keep\n", "secret.key": "no\n", "logs/a.log": "no\n",
      "logs/keep.log": "yes\n", ".dockerignore": "*.key\nlogs/*\n!logs/keep.log\n"})
    shipyard("image", "build", "-t", "wh", str(ctx))
    _, out, _ = shipyard("container", "run", "--rm", "wh", "sh", "-c",
                         "ls /data /data/cache; ls -a /ctx /ctx/logs; "
                         "test -e /etc/group || echo no-group")
    listing = out.split()
    assert "gone" not in listing and "old" not in listing and "fresh" in listing
    assert "keep.txt" in listing and "keep.log" in listing and "Dockerfile" in listing
    assert "secret.key" not in listing and "a.log" not in listing
    assert "no-group" in listing


def test_add_archives_chown_chmod_and_default_bridge(shipyard: Shipyard,
                                                     tmp_path: Path) -> None:
    ctx = _context(tmp_path, """\
FROM busybox
ADD bundle.tar.gz /opt/
COPY --chown=daemon:www-data --chmod=700 tool.sh /usr/local/bin/
RUN grep -q eth0 /proc/net/dev && echo "networked" > /opt/net
""", {"tool.sh": "#!/bin/sh\necho tool\n"})
    with tarfile.open(ctx / "bundle.tar.gz", "w:gz") as tar:
        data = b"inside the archive\n"
        info = tarfile.TarInfo("pkg/readme")
        info.size, info.uid, info.mode = len(data), 33, 0o640
        tar.addfile(info, io.BytesIO(data))
    shipyard("image", "build", "-t", "add", str(ctx))
    _, out, _ = shipyard("container", "run", "--rm", "add", "sh", "-c",
                         "cat /opt/pkg/readme /opt/net; stat -c '%u %g %a' "
                         "/opt/pkg/readme /usr/local/bin/tool.sh")
    assert out.split("\n")[:4] == ["inside the archive", "networked", "33 0 640", "1 33 700"]


def test_failing_run_reports_exit_code_and_output(shipyard: Shipyard, tmp_path: Path) -> None:
    ctx = _context(tmp_path, "FROM busybox\nRUN echo about to fail && exit 3\n")
    code, _, err = shipyard("image", "build", "--network", "none", "-t", "bad", str(ctx),
                            ok=False)
    assert code != 0 and "Traceback" not in err
    assert "Dockerfile:2: RUN echo about to fail && exit 3: exit code 3" in err
    assert err.count("about to fail\n") >= 2  # streamed, then quoted in the error
    code, _, _ = shipyard("image", "inspect", "bad", ok=False)
    assert code != 0


def test_dockerfile_errors_name_file_and_line(shipyard: Shipyard, tmp_path: Path) -> None:
    ctx = _context(tmp_path, "FROM busybox\n\n# comment\nRUNN echo\n")
    code, _, err = shipyard("image", "build", str(ctx), ok=False)
    assert code != 0 and err.strip() == 'Dockerfile:4: unknown instruction "RUNN"'
    (ctx / "other.Dockerfile").write_text("FROM busybox\nCOPY missing.txt /\n")
    code, _, err = shipyard("image", "build", "-f", str(ctx / "other.Dockerfile"), str(ctx),
                            ok=False)
    assert code != 0 and "other.Dockerfile:2: COPY" in err and "missing.txt" in err
    (ctx / "Dockerfile").write_text("FROM busybox AS base\n")
    code, _, err = shipyard("image", "build", "--target", "nope", str(ctx), ok=False)
    assert 'target stage "nope" could not be found' in err
