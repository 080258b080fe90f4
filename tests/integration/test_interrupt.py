"""Ctrl-C (SIGINT) during `shipyard up -d`: it stops waiting at once, lets the steps that
run finish, exits 130, and `down` then leaves nothing behind."""

from __future__ import annotations

import os
import signal
import subprocess
import textwrap
import time
from pathlib import Path

import pytest

from tests.integration.test_kill_anywhere import LOOP, Cli
from tests.support import busybox, leaks

pytestmark = [
    pytest.mark.skipif(not busybox.available(), reason="busybox-static is missing"),
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (containers)"),
]

# db never becomes healthy (its probe fails for a minute), so `up` waits for it.
STACK = textwrap.dedent(f"""
    services:
      db:
        image: busybox
        command: ["sh", "-c", '{LOOP}']
        healthcheck: {{test: ["CMD", "false"], interval: 100ms, retries: 600}}
      web:
        image: busybox
        command: ["sh", "-c", '{LOOP}']
        depends_on: {{db: {{condition: service_healthy}}}}
    """)


def test_ctrl_c_stops_waiting_and_exits_130(tmp_path: Path) -> None:
    before = leaks.snapshot()
    project = tmp_path / "intr"
    project.mkdir()
    (project / "compose.yaml").write_text(STACK)
    cli = Cli(tmp_path / "root", project)
    cli.run("image", "import", str(busybox.make_rootfs_tar(tmp_path / "busybox.tar")), "busybox")
    try:
        proc = subprocess.Popen(cli.command("up", "-d"), env=cli.env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True,
                                cwd=Path(__file__).parents[2])
        deadline = time.monotonic() + 30
        while cli.states().get("intr-db-1") != "running":  # up is waiting for db now
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "db did not start"
            time.sleep(0.05)
        cli.ids.record()
        time.sleep(0.3)
        proc.send_signal(signal.SIGINT)
        sent = time.monotonic()
        _, err = proc.communicate(timeout=10)
        assert proc.returncode == 130, err
        assert time.monotonic() - sent < 2.0, "up did not stop waiting promptly"
        assert "Traceback" not in err
        # the wait that Ctrl-C ended is no failure (no "Error", no "did not become healthy")
        assert "Interrupted" in err and "Error" not in err and "did not become" not in err, err
        # web was created (as Compose does, up front) but never started: db is not healthy
        assert cli.states() == {"intr-db-1": "running", "intr-web-1": "created"}
    finally:
        subprocess.run(cli.command("down", "-v", "-t", "0"), env=cli.env, capture_output=True,
                       cwd=Path(__file__).parents[2])
    assert cli.leftovers() == {}
    assert cli.ids.owned(leaks.diff(before, leaks.snapshot())) == {}

