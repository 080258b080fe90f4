"""The engine-level CLI end to end, as a user drives it: import busybox, run, ls, logs, exec,
stop, restart policy, healthcheck, networks by name, named volumes, remove, nothing left."""

from __future__ import annotations

import io
import json
import time
from collections.abc import Iterator
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import pytest

from compose.cli import main
from tests.support import busybox, leaks

pytestmark = pytest.mark.skipif(not busybox.available(), reason="busybox-static is missing")


class Shipyard:
    def __init__(self, root: Path) -> None:
        self.root = root

    def __call__(self, *argv: str, ok: bool = True) -> tuple[int, str, str]:
        out, err = io.StringIO(), io.StringIO()
        with redirect_stdout(out), redirect_stderr(err):
            code = main(list(argv))
        if ok:
            assert code == 0, f"shipyard {' '.join(argv)} -> {code}: {err.getvalue()}"
        return code, out.getvalue(), err.getvalue()

    def status(self, name: str) -> dict:
        _, out, _ = self("container", "inspect", name)
        return json.loads(out)[0]["State"]


def _wait_for(predicate, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


@pytest.fixture
def shipyard(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Shipyard]:
    before = leaks.snapshot()
    root = tmp_path / "root"
    monkeypatch.setenv("SHIPYARD_ROOT", str(root))
    cli = Shipyard(root)
    cli("image", "import", str(busybox.make_rootfs_tar(tmp_path / "busybox.tar")), "busybox")
    yield cli
    _, out, _ = cli("container", "ls", "-a", "-q", "--no-trunc")
    for container in out.split():
        cli("container", "rm", "-f", "-v", container)
    _, out, _ = cli("network", "ls", "-q")
    for network in out.split():
        cli("network", "rm", network, ok=False)
    assert leaks.diff(before, leaks.snapshot()) == {}


def test_run_detached_logs_exec_stop_rm(shipyard: Shipyard) -> None:
    _, out, _ = shipyard("container", "run", "-d", "--name", "web", "-e", "GREETING=hello",
                         "busybox", "sh", "-c",
                         'trap "echo bye; exit 0" TERM; echo $GREETING; '
                         "while true; do sleep 0.1; done")
    assert len(out.strip()) == 64
    _, out, _ = shipyard("container", "ls")
    assert "web" in out and "Up " in out
    _wait_for(lambda: "hello" in shipyard("container", "logs", "web")[1])
    _, out, _ = shipyard("container", "exec", "web", "sh", "-c", "echo $GREETING; hostname")
    code, _, _ = shipyard("container", "exec", "web", "sh", "-c", "exit 7", ok=False)
    assert code == 7
    started = time.monotonic()
    shipyard("container", "stop", "-t", "5", "web")
    assert time.monotonic() - started < 4, "the TERM trap should end it well within the grace"
    state = shipyard.status("web")
    assert (state["Status"], state["ExitCode"]) == ("exited", 0)
    assert "bye" in shipyard("container", "logs", "web")[1]
    shipyard("container", "rm", "web")
    _, out, _ = shipyard("container", "ls", "-a")
    assert "web" not in out


def test_exec_failure_is_one_clear_message(shipyard: Shipyard) -> None:
    code, _, err = shipyard("container", "run", "-d", "busybox", "/nope", ok=False)
    assert code != 0
    assert "/nope" in err and "Traceback" not in err
    _, out, _ = shipyard("container", "ls", "-a", "-q")
    assert out.strip() == ""  # a failed run leaves no container behind


def test_restart_on_failure_and_healthcheck(shipyard: Shipyard) -> None:
    shipyard("container", "run", "-d", "--name", "flaky", "--restart", "on-failure:2",
             "busybox", "sh", "-c", "echo attempt; exit 3")
    _wait_for(lambda: shipyard.status("flaky")["Status"] == "exited", timeout=15)
    assert shipyard("container", "logs", "flaky")[1].count("attempt") == 3
    assert shipyard.status("flaky")["ExitCode"] == 3
    shipyard("container", "run", "-d", "--name", "probe", "--health-cmd", "test -f /tmp/ok",
             "--health-interval", "200ms", "--health-retries", "50", "busybox", "sh", "-c",
             "sleep 0.5; touch /tmp/ok; sleep 60")
    assert shipyard.status("probe")["Health"]["status"] == "starting"
    _wait_for(lambda: shipyard.status("probe")["Health"]["status"] == "healthy")


def test_services_reach_each_other_by_name_and_volumes_keep_data(shipyard: Shipyard) -> None:
    shipyard("network", "create", "appnet")
    shipyard("container", "run", "-d", "--name", "www", "--network", "appnet",
             "--network-alias", "site", "-v", "content:/www", "busybox", "sh", "-c",
             "echo served-by-name > /www/index.html; httpd -f -p 80 -h /www")
    for name in ("www", "site"):
        _wait_for(lambda n=name: shipyard(
            "container", "run", "--rm", "--network", "appnet", "busybox", "wget", "-q",
            "-O", "-", f"http://{n}/", ok=False)[0] == 0)
    _, out, _ = shipyard("container", "run", "--rm", "--network", "appnet", "busybox",
                         "wget", "-q", "-O", "-", "http://www/")
    assert out.strip() == "served-by-name"
    shipyard("container", "rm", "-f", "www")
    # the named volume outlives its container and is there for the next one
    _, out, _ = shipyard("container", "run", "--rm", "-v", "content:/data", "busybox", "cat",
                         "/data/index.html")
    assert out.strip() == "served-by-name"
    shipyard("volume", "rm", "content")
