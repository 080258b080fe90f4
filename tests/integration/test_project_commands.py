"""The project commands around `up`/`down`, end to end through the CLI on a busybox stack:
ps, logs, exec, run, stop/start/restart, kill, pause/unpause, rm, top, port, images, ls,
wait, events. The stack is brought up with `up -d`."""

from __future__ import annotations

import io
import json
import threading
import time
from collections.abc import Iterator
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import pytest

from compose.cli import main
from tests.support import busybox, leaks, registry

pytestmark = pytest.mark.skipif(not busybox.available(), reason="busybox-static is missing")

LOOP = "trap 'exit 0' TERM; while true; do sleep 0.1; done"
COMPOSE = f"""
name: demo
services:
  db:
    image: busybox
    command: ["sh", "-c", "echo db ready; {LOOP}"]
  web:
    image: busybox
    depends_on: [db]
    scale: 2
    environment:
      GREETING: hello
    ports: ["127.0.0.1:18080-18081:80"]
    command: ["sh", "-c", "echo web says $$GREETING; echo oops >&2; {LOOP}"]
  job:
    image: busybox
    depends_on: [db]
    command: ["sh", "-c", "echo job done; exit 3"]
"""


class Shipyard:
    def __init__(self, root: Path, compose_file: Path) -> None:
        self.root = root
        self.file = compose_file

    def __call__(self, *argv: str, ok: bool = True, project: bool = True
                 ) -> tuple[int, str, str]:
        out, err = io.StringIO(), io.StringIO()
        full = ["-f", str(self.file), *argv] if project else list(argv)
        with redirect_stdout(out), redirect_stderr(err):
            code = main(full)
        if ok:
            assert code == 0, f"shipyard {' '.join(full)} -> {code}: {err.getvalue()}"
        return code, out.getvalue(), err.getvalue()

    def up(self, *services: str) -> None:
        self("up", "-d", *services)

    def states(self) -> dict[str, str]:
        _, out, _ = self("ps", "-a", "--format", "json")
        return {row["Name"]: row["State"] for row in map(json.loads, out.splitlines())}


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
    monkeypatch.delenv("COMPOSE_PROJECT_NAME", raising=False)
    compose_file = tmp_path / "app" / "compose.yaml"
    compose_file.parent.mkdir()
    compose_file.write_text(COMPOSE)
    cli = Shipyard(root, compose_file)
    cli("image", "import", str(busybox.make_rootfs_tar(tmp_path / "busybox.tar")), "busybox",
        project=False)
    yield cli
    _, out, _ = cli("container", "ls", "-a", "-q", "--no-trunc", project=False)
    containers = out.split()
    for container in containers:
        cli("container", "rm", "-f", "-v", container, project=False)
    from engine import Engine

    networks = [n.id for n in Engine(root).networks.list()]
    for network in networks:
        cli("network", "rm", network, ok=False, project=False)
    assert _ours(leaks.diff(before, leaks.snapshot()), root, containers, networks) == {}
    # The engine's per-root run directory (locks, resolver records) lives outside the root.
    import shutil

    from engine.layout import Layout

    shutil.rmtree(Layout.at(root).run, ignore_errors=True)


def _ours(leaked: dict[str, list], root: Path, containers: list[str],
          networks: list[str]) -> dict[str, list]:
    """The part of a leak diff this test's engine root could have made. Other engineers'
    suites and benchmarks run on this machine at the same time; their cgroups, links and
    processes are not this test's."""
    from engine.netdevs import bridge_name, veth_name

    marks = [str(root), *containers, *(bridge_name(n) for n in networks),
             *(veth_name(n, c) for n in networks for c in containers)]
    mine = {key: [item for item in items if any(m in str(item) for m in marks)]
            for key, items in leaked.items()}
    return {key: items for key, items in mine.items() if items}


def test_ps_logs_exec_top_port_images_ls(shipyard: Shipyard, capfd) -> None:
    shipyard.up("web")
    _, out, _ = shipyard("ps")
    lines = out.splitlines()
    assert lines[0].split() == ["NAME", "IMAGE", "COMMAND", "SERVICE", "CREATED", "STATUS",
                                "PORTS"]
    assert [line.split()[0] for line in lines[1:]] == ["demo-db-1", "demo-web-1", "demo-web-2"]
    assert "Up " in lines[1]
    # each replica takes a free port of the range (which one is first is a race)
    published = {line.split()[0]: line.split()[-1] for line in lines[2:]}
    assert sorted(published.values()) == ["127.0.0.1:18080->80/tcp", "127.0.0.1:18081->80/tcp"]
    _, out, _ = shipyard("ps", "--services")
    assert out.split() == ["db", "web"]
    _, out, _ = shipyard("ps", "-q", "web")
    assert len(out.split()) == 2 and all(len(i) == 64 for i in out.split())
    # -p alone is enough: no Compose file needed to list a project
    _, out, _ = shipyard("-p", "demo", "ps", "--format", "json", project=False)
    rows = [json.loads(line) for line in out.splitlines()]
    assert {r["Service"] for r in rows} == {"db", "web"}
    assert all(r["State"] == "running" and r["Project"] == "demo" for r in rows)
    code, _, err = shipyard("ps", "nosuch", ok=False)
    assert code != 0 and "no such service: " in err and "nosuch" in err

    _wait_for(lambda: shipyard("logs", "--no-color")[1].count("web says hello") == 2)
    _, out, _ = shipyard("logs", "--no-color", "web")
    assert "web-1  | web says hello" in out and "web-2  | oops" in out
    assert "db ready" not in out
    _, out, _ = shipyard("logs", "--no-log-prefix", "--index", "2", "-n", "1", "web")
    assert out == "oops\n"
    _, out, _ = shipyard("logs", "-t", "--no-color", "db")
    assert out.startswith("db-1  | 20") and out.rstrip().endswith("db ready")

    capfd.readouterr()
    code, _, _ = shipyard("exec", "-T", "--index", "2", "web", "sh", "-c",
                          "echo $GREETING from $(hostname); exit 4", ok=False)
    assert code == 4
    assert "hello from" in capfd.readouterr().out
    code, _, err = shipyard("exec", "job", "true", ok=False)
    assert code != 0 and 'service "job" is not running' in err
    code, _, err = shipyard("exec", "--index", "3", "web", "true", ok=False)
    assert code != 0 and "#3" in err

    _, out, _ = shipyard("top", "db")
    assert out.splitlines()[0] == "demo-db-1" and "sleep" in out
    _, out, _ = shipyard("port", "--index", "2", "web", "80")
    assert out.strip() == published["demo-web-2"].split("->")[0]
    _, out, _ = shipyard("images")
    assert out.splitlines()[0].split() == ["CONTAINER", "REPOSITORY", "TAG", "IMAGE", "ID",
                                           "SIZE"]
    assert "demo-web-2   busybox      latest" in out
    _, out, _ = shipyard("ls", project=False)
    assert out.splitlines()[1].split()[:2] == ["demo", "running(3)"]
    _, out, _ = shipyard("ls", "--format", "json", project=False)
    assert json.loads(out)[0]["ConfigFiles"] == str(shipyard.file)


def test_create_stop_start_restart_kill_pause_rm(shipyard: Shipyard) -> None:
    shipyard("create", "web")
    assert shipyard.states() == {"demo-db-1": "created", "demo-web-1": "created",
                                 "demo-web-2": "created"}
    shipyard("start")
    assert set(shipyard.states().values()) == {"running"}
    _, _, err = shipyard("stop", "-t", "5")
    # dependents stop before their dependencies
    assert err.index("demo-web-1  Stopped") < err.index("demo-db-1  Stopping")
    assert set(shipyard.states().values()) == {"exited"}
    _, out, _ = shipyard("ps")
    assert out.splitlines()[1:] == []
    _, _, err = shipyard("start")
    assert err.index("demo-db-1  Started") < err.index("demo-web-1  Starting")
    assert set(shipyard.states().values()) == {"running"}

    shipyard("pause", "web")
    assert shipyard.states()["demo-web-1"] == "paused"
    _, out, _ = shipyard("ps", "--status", "paused")
    assert [line.split()[0] for line in out.splitlines()[1:]] == ["demo-web-1", "demo-web-2"]
    shipyard("unpause", "web")
    assert shipyard.states()["demo-web-2"] == "running"

    before = json.loads(shipyard("ps", "--format", "json", "db")[1])["CreatedAt"]
    shipyard("restart", "-t", "5", "db")
    assert shipyard.states()["demo-db-1"] == "running"
    assert json.loads(shipyard("ps", "--format", "json", "db")[1])["CreatedAt"] == before

    shipyard("kill", "-s", "KILL", "web")
    # (`kill` sends the signal; both replicas exit on their own time, and `rm` without -s
    # takes only stopped ones)
    _wait_for(lambda: shipyard.states()["demo-web-1"] == shipyard.states()["demo-web-2"]
              == "exited")
    _, out, _ = shipyard("ps", "-a", "--filter", "status=exited")
    assert "demo-web-1" in out and "Exited (137)" in out
    shipyard("rm", "-f", "web")
    assert set(shipyard.states()) == {"demo-db-1"}
    _, _, err = shipyard("rm", "-f")
    assert "No stopped containers" in err
    shipyard("rm", "-f", "-s", "-v")
    assert shipyard.states() == {}


def test_run_one_off_with_dependencies_and_wait(shipyard: Shipyard) -> None:
    # `run` brings up the dependency (db) first, not the service itself
    code, out, _ = shipyard("run", "--rm", "-e", "EXTRA=x", "web", "sh", "-c",
                            "echo $GREETING $EXTRA; exit 5", ok=False)
    assert code == 5 and out == "hello x\n"
    assert shipyard.states() == {"demo-db-1": "running"}

    _, out, _ = shipyard("run", "-d", "--no-deps", "-l", "team=a", "job")
    name = out.strip()
    assert name.startswith("demo-job-run-") and len(name) == len("demo-job-run-") + 12
    _, out, _ = shipyard("wait", "job", ok=False)  # only service containers: none for job
    assert out == ""
    _, out, _ = shipyard("ps", "-a", "--format", "json", "job")
    row = json.loads(out)
    assert row["Name"] == name and "team=a" in row["Labels"]
    assert "com.docker.compose.oneoff=True" in row["Labels"]
    _, out, _ = shipyard("ps", "job")  # one-off containers show only with -a
    assert out.splitlines()[1:] == []

    data = shipyard.file.parent / "data"
    data.mkdir()
    (data / "note").write_text("from the host\n")
    _, out, _ = shipyard("run", "--rm", "--no-deps", "-v", f"{data}:/data:ro", "-w", "/data",
                         "-u", "1000", "--entrypoint", "sh -c", "job", "id -u; pwd; cat note")
    assert out == "1000\n/data\nfrom the host\n"

    shipyard.up("job")
    code, out, _ = shipyard("wait", "job", ok=False)
    assert (code, out) == (3, "3\n")
    _, out, _ = shipyard("logs", "-f", "--no-color", "job")  # ends: the container has exited
    assert out == "job-1  | job done\n"


def test_up_attached_follows_logs_and_exits_with_the_service(shipyard: Shipyard) -> None:
    code, out, _ = shipyard("up", "--exit-code-from", "job", "--no-color", "job", ok=False)
    assert code == 3
    assert out == "demo-job-1  | job done\ndemo-job-1 exited with code 3\n"
    assert shipyard.states() == {"demo-db-1": "exited", "demo-job-1": "exited"}


def test_events_report_state_changes(shipyard: Shipyard) -> None:
    from compose.commands.events import watch
    from engine import Engine

    shipyard.up("db")
    engine = Engine(shipyard.root)
    stop = threading.Event()
    seen: list[dict] = []

    def collect() -> None:
        for event in watch(engine, "demo", poll=0.05, stop=stop):
            seen.append(event)

    thread = threading.Thread(target=collect)
    thread.start()
    try:
        time.sleep(0.2)
        shipyard("pause", "db")
        _wait_for(lambda: any(e["action"] == "pause" for e in seen))
        shipyard("unpause", "db")
        _wait_for(lambda: any(e["action"] == "unpause" for e in seen))
        shipyard("stop", "-t", "5", "db")
        _wait_for(lambda: any(e["action"] == "die" for e in seen))
    finally:
        stop.set()
        thread.join()
    actions = [e["action"] for e in seen]
    assert actions[:3] == ["pause", "unpause", "die"]
    assert seen[0]["service"] == "db" and seen[0]["attributes"]["name"] == "demo-db-1"
    assert seen[2]["attributes"]["exitCode"] == "0"


@pytest.mark.parametrize("text,env,argv,expected", [
    ("services: {}\n", {}, [], "app"),
    ("name: blog\nservices: {}\n", {}, [], "blog"),
    ("name: 'quoted'  # comment\nservices: {}\n", {}, [], "quoted"),
    ("name: ${NAME:-fromvar}\nservices: {}\n", {}, [], None),   # the loader's business
    ("name: blog\nservices: {}\n", {"COMPOSE_PROJECT_NAME": "env"}, [], "env"),
    ("name: blog\nservices: {}\n", {}, ["-p", "given"], "given"),
    ("services:\n  x:\n    image: busybox\n    name: not-top-level\n", {}, [], "app"),
])
def test_quick_project_name_agrees_with_the_loader(tmp_path: Path, text: str, env: dict,
                                                    argv: list[str], expected: str | None
                                                    ) -> None:
    from compose.cli import Context, build_parser
    from compose.loader.files import COMPOSE_NAMES, OVERRIDE_NAMES
    from compose.project import COMPOSE_NAMES as QUICK_NAMES
    from compose.project import OVERRIDE_NAMES as QUICK_OVERRIDES
    from compose.project import project_name, quick_project_name

    assert (QUICK_NAMES, QUICK_OVERRIDES) == (COMPOSE_NAMES, OVERRIDE_NAMES)
    app = tmp_path / "App"
    (app / "sub").mkdir(parents=True)
    (app / "compose.yaml").write_text(text)
    ctx = Context(environ=env, cwd=str(app / "sub"))  # found by searching upwards
    args = build_parser("ps").parse_args([*argv, "ps"])
    assert quick_project_name(args, ctx) == expected
    assert project_name(args, ctx) == (expected or "fromvar")


@pytest.mark.skipif(not registry.available(), reason="docker-registry or skopeo is missing")
def test_push_then_pull_through_a_local_registry(shipyard: Shipyard, tmp_path: Path) -> None:
    local = registry.LocalRegistry(tmp_path / "registry")
    try:
        image = f"{local.address}/demo/app:1"
        shipyard.file.write_text(f"""
name: demo
services:
  app:
    build: .
    image: {image}
  plain:
    image: {image}
    pull_policy: always
""")
        (shipyard.file.parent / "Dockerfile").write_text("FROM busybox\n")
        shipyard("image", "tag", "busybox", image, project=False)
        _, _, err = shipyard("push")
        assert " app Pushed" in err and "plain" not in err  # only built services push
        shipyard("image", "rm", image, project=False)
        _, _, err = shipyard("pull", "plain")
        assert " plain Pulled" in err
        _, out, _ = shipyard("image", "ls", project=False)
        assert f"{local.address}/demo/app" in out
        code, _, err = shipyard("pull", "nosuch", ok=False)
        assert code != 0 and "no such service" in err
    finally:
        local.stop()
