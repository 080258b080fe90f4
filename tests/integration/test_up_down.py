"""`shipyard up` and `down` on busybox stacks, end to end on the real kernel: dependency
order with a service_healthy chain, nothing to do the second time, an env change recreating
exactly that service (and its `restart: true` dependents), anonymous volumes kept, scaling,
a failing dependency holding back its dependents, and `down` leaving nothing."""

from __future__ import annotations

import json
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest

from tests.support import busybox, leaks
from tests.support.cli import Shipyard as _Runner

pytestmark = pytest.mark.skipif(not busybox.available(), reason="busybox-static is missing")

# Each command ends at once on TERM, so stops take no grace period.
LOOP = 'trap "exit 0" TERM; {}; while true; do sleep 0.1; done'

STACK = """
services:
  db:
    image: busybox
    command: ["sh", "-c", '{db}']
    environment: {{LEVEL: "1"}}
    healthcheck:
      test: ["CMD", "test", "-f", "/tmp/ready"]
      interval: 100ms
      retries: 30
    volumes: [data:/data, /scratch]
  web:
    image: busybox
    command: ["sh", "-c", '{web}']
    depends_on:
      db: {{condition: service_healthy, restart: true}}
  worker:
    image: busybox
    command: ["sh", "-c", '{worker}']
    environment: {{JOB: "a"}}
    depends_on: [web]
volumes:
  data: {{}}
"""


def stack(**overrides: str) -> str:
    commands = {"db": LOOP.format("sleep 0.3; touch /tmp/ready"),
                "web": LOOP.format("echo web up"), "worker": LOOP.format("echo working")}
    commands.update(overrides)
    return textwrap.dedent(STACK.format(**commands))


class Ids:
    """Ids of every container and network an engine root ever held during a test, so that a
    leak check can tell this test's leftovers from those of tests running alongside."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.containers: set[str] = set()
        self.networks: set[str] = set()

    def record(self) -> None:
        from engine import Engine

        engine = Engine(self.root)
        self.containers.update(c.id for c in engine.containers.list())
        self.networks.update(n.id for n in engine.networks.list())
        engine.store.close()

    def owned(self, leaked: dict[str, list]) -> dict[str, list]:
        """The part of a `leaks.diff` that belongs to this engine root."""
        import os

        from engine.layout import Layout
        from engine.netdevs import bridge_name, veth_name

        markers = [str(self.root), str(Layout.at(self.root).run),
                   *self.containers, *(c[:32] for c in self.containers)]
        links = {bridge_name(n) for n in self.networks} | {
            veth_name(n, c) for n in self.networks for c in self.containers}
        out: dict[str, list] = {}
        for kind, items in leaked.items():
            mine = []
            for item in items:
                text = str(item)
                if kind == "processes":
                    pid = text.split()[0]
                    try:
                        text += " " + os.readlink(f"/proc/{pid}/root")
                        text += " " + Path(f"/proc/{pid}/cgroup").read_text()
                    except OSError:
                        continue
                if (kind == "links" and text in links) or any(m in text for m in markers):
                    mine.append(item)
            if mine:
                out[kind] = mine
        return out


class Shipyard(_Runner):
    """The CLI on this test's project file, remembering the container ids it made."""

    def __init__(self, root: Path, project: Path) -> None:
        super().__init__(root, ("-f", str(project / "compose.yaml")))
        self.project = project
        self.ids = Ids(root)

    def __call__(self, *argv: str, ok: bool = True, **kwargs: object) -> tuple[int, str, str]:
        result = super().__call__(*argv, ok=False, **kwargs)  # type: ignore[arg-type]
        if argv[0] in ("up", "run", "create"):
            self.ids.record()
        if ok:
            assert result[0] == 0, f"shipyard {' '.join(argv)} -> {result[0]}: {result[2]}"
        return result

    def tear_down(self, before: leaks.Snapshot) -> None:
        """`down -v`, then whatever is left; asserts that nothing of this root leaked."""
        self("down", "-v", "-t", "0", "--remove-orphans", ok=False)
        self.remove_everything(ok=False)
        assert self.ids.owned(leaks.diff(before, leaks.snapshot())) == {}

    def write(self, text: str) -> None:
        (self.project / "compose.yaml").write_text(text)

    def inspect(self) -> dict[str, dict]:
        """name -> `container inspect` document of every container."""
        _, out, _ = self("container", "ls", "-a", "-q", "--no-trunc")
        if not out.split():
            return {}
        _, doc, _ = self("container", "inspect", *out.split())
        return {d["Name"].lstrip("/"): d for d in json.loads(doc)}


S = TypeVar("S", bound=Shipyard)


def with_busybox(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str,
                 make: Callable[[Path, Path], S]) -> S:
    """`make(root, project)` on a fresh engine root (SHIPYARD_ROOT) holding the busybox image,
    with an empty project directory `name`."""
    root = tmp_path / "root"
    project = tmp_path / name
    project.mkdir()
    monkeypatch.setenv("SHIPYARD_ROOT", str(root))
    cli = make(root, project)
    cli("image", "import", str(busybox.make_rootfs_tar(tmp_path / "busybox.tar")), "busybox")
    return cli


@pytest.fixture
def shipyard(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Shipyard]:
    before = leaks.snapshot()
    cli = with_busybox(tmp_path, monkeypatch, "blog", Shipyard)
    yield cli
    cli.tear_down(before)


def test_up_converges_and_down_leaves_nothing(shipyard: Shipyard,
                                              capfd: pytest.CaptureFixture[str]) -> None:
    shipyard.write(stack())
    _, _, err = shipyard("up", "-d")
    assert "✔ Container blog-db-1  Healthy" in err
    first = shipyard.inspect()
    assert sorted(first) == ["blog-db-1", "blog-web-1", "blog-worker-1"]
    assert all(d["State"]["Status"] == "running" for d in first.values())
    # web started only once db was healthy, worker after web
    db_health = first["blog-db-1"]["State"]["Health"]
    healthy_at = min(r["End"] for r in db_health["Log"] if r["ExitCode"] == 0)
    assert first["blog-web-1"]["State"]["StartedAt"] >= healthy_at
    assert first["blog-worker-1"]["State"]["StartedAt"] >= first["blog-web-1"]["State"][
        "StartedAt"]
    labels = first["blog-web-1"]["Config"]["Labels"]
    assert labels["com.docker.compose.project"] == "blog"
    assert labels["com.docker.compose.depends_on"] == "db:service_healthy:true"

    _, _, err = shipyard("up", "-d")
    assert "everything is up to date" in err
    assert {n: d["Id"] for n, d in shipyard.inspect().items()} == {
        n: d["Id"] for n, d in first.items()}

    # an env change recreates exactly that service
    shipyard("container", "exec", "blog-db-1", "sh", "-c", "echo kept > /scratch/f")
    shipyard.write(stack().replace('JOB: "a"', 'JOB: "b"'))
    _, plan, _ = shipyard("up", "-d", "--dry-run")
    assert plan == "container recreate blog-worker-1 (config changed: environment (JOB))\n" \
                   "container start blog-worker-1  <- container recreate blog-worker-1\n"
    shipyard("up", "-d")
    second = shipyard.inspect()
    assert second["blog-worker-1"]["Id"] != first["blog-worker-1"]["Id"]
    assert [second[n]["Id"] for n in ("blog-db-1", "blog-web-1")] == [
        first[n]["Id"] for n in ("blog-db-1", "blog-web-1")]

    # a db change recreates db (keeping its anonymous volume) and restarts web
    shipyard.write(stack().replace('JOB: "a"', 'JOB: "b"').replace('LEVEL: "1"', 'LEVEL: "2"'))
    shipyard("up", "-d")
    third = shipyard.inspect()
    assert third["blog-db-1"]["Id"] != second["blog-db-1"]["Id"]
    assert third["blog-web-1"]["Id"] == second["blog-web-1"]["Id"]
    assert third["blog-web-1"]["State"]["StartedAt"] > second["blog-web-1"]["State"][
        "StartedAt"]
    assert third["blog-worker-1"]["Id"] == second["blog-worker-1"]["Id"]
    capfd.readouterr()
    shipyard("container", "exec", "blog-db-1", "cat", "/scratch/f")  # writes to fd 1
    assert capfd.readouterr().out.strip() == "kept"

    shipyard("up", "-d", "--scale", "web=3")
    assert sorted(n for n in shipyard.inspect() if "-web-" in n) == [
        "blog-web-1", "blog-web-2", "blog-web-3"]
    shipyard("up", "-d", "--scale", "web=1", "-t", "0")
    assert sorted(n for n in shipyard.inspect() if "-web-" in n) == ["blog-web-1"]

    shipyard("down", "-v", "-t", "0")
    assert shipyard.inspect() == {}
    _, nets, _ = shipyard("network", "ls")
    assert "blog_" not in nets
    _, vols, _ = shipyard("volume", "ls", "-q")
    assert vols.strip() == ""


def test_failing_dependency_holds_back_its_dependents_only(shipyard: Shipyard) -> None:
    lone = ("  lone:\n    image: busybox\n"
            "    command: [\"sh\", \"-c\", 'trap \"exit 0\" TERM; sleep 1000 & wait']\n")
    text = stack(db="echo db is broken; exit 3").replace("volumes:\n", lone + "volumes:\n", 1)
    shipyard.write(text)
    code, _, err = shipyard("up", "-d", ok=False)
    assert code == 1
    assert 'dependency failed: service "db" (container blog-db-1) exited with code 3' in err
    assert "blog-db-1  | db is broken" in err
    assert "not started because" in err and "blog-web-1" in err
    assert "Traceback" not in err
    states = {n: d["State"]["Status"] for n, d in shipyard.inspect().items()}
    assert states["blog-lone-1"] == "running"
    assert states["blog-web-1"] == "created" and states["blog-worker-1"] == "created"
    shipyard("down", "-t", "0")
    assert shipyard.inspect() == {}


def test_wait_completed_and_the_project_lock(shipyard: Shipyard) -> None:
    import subprocess
    import sys
    import time

    from compose.lock import project_lock
    from engine.layout import Layout

    shipyard.write(textwrap.dedent("""
        services:
          init:
            image: busybox
            command: ["sh", "-c", "sleep 0.2; echo migrated"]
          app:
            image: busybox
            command: ["sh", "-c", 'trap "exit 0" TERM; while true; do sleep 0.1; done']
            depends_on: {init: {condition: service_completed_successfully}}
        """))
    with project_lock(Layout.at(shipyard.root), "blog"):
        proc = subprocess.Popen(
            [sys.executable, "-m", "compose.cli", "-f", str(shipyard.project / "compose.yaml"),
             "up", "-d", "--wait"], stderr=subprocess.PIPE, text=True,
            cwd=Path(__file__).parents[2])
        time.sleep(1.0)
        assert proc.poll() is None, "the second command must wait for the lock"
    _, err = proc.communicate(timeout=60)
    shipyard.ids.record()
    assert proc.returncode == 0, err
    assert "waiting for another shipyard command on project blog" in err
    states = {n: (d["State"]["Status"], d["State"]["ExitCode"])
              for n, d in shipyard.inspect().items()}
    assert states == {"blog-init-1": ("exited", 0), "blog-app-1": ("running", 0)}
    shipyard("down", "-t", "0")


def test_down_by_project_name_without_a_compose_file(shipyard: Shipyard, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    shipyard.write(stack())
    shipyard("up", "-d")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # no compose.yaml here or above: only the labels say it
    code, _, err = shipyard("-p", "blog", "down", "-v", "-t", "0", ok=False, prefix=False)
    assert code == 0, err
    _, out, _ = shipyard("container", "ls", "-a", "-q", prefix=False)
    assert out.strip() == ""
    _, out, _ = shipyard("volume", "ls", "-q", prefix=False)
    assert "blog_data" not in out.split()


HELPED_DOWN = """
import json, sys
from compose import execute, reconcile
from compose.observe import observe
from compose.progress import Progress
from engine import Engine

engine = Engine(sys.argv[1])
plan = reconcile.down("blog", observe(engine, "blog"), None, reconcile.DownOptions())
outcome = execute.run(engine, None, plan, Progress(sys.stderr), execute.Settings(timeout=0))
print(json.dumps({"ok": outcome.ok, "helped": outcome.helped, "failed": outcome.failed}))
"""


def test_down_of_many_services_shares_the_removals_with_a_forked_helper(
        shipyard: Shipyard) -> None:
    import os
    import subprocess
    import sys

    from compose import helpers

    count = helpers.MIN_REMOVALS + 2
    shipyard.write("services:\n" + "".join(
        f"  s{i}:\n    image: busybox\n    command: [\"sh\", \"-c\", '{LOOP.format('true')}']\n"
        for i in range(count)))
    shipyard("up", "-d")
    # execute.run in a process of its own (this one may have threads: no fork then), as
    # `down` runs it, with the number of steps the helpers ran
    done = subprocess.run([sys.executable, "-c", HELPED_DOWN, str(shipyard.ids.root)],
                          capture_output=True, text=True, timeout=120,
                          cwd=Path(__file__).resolve().parents[2])
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["ok"], result
    if len(os.sched_getaffinity(0)) > 1:
        assert result["helped"] >= count // 4, result  # 1 helper: every other removal
    assert shipyard.inspect() == {}
    _, nets, _ = shipyard("network", "ls")
    assert "blog_" not in nets

    # the CLI's own `down`, in a process of its own, again leaves nothing
    shipyard("up", "-d")
    code, _, err = shipyard.process("down", "-t", "0")
    assert code == 0, err
    assert shipyard.inspect() == {}
    _, nets, _ = shipyard("network", "ls")
    assert "blog_" not in nets


def test_down_stops_dependents_before_what_they_depend_on(shipyard: Shipyard) -> None:
    # `down` asks the first containers to stop before it walks the plan: only those that
    # nothing depends on. web takes 0.5 s to stop: were db asked at the same time, its
    # line would come first.
    trap = ("trap '{0}; echo {1} >> /shared/order; exit 0' TERM; touch /shared/{1}.ready; "
            "while true; do sleep 0.1; done")
    shipyard.write(textwrap.dedent(f"""
        services:
          db:
            image: busybox
            command: ["sh", "-c", "{trap.format('true', 'db')}"]
            volumes: ["./shared:/shared"]
          web:
            image: busybox
            command: ["sh", "-c", "{trap.format('sleep 0.5', 'web')}"]
            volumes: ["./shared:/shared"]
            depends_on: [db]
        """))
    (shipyard.project / "shared").mkdir()
    shipyard("up", "-d")
    shared = shipyard.project / "shared"
    deadline = time.monotonic() + 10  # (a TERM before the trap is set would be lost)
    while not ((shared / "db.ready").exists() and (shared / "web.ready").exists()):
        assert time.monotonic() < deadline, "the services did not set their traps"
        time.sleep(0.02)
    shipyard("down", "-t", "5")
    assert (shared / "order").read_text().split() == ["web", "db"]
