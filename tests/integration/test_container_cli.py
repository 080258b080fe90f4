"""The engine-level CLI end to end, as a user drives it: import busybox, run, ls, logs, exec,
stop, restart policy, healthcheck, networks by name, named volumes, remove, nothing left."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import busybox, leaks
from tests.support.cli import Shipyard as _Runner
from tests.support.cli import wait_for as _wait_for

pytestmark = pytest.mark.skipif(not busybox.available(), reason="busybox-static is missing")


class Shipyard(_Runner):

    def status(self, name: str) -> dict:
        _, out, _ = self("container", "inspect", name)
        return json.loads(out)[0]["State"]




@pytest.fixture
def shipyard(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Shipyard]:
    before = leaks.snapshot()
    root = tmp_path / "root"
    monkeypatch.setenv("SHIPYARD_ROOT", str(root))
    cli = Shipyard(root)
    cli("image", "import", str(busybox.make_rootfs_tar(tmp_path / "busybox.tar")), "busybox")
    yield cli
    from engine import Engine

    engine = Engine(root)
    networks = [n.id for n in engine.networks.list()]
    # The containers this root still has, or still has endpoints for.
    containers = [c.id for c in engine.containers.list()]
    containers += [r["container_id"] for r in engine.store.query(
        "SELECT DISTINCT container_id FROM network_endpoints")]
    for container in containers:
        cli("container", "rm", "-f", "-v", container, ok=False)
    for network in networks:
        cli("network", "rm", network, ok=False)
    assert _ours(leaks.diff(before, leaks.snapshot()), root, containers, networks) == {}


def _ours(leaked: dict[str, list], root: Path, containers: list[str],
          networks: list[str]) -> dict[str, list]:
    """The part of a leak diff this test's engine root could have made: other suites run on
    this machine at the same time, and their mounts, links and processes are not ours."""
    from engine.layout import Layout
    from engine.netdevs import bridge_name, veth_name

    marks = [str(root), str(Layout.at(root).run), *(c[:32] for c in containers),
             *(bridge_name(n) for n in networks),
             *(veth_name(n, c) for n in networks for c in containers)]
    mine = {key: [item for item in items if any(m in str(item) for m in marks)]
            for key, items in leaked.items()}
    return {key: items for key, items in mine.items() if items}


def test_run_detached_logs_exec_stop_rm(shipyard: Shipyard) -> None:
    _, out, _ = shipyard("container", "run", "-d", "--name", "web", "-e", "GREETING=hello",
                         "busybox", "sh", "-c",
                         'trap "echo bye; exit 0" TERM; echo $GREETING; '
                         "while true; do sleep 0.1; done")
    assert len(out.strip()) == 64
    _, out, _ = shipyard("container", "ls")
    assert "web" in out and "Up " in out
    _wait_for(lambda: "hello" in shipyard("container", "logs", "web")[1])
    code, out, _ = shipyard.process("container", "exec", "web", "sh", "-c",
                                    "echo $GREETING; hostname")
    assert code == 0 and out.split()[0] == "hello" and len(out.split()) == 2
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
    health = shipyard.status("probe")["Health"]
    assert health["Status"] == "starting"  # Docker's shape: Status, FailingStreak, Log
    _wait_for(lambda: shipyard.status("probe")["Health"]["Status"] == "healthy")
    health = shipyard.status("probe")["Health"]
    assert health["FailingStreak"] == 0
    assert health["Log"] and set(health["Log"][-1]) == {"Start", "End", "ExitCode", "Output"}
    assert health["Log"][-1]["ExitCode"] == 0


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


def test_ls_ps_and_inspect_show_the_command_from_the_image(shipyard: Shipyard,
                                                           tmp_path: Path) -> None:
    """With no command given, the effective one is the image's Entrypoint + Cmd, cut as
    Docker cuts it."""
    shipyard("image", "import", "-c", 'ENTRYPOINT ["/bin/sh", "-c"]',
             "-c", 'CMD ["trap \'exit 0\' TERM; while true; do sleep 0.1; done"]',
             str(busybox.make_rootfs_tar(tmp_path / "ep.tar")), "looper")
    full = "/bin/sh -c trap 'exit 0' TERM; while true; do sleep 0.1; done"
    shipyard("container", "create", "--name", "fromimage", "looper")
    _, out, _ = shipyard("container", "ls", "-a")
    assert '"/bin/sh -c trap \'ex…"' in out
    _, out, _ = shipyard("container", "ls", "-a", "--no-trunc")
    assert f'"{full}"' in out
    _, out, _ = shipyard("container", "ls", "-a", "--format", "json")
    assert json.loads(out)["Command"] == full
    _, out, _ = shipyard("container", "inspect", "fromimage")
    assert json.loads(out)[0]["Path"] == "/bin/sh"
    assert json.loads(out)[0]["Args"] == ["-c", full.removeprefix("/bin/sh -c ")]
    # A given cmd keeps the image's entrypoint; a given entrypoint drops the image's Cmd.
    shipyard("container", "create", "--name", "withcmd", "looper", "echo hi")
    shipyard("container", "create", "--name", "withep", "--entrypoint", "/bin/true", "looper")
    _, out, _ = shipyard("container", "ls", "-a", "--no-trunc")
    assert '"/bin/sh -c echo hi"' in out and '"/bin/true"' in out
    shipyard("container", "rm", "fromimage", "withcmd", "withep")

    compose = tmp_path / "app" / "compose.yaml"
    compose.parent.mkdir()
    compose.write_text("services:\n  loop:\n    image: looper\n")
    shipyard("-f", str(compose), "up", "-d")
    try:
        _, out, _ = shipyard("-f", str(compose), "ps")
        line = out.splitlines()[1]
        assert line.split()[0] == "app-loop-1"
        assert '"/bin/sh -c trap \'ex…"' in line
        _, out, _ = shipyard("-f", str(compose), "ps", "--no-trunc")
        assert f'"{full}"' in out
        _, out, _ = shipyard("-f", str(compose), "ps", "--format", "json")
        assert json.loads(out)["Command"] == f'"{full}"'
    finally:
        shipyard("-f", str(compose), "down")


def test_network_modes_container_none_and_host(shipyard: Shipyard) -> None:
    shipyard("network", "create", "modes")
    shipyard("container", "run", "-d", "--name", "srv", "--network", "modes", "busybox", "sh",
             "-c", "mkdir -p /w && echo shared-netns > /w/i && httpd -f -p 8081 -h /w")
    # container:NAME joins srv's network namespace: srv's port is on its localhost
    _wait_for(lambda: shipyard("container", "run", "--rm", "--network", "container:srv",
                               "busybox", "wget", "-q", "-O", "-", "http://127.0.0.1:8081/i",
                               ok=False)[1].strip() == "shared-netns")
    # none: only a loopback interface
    _, out, _ = shipyard("container", "run", "--rm", "--network", "none", "busybox", "ls",
                         "/sys/class/net")
    assert out.split() == ["lo"]
    # host: the host's interfaces, the bridge among them
    _, out, _ = shipyard("container", "run", "--rm", "--network", "host", "busybox", "ls",
                         "/sys/class/net")
    assert any(name.startswith("sy-") for name in out.split())
