"""The engine converges after a command is SIGKILLed at any step.

Each test runs an engine call in a child process that SIGKILLs itself when it reaches a
chosen function (before or after calling it), so nothing of the call's own cleanup runs;
then the next call in this process must succeed, and removing everything must leave no
mount, link, namespace, cgroup or process behind (tests/support/leaks.py)."""

from __future__ import annotations

import io
import os
import socket
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import pytest

from compose.cli import main
from engine import Engine, netns
from engine.errors import AlreadyExists
from tests.support import busybox, leaks

pytestmark = [
    pytest.mark.skipif(not busybox.available(), reason="busybox-static is missing"),
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (namespaces, bridges)"),
]

REPO = Path(__file__).resolve().parents[2]
C1 = "c" * 64

CHILD = """
import os, signal, sys, importlib
from engine import Engine

module, _, attr = {target!r}.rpartition(":")
owner = importlib.import_module(module)
for part in attr.split(".")[:-1]:
    owner = getattr(owner, part)
name = attr.split(".")[-1]
original = getattr(owner, name)

def killer(*args, **kwargs):
    if {when!r} == "before":
        os.kill(os.getpid(), signal.SIGKILL)
    result = original(*args, **kwargs)
    os.kill(os.getpid(), signal.SIGKILL)
    return result

setattr(owner, name, killer)
engine = Engine(sys.argv[1])
{code}
sys.exit(3)  # the kill point was never reached
"""


class Root:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.engine = Engine(path)

    def cli(self, *argv: str) -> str:
        out, err = io.StringIO(), io.StringIO()
        with redirect_stdout(out), redirect_stderr(err):
            code = main(list(argv))
        assert code == 0, f"shipyard {' '.join(argv)} -> {code}: {err.getvalue()}"
        return out.getvalue()

    def killed_at(self, target: str, code: str, when: str = "before") -> None:
        """Runs `code` (with `engine` bound) in a child that SIGKILLs itself at `target`
        ("module:Class.method" or "module:function")."""
        script = CHILD.format(target=target, when=when, code=textwrap.dedent(code))
        done = subprocess.run([sys.executable, "-c", script, str(self.path)], cwd=REPO,
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == -9, f"not killed at {target}: {done.stderr}"

    def leases(self, network: str) -> dict:
        return self.engine.networks.ipam.leases(self.engine.networks.get(network).id)


@pytest.fixture
def root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Root]:
    before = leaks.snapshot()
    monkeypatch.setenv("SHIPYARD_ROOT", str(tmp_path / "root"))
    r = Root(tmp_path / "root")
    r.cli("image", "import", str(busybox.make_rootfs_tar(tmp_path / "busybox.tar")), "busybox")
    made: list[Path] = []
    r.made = made  # type: ignore[attr-defined]
    yield r
    engine = r.engine
    links = _links_of(engine)
    ids = [c.id for c in engine.containers.list()]
    for container in engine.containers.list():
        engine.containers.remove(container, force=True, volumes=True)
    for ep in engine.networks.endpoints():
        engine.networks.disconnect(ep.network_id, ep.container_id, force=True)
    for path in made:
        netns.delete(path, engine.layout)
    for net in engine.networks.list():
        engine.networks.remove_network(net.id)
    assert engine.networks.dns.resolver_pid() is None
    assert engine.networks.egress.rules() == []
    engine.store.close()
    assert _ours(leaks.diff(before, leaks.snapshot()), engine, tmp_path, links, ids) == {}


def _links_of(engine: Engine) -> set[str]:
    """Every link name the engine root can have made: bridges and veths of its networks."""
    from engine.netdevs import veth_name

    nets = engine.networks.list()
    holders = {C1, *(c.id for c in engine.containers.list())}
    return {n.bridge for n in nets} | {veth_name(n.id, h) for n in nets for h in holders}


def _ours(leaked: dict, engine: Engine, tmp_path: Path, links: set[str],
          ids: list[str]) -> dict:
    """The leak diff limited to this test's root: other sessions on the machine create
    links, mounts and processes of their own meanwhile."""
    paths = (str(tmp_path), str(engine.layout.run))
    found = {
        "links": [n for n in leaked.get("links", []) if n in links],
        "mounts": [m for m in leaked.get("mounts", []) if m.startswith(paths)],
        "processes": [p for p in leaked.get("processes", []) if any(x in p for x in paths)],
        "cgroups": [c for c in leaked.get("cgroups", []) if any(i[:12] in c for i in ids)],
    }
    return {k: v for k, v in found.items() if v}


def _ns(root: Root, name: str) -> Path:
    path = netns.create(root.engine.layout, name)
    root.made.append(path)  # type: ignore[attr-defined]
    return path


def _links() -> set[str]:
    return set(os.listdir("/sys/class/net"))


# ---- 1. a start killed half-way -------------------------------------------------------------

@pytest.mark.parametrize("step", ["engine.prepare:_ports", "engine.prepare:_write_spec",
                                  "engine.runtime.launch:start"])
def test_start_after_a_killed_start(root: Root, step: str) -> None:
    root.cli("network", "create", "app")
    root.cli("container", "create", "--name", "web", "--network", "app", "busybox",
             "sleep", "60")
    root.killed_at(step, 'engine.containers.start("web")')
    web = root.engine.containers.get("web")
    assert netns.exists(netns.path_of(root.engine.layout, web.id[:32]))  # the leftover
    root.engine.containers.start("web")
    assert root.engine.containers.state("web").status == "running"
    assert list(root.leases("app")) == [web.id]
    root.engine.containers.stop("web", timeout=0)
    assert root.leases("app") == {}


# ---- 2. a connect killed after its lease ----------------------------------------------------

@pytest.mark.parametrize(("step", "when"), [
    ("engine.netdevs:plug", "before"),       # lease taken, nothing in the kernel
    ("engine.netdevs:plug", "after"),        # lease and veth, no endpoint row
])
def test_connect_after_a_killed_connect(root: Root, step: str, when: str) -> None:
    net = root.engine.networks.create_network("app")
    path = _ns(root, "one")
    root.killed_at(step, f'engine.networks.connect("app", {C1!r}, {str(path)!r})', when)
    assert C1 in root.leases("app")
    links = _links()
    ep = root.engine.networks.connect("app", C1, path, container_name="one")
    assert root.leases("app") == {C1: ep.ipv4}
    with pytest.raises(AlreadyExists):  # a real double connect is still refused
        root.engine.networks.connect("app", C1, path)
    root.engine.networks.disconnect_all(C1)
    assert root.leases("app") == {} and _links() <= links
    assert net.bridge in _links()


@pytest.mark.parametrize(("step", "when"), [
    ("engine.netdevs:plug", "after"),                # lease and veth, no endpoint row
    ("engine.networks:Networks._route", "before"),     # endpoint row, no names yet
])
def test_disconnect_all_drops_what_a_killed_connect_left(root: Root, step: str,
                                                         when: str) -> None:
    from engine.netdevs import veth_name

    net = root.engine.networks.create_network("app")
    path = _ns(root, "one")
    root.killed_at(step, f'engine.networks.connect("app", {C1!r}, {str(path)!r})', when)
    root.engine.networks.disconnect_all(C1)
    assert root.leases("app") == {} and root.engine.networks.endpoints() == []
    assert veth_name(net.id, C1) not in _links()
    assert netns.run_in(path, lambda: [n for _, n in socket.if_nameindex()]) == ["lo"]
    root.engine.networks.connect("app", C1, path)
    root.engine.networks.disconnect_all(C1)


# ---- 3. a network creation killed after its record ------------------------------------------

@pytest.mark.parametrize("step", ["engine.egress:Egress.add", "engine.dns:Dns.add_network",
                                  "engine.rtnl:Rtnl.set_link"])
def test_connect_completes_an_unfinished_network(root: Root, step: str) -> None:
    root.killed_at(step, 'engine.networks.create_network("app")')
    nets = root.engine.networks
    net = nets.get("app")
    assert not nets.complete(net)
    path = _ns(root, "one")
    ep = nets.connect("app", C1, path, container_name="one")  # no FOREIGN KEY failure
    assert nets.complete(net)
    served = nets.dns.snapshot()["networks"][str(net.gateway)]
    assert served["names"]["one"] == [str(ep.ipv4)]
    assert any(r.get("comment") == f"sy:{net.id[:12]}" for r in nets.egress.rules())
    nets.disconnect_all(C1)


@pytest.mark.parametrize("step", ["engine.dns:Dns.add_network",
                                  # the bridge made, not yet up: it must not be orphaned
                                  "engine.rtnl:Rtnl.set_link"])
def test_create_again_replaces_an_unfinished_network(root: Root, step: str) -> None:
    root.killed_at(step, 'engine.networks.create_network("app")')
    old = root.engine.networks.get("app")
    new = root.engine.networks.create_network("app", internal=True)
    assert new.id != old.id and new.internal
    assert old.bridge not in _links() and new.bridge in _links()
    assert root.engine.networks.complete(new)
    with pytest.raises(AlreadyExists):
        root.engine.networks.create_network("app")


def test_a_container_starts_on_an_unfinished_network(root: Root) -> None:
    root.killed_at("engine.dns:Dns.add_network", 'engine.networks.create_network("app")')
    root.cli("container", "run", "-d", "--name", "web", "--network", "app", "busybox",
             "sleep", "60")
    assert root.engine.containers.state("web").status == "running"


# ---- 4. a network removal killed half-way ---------------------------------------------------

@pytest.mark.parametrize("step", ["engine.egress:Egress.remove", "engine.netdevs:delete_link",
                                  "engine.ipam:Ipam.release_network"])
def test_remove_after_a_killed_remove(root: Root, step: str) -> None:
    net = root.engine.networks.create_network("app")
    assert root.engine.networks.dns.resolver_pid() is not None
    root.killed_at(step, 'engine.networks.remove_network("app")')
    assert root.engine.networks.get("app").id == net.id  # the record goes last
    root.engine.networks.remove_network("app")
    assert root.engine.networks.list() == []
    assert root.engine.networks.dns.resolver_pid() is None
    assert root.engine.networks.egress.rules() == []
    assert net.bridge not in _links()


def test_sweep_drops_names_of_networks_without_record(root: Root) -> None:
    nets = root.engine.networks
    net = nets.create_network("app")
    with nets.store.tx() as conn:  # what a removal killed under the old order left
        conn.execute("DELETE FROM networks WHERE id = ?", (net.id,))
    from engine.netdevs import delete_link as _delete_link

    _delete_link(net.bridge)
    assert nets.sweep() == [net.id]
    assert nets.dns.resolver_pid() is None and nets.egress.rules() == []
    assert nets.sweep() == []
    nets.ipam.release_network(net.id)


# ---- 5. stopping a container that never started ---------------------------------------------

def test_stop_of_a_created_container_is_a_no_op(root: Root) -> None:
    root.cli("container", "create", "--name", "idle", "busybox", "sleep", "60")
    root.engine.containers.stop("idle", timeout=0)
    assert root.engine.containers.state("idle").status == "created"
    root.killed_at("engine.prepare:_write_spec", 'engine.containers.start("idle")')
    root.engine.containers.stop("idle", timeout=0)  # releases the half-made start
    idle = root.engine.containers.get("idle")
    assert not netns.exists(netns.path_of(root.engine.layout, idle.id[:32]))
    assert root.engine.networks.ipam.leases(root.engine.networks.get("bridge").id) == {}


# ---- 6. a create killed between its record and its directory --------------------------------

def test_a_container_whose_create_was_killed_before_its_directory(root: Root) -> None:
    # The record commits, then the directory is made: a kill between leaves a record alone.
    root.killed_at("engine.layout:Layout.container",
                   'from compose.cli import main\n'
                   'main(["container", "create", "--name", "half", "busybox", "sleep", "60"])')
    half = root.engine.containers.get("half")
    assert not half.directory.exists()
    assert root.engine.containers.state(half).status == "created"
    assert "half" in root.cli("container", "ls", "-a")
    root.engine.containers.start(half)
    assert root.engine.containers.state(half).status == "running"
    root.engine.containers.remove(half, force=True)


# ---- 7. a namespace deletion killed half-way ------------------------------------------------

@pytest.mark.parametrize(("step", "when"), [("engine.netns:umount2", "after"),
                                            ("engine.netns:_dir_lock", "before")])
def test_stop_after_a_stop_killed_in_the_namespace_deletion(root: Root, step: str,
                                                            when: str) -> None:
    # Killed once unmounted (a plain file stays), or once unlinked (the directory mount
    # stays, empty): the next stop takes what is left.
    from engine import mountinfo

    root.cli("container", "create", "--name", "web", "busybox", "sleep", "60")
    root.engine.containers.start("web")
    root.killed_at(step, 'engine.containers.stop("web", timeout=0)', when)
    web = root.engine.containers.get("web")
    assert not netns.exists(netns.path_of(root.engine.layout, web.id[:32]))
    root.engine.containers.stop("web", timeout=0)
    assert not netns.path_of(root.engine.layout, web.id[:32]).exists()
    assert mountinfo.find(root.engine.layout.netns) is None


# ---- 8. a start and a removal at once (two commands) ----------------------------------------

def test_a_start_that_waited_for_a_removal_does_not_run_the_removed_container(
        root: Root) -> None:
    import threading

    from engine.errors import NotFound

    root.cli("container", "create", "--name", "web", "busybox", "sleep", "60")
    other = Engine(root.path)  # another command's engine: locks are per object
    web = root.engine.containers.get("web")
    outcome: list[BaseException | None] = []

    def start() -> None:
        try:
            other.containers.start("web")
            outcome.append(None)
        except BaseException as exc:  # handed to the test
            outcome.append(exc)

    with root.engine.containers._locked(web):  # the removal holds the lock from here
        starter = threading.Thread(target=start)
        starter.start()
        starter.join(0.5)
        assert starter.is_alive(), "the start did not wait for the container's lock"
        root.engine.containers.remove(web, force=True)
    starter.join(10)
    assert isinstance(outcome[0], NotFound), outcome
    assert "web" not in root.cli("container", "ls", "-a")
    assert not web.directory.exists()
    assert not netns.path_of(root.engine.layout, web.id[:32]).exists()
