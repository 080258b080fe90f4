"""SIGKILL `shipyard up -d` (and `down`) at many points of its run: the next `up -d` must
converge (every service running, once), and `down` must then leave nothing behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.test_up_down import Ids
from tests.support import busybox, leaks

pytestmark = pytest.mark.skipif(not busybox.available(), reason="busybox-static is missing")

LOOP = 'trap "exit 0" TERM; while true; do sleep 0.1; done'
STACK = textwrap.dedent(f"""
    services:
      db:
        image: busybox
        command: ["sh", "-c", 'touch /tmp/ready; {LOOP}']
        healthcheck: {{test: ["CMD", "test", "-f", "/tmp/ready"], interval: 100ms}}
        volumes: [data:/data, /scratch]
      web:
        image: busybox
        command: ["sh", "-c", '{LOOP}']
        depends_on: {{db: {{condition: service_healthy}}}}
        networks: [default, back]
      worker:
        image: busybox
        command: ["sh", "-c", '{LOOP}']
        depends_on: [web]
    networks:
      back: {{}}
    volumes:
      data: {{}}
    """)
POINTS = 10


class Cli:
    def __init__(self, root: Path, project: Path) -> None:
        self.root = root
        self.project = project
        self.env = {**os.environ, "SHIPYARD_ROOT": str(root)}
        self.ids = Ids(root)

    def command(self, *argv: str) -> list[str]:
        return [sys.executable, "-m", "compose.cli", "-f", str(self.project / "compose.yaml"),
                *argv]

    def run(self, *argv: str) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(self.command(*argv), env=self.env, capture_output=True,
                              text=True, cwd=Path(__file__).parents[2], timeout=120)
        self.ids.record()
        assert done.returncode == 0, f"{' '.join(argv)}: {done.stderr}"
        return done

    def kill_after(self, delay: float, *argv: str) -> None:
        proc = subprocess.Popen(self.command(*argv), env=self.env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, cwd=Path(__file__).parents[2])
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        self.ids.record()

    def states(self) -> dict[str, str]:
        from engine import Engine

        engine = Engine(self.root)
        try:
            return {c.name: engine.containers.state(c).status
                    for c in engine.containers.list()}
        finally:
            engine.store.close()

    def leftovers(self) -> dict[str, list]:
        from engine import Engine

        engine = Engine(self.root)
        try:
            return {kind: names for kind, names in (
                ("containers", [c.name for c in engine.containers.list()]),
                ("networks", [n.name for n in engine.networks.list()]),
                ("volumes", [v.name for v in engine.volumes.list()])) if names}
        finally:
            engine.store.close()


@pytest.fixture
def cli(tmp_path: Path) -> Iterator[Cli]:
    before = leaks.snapshot()
    project = tmp_path / "kill"
    project.mkdir()
    (project / "compose.yaml").write_text(STACK)
    c = Cli(tmp_path / "root", project)
    c.run("image", "import", str(busybox.make_rootfs_tar(tmp_path / "busybox.tar")), "busybox")
    yield c
    subprocess.run(c.command("down", "-v", "-t", "0", "--remove-orphans"), env=c.env,
                   capture_output=True, cwd=Path(__file__).parents[2])
    assert c.ids.owned(leaks.diff(before, leaks.snapshot())) == {}


def _duration(cli: Cli, *argv: str) -> float:
    started = time.monotonic()
    cli.run(*argv)
    return time.monotonic() - started


def test_killing_up_anywhere_converges(cli: Cli) -> None:
    full = _duration(cli, "up", "-d")
    _duration(cli, "down", "-v", "-t", "0")
    for point in range(POINTS):
        # from just after the interpreter starts to just before the command would finish
        cli.kill_after(0.05 + full * point / POINTS, "up", "-d")
        cli.run("up", "-d")
        assert cli.states() == {"kill-db-1": "running", "kill-web-1": "running",
                                "kill-worker-1": "running"}, f"kill point {point}"
        assert "everything is up to date" in cli.run("up", "-d").stderr
        cli.run("down", "-v", "-t", "0")
        assert cli.leftovers() == {}, f"kill point {point}"


def test_killing_down_anywhere_converges(cli: Cli) -> None:
    cli.run("up", "-d")
    full = _duration(cli, "down", "-v", "-t", "0")
    for point in range(POINTS):
        cli.run("up", "-d")
        cli.kill_after(0.05 + full * point / POINTS, "down", "-v", "-t", "0")
        cli.run("down", "-v", "-t", "0")
        assert cli.leftovers() == {}, f"kill point {point}"


def test_killing_down_with_a_forked_helper_anywhere_converges(cli: Cli) -> None:
    # Enough services for `down` to fork a helper (compose/helpers.py): killed, the CLI
    # leaves its helper finishing the removals it had, holding the project lock it
    # inherited; the next `down` waits for it and converges.
    from compose import helpers

    (cli.project / "compose.yaml").write_text("services:\n" + "".join(
        f"  s{i}:\n    image: busybox\n    command: [\"sh\", \"-c\", '{LOOP}']\n"
        for i in range(helpers.MIN_REMOVALS + 2)))
    cli.run("up", "-d")
    full = _duration(cli, "down", "-t", "0")
    for point in range(POINTS):
        cli.run("up", "-d")
        cli.kill_after(0.05 + full * point / POINTS, "down", "-t", "0")
        cli.run("down", "-t", "0")
        assert cli.leftovers() == {}, f"kill point {point}"
