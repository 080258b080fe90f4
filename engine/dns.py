"""Service discovery for containers: the engine's side of the embedded resolver.

The names live in the store (tables `dns_networks`, `dns_endpoints`). After each change
`publish()` writes them as `records.json` into `layout.run/dns` (atomic rename) and tells the
resolver process (engine/dnsserver.py) to reload over its control socket, waiting for its
answer, so a name registered here resolves as soon as the call returns. The resolver is
started with the first network and exits when the last one is removed.

Publishing is batched two ways: threads of one process that change names at the same time
share one publish (a publisher whose change an already finished snapshot included returns
at once), and `batch()` defers every publish of the calling thread to the end of the block.

Containers use it through `resolv_conf()`: `nameserver <gateway of their first network>`.
The resolver knows the asking container by the query's source address, and answers it with
the names of every network it is attached to (and of no other), whichever of its gateways the
query reached, as Docker does. A container's own `dns` servers become its upstreams in the
resolver, so it keeps resolving service names. `hosts_file()` writes /etc/hosts.
"""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import json
import os
import select
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path

from engine.errors import Unavailable, warn
from engine.layout import Layout
from engine.store import Store, dumps, loads

SERVER = Path(__file__).with_name("dnsserver.py")
# Imported rather than run as a script, whose source would be compiled on every start (no
# .pyc for __main__); the path rides along in argv for `ps` and leak checks.
SERVER_MAIN = (f"import sys; sys.path[:0] = [{str(SERVER.parent)!r}]; import dnsserver; "
               "dnsserver.run(sys.argv[2:])")
HOST_RESOLV_CONF = Path("/etc/resolv.conf")
START_TIMEOUT_S = 10.0

SCHEMA = """
CREATE TABLE IF NOT EXISTS dns_networks (
    network_id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    gateway TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS dns_endpoints (
    network_id TEXT NOT NULL REFERENCES dns_networks(network_id) ON DELETE CASCADE,
    container_id TEXT NOT NULL,
    ipv4 TEXT NOT NULL,
    names TEXT NOT NULL,
    links TEXT NOT NULL,
    upstreams TEXT NOT NULL,
    PRIMARY KEY (network_id, container_id)
)
"""


def parse_resolv_conf(text: str) -> tuple[list[str], list[str], list[str]]:
    """(nameservers, search domains, options) of a resolv.conf text."""
    servers: list[str] = []
    search: list[str] = []
    options: list[str] = []
    for line in text.splitlines():
        fields = line.split("#", 1)[0].split(";", 1)[0].split()
        if not fields:
            continue
        if fields[0] == "nameserver" and len(fields) > 1:
            servers.append(fields[1])
        elif fields[0] in ("search", "domain"):
            search = fields[1:]
        elif fields[0] == "options":
            options += fields[1:]
    return servers, search, options


def _upstream(text: str) -> list:
    """"1.2.3.4", "1.2.3.4:5353" or "[::1]:53" -> [host, port]."""
    text = text.strip()
    if text.startswith("["):
        host, _, port = text[1:].partition("]:")
        return [host.rstrip("]"), int(port or 53)]
    if text.count(":") == 1:
        host, port = text.split(":")
        return [host, int(port)]
    return [text, 53]


class Dns:
    """Names per network, kept in the store and served by one resolver per engine root.

    `upstreams` overrides the host's /etc/resolv.conf nameservers (tests point it at
    loopback); `port` is where the resolver listens on each gateway."""

    def __init__(self, layout: Layout, store: Store, *, upstreams: Sequence[str] | None = None,
                 port: int = 53) -> None:
        self.layout = layout
        self.store = store
        self.dir = layout.run / "dns"
        self.upstreams = upstreams
        self.port = port
        store.ensure_schema(SCHEMA)
        self._changes = 0        # changes committed by this object (any thread)
        self._published = 0      # how many of them the resolver confirmed it serves
        self._sent = 0           # how many of them it was told to load (not waited for)
        self._guard = threading.Lock()
        self._publishing = threading.Lock()
        self._local = threading.local()
        self._starting: subprocess.Popen | None = None  # our resolver, not yet heard from
        self._deferring = 0      # open `removals_deferred` scopes (any thread)
        self._deferred = False   # a change was left to the end of those scopes

    @contextlib.contextmanager
    def removals_deferred(self) -> Iterator[None]:
        """Within this scope (any thread), the names of leaving containers reach the
        resolver at its end, in one publish, instead of one publish each (`down`: the
        resolver re-read its records 20 times while everything was leaving anyway).
        What is added is still published at once."""
        with self._guard:
            self._deferring += 1
        try:
            yield
        finally:
            with self._guard:
                self._deferring -= 1
                due = self._deferring == 0 and self._deferred
                if due:
                    self._deferred = False
            if due:
                self.publish(wait=False)

    @property
    def deferring(self) -> bool:
        """Whether a `removals_deferred` scope is open."""
        with self._guard:
            return self._deferring > 0

    @contextlib.contextmanager
    def batch(self) -> Iterator[None]:
        """Defers this thread's publishes to the end of the block (one publish, if anything
        changed). Names registered inside resolve once the block has ended."""
        depth = getattr(self._local, "depth", 0)
        self._local.depth = depth + 1
        try:
            yield
        finally:
            self._local.depth = depth
            if depth == 0 and getattr(self._local, "dirty", False):
                self._local.dirty = False
                wait, self._local.wait = getattr(self._local, "wait", False), False
                self.publish(wait=wait)

    def _changed(self, wait: bool = True) -> None:
        """Called after each committed change: publishes now, or at the end of a batch.
        `wait`: return only once the resolver serves it; without, it is told to load the
        change and not waited for (the names of a container being released: that it is
        gone a few milliseconds before the resolver knows is no harm, and `down` of 20
        containers waited ~20 ms for the resolver 20 times)."""
        with self._guard:
            self._changes += 1
            if not wait and self._deferring:
                self._deferred = True  # the scope's end publishes it
                return
        if getattr(self._local, "depth", 0):
            self._local.dirty = True
            self._local.wait = getattr(self._local, "wait", False) or wait
        else:
            self.publish(wait=wait)

    # -- records

    def add_network(self, network_id: str, name: str, gateway: str) -> None:
        with self.store.tx() as conn:
            conn.execute("INSERT OR REPLACE INTO dns_networks VALUES (?, ?, ?)",
                         (network_id, name, gateway))
        self._changed()

    def remove_network(self, network_id: str) -> None:
        with self.store.tx() as conn:
            conn.execute("DELETE FROM dns_endpoints WHERE network_id = ?", (network_id,))
            gone = conn.execute("DELETE FROM dns_networks WHERE network_id = ?",
                                (network_id,)).rowcount
        # A removal resumed after a killed one may find nothing left, but the resolver may
        # never have heard (killed between the commit and the publish): it would serve the
        # network, and run, for ever.
        if gone or self._published_has(network_id):
            self._changed()

    def _published_has(self, network_id: str) -> bool:
        """Whether the records last given to the resolver name the network."""
        try:
            data = json.loads((self.dir / "records.json").read_text())
        except (OSError, ValueError):
            return False
        return any(isinstance(net, dict) and net.get("id") == network_id
                   for net in (data.get("networks") or {}).values())

    def register(self, network_id: str, container_id: str, names: Iterable[str], ipv4: str,
                 *, links: Mapping[str, str] | None = None, upstreams: Sequence[str] = ()) -> None:
        """Makes `names` (container name, service, hostname, aliases...) resolve to `ipv4` on
        the network; replaces what the container registered there before. `links` maps an
        alias to a target name, seen by this container only; `upstreams` are the container's
        own nameservers for names that are not ours."""
        clean = list(dict.fromkeys(n.strip().rstrip(".").lower() for n in names if n.strip()))
        with self.store.tx() as conn:
            conn.execute(
                "INSERT OR REPLACE INTO dns_endpoints VALUES (?, ?, ?, ?, ?, ?)",
                (network_id, container_id, str(ipaddress.IPv4Address(ipv4)), dumps(clean),
                 dumps({k.lower(): v.lower() for k, v in (links or {}).items()}),
                 dumps([_upstream(u) for u in upstreams])))
        self._changed()

    def unregister(self, network_id: str, container_id: str, *, wait: bool = True) -> None:
        """Drops the container's names on the network (see `_changed` for `wait`)."""
        with self.store.tx() as conn:
            gone = conn.execute("DELETE FROM dns_endpoints WHERE network_id = ? AND "
                                "container_id = ?", (network_id, container_id)).rowcount
        if gone:
            self._changed(wait)

    def snapshot(self) -> dict:
        """What the resolver serves (the records.json document)."""
        networks: dict[str, dict] = {}
        rows = self.store.query("SELECT * FROM dns_networks")
        for net in rows:
            names: dict[str, list[str]] = {}
            ptr: dict[str, str] = {}
            endpoints = self.store.query(
                "SELECT * FROM dns_endpoints WHERE network_id = ? ORDER BY rowid",
                (net["network_id"],))
            for ep in endpoints:
                ep_names = loads(ep["names"], [])
                for name in ep_names:
                    names.setdefault(name, []).append(ep["ipv4"])
                if ep_names:
                    ptr[ep["ipv4"]] = f"{ep_names[0]}.{net['name']}".lower()
            links: dict[str, dict[str, list[str]]] = {}
            upstreams: dict[str, list] = {}
            for ep in endpoints:
                resolved = {alias: names[target]
                            for alias, target in loads(ep["links"], {}).items()
                            if target in names}
                if resolved:
                    links[ep["ipv4"]] = resolved
                if loads(ep["upstreams"], []):
                    upstreams[ep["ipv4"]] = loads(ep["upstreams"])
            networks[net["gateway"]] = {"id": net["network_id"], "name": net["name"],
                                        "names": names, "ptr": ptr, "links": links,
                                        "upstreams": upstreams}
        return {"port": self.port, "upstreams": self._host_upstreams(), "networks": networks,
                "containers": self._containers()}

    def _containers(self) -> dict[str, list[list[str]]]:
        """container id -> its endpoints as [gateway, ipv4], in the order they were made:
        the resolver answers a container from the names of all its networks."""
        rows = self.store.query(
            "SELECT e.container_id, n.gateway, e.ipv4 FROM dns_endpoints e "
            "JOIN dns_networks n ON n.network_id = e.network_id ORDER BY e.rowid")
        containers: dict[str, list[list[str]]] = {}
        for row in rows:
            containers.setdefault(row["container_id"], []).append([row["gateway"], row["ipv4"]])
        return containers

    def _host_upstreams(self) -> list:
        if self.upstreams is not None:
            return [_upstream(u) for u in self.upstreams]
        try:
            servers, _, _ = parse_resolv_conf(HOST_RESOLV_CONF.read_text())
        except OSError:
            servers = []
        return [_upstream(s) for s in servers]

    # -- the resolver process

    def publish(self, wait: bool = True) -> dict | None:
        """Writes records.json and makes the resolver (started or stopped as needed) serve it.
        Returns the resolver's state ({"pid", "networks", "errors", "exiting"}) or None (also
        when another thread's publish, finished meanwhile, already included our changes).
        Without `wait`, the running resolver is told to load it and not waited for."""
        with self._guard:
            wanted = self._changes
        with self._publishing:
            done = self._published if wait else max(self._published, self._sent)
            if done >= wanted > 0:
                return None
            with self._guard:
                seen = self._changes  # everything committed up to here is in the snapshot
            state = self._publish(wait)
            if wait:
                self._published = max(self._published, seen)
            self._sent = max(self._sent, seen)
            return state

    def _publish(self, wait: bool = True) -> dict | None:
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        # One publisher at a time: a slower process must not rename an older snapshot over a
        # newer one, nor start a second resolver.
        lock = os.open(self.dir / "publish.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(lock, fcntl.LOCK_EX)
            self._settle()
            data = self.snapshot()
            tmp = self.dir / f".records.{os.getpid()}.tmp"
            tmp.write_text(json.dumps(data, sort_keys=True))
            os.replace(tmp, self.dir / "records.json")
            state = self._control(wait)
            if state is None and wait and self._resolver_lock_held():
                # Started (perhaps by another command, gone since) and not listening yet: it
                # reads these records when it is; wait for that, so that a removal sees it
                # leave instead of taking it for absent.
                state = self._await_control()
            if state is None and data["networks"]:
                # Not waited for here: it reads the records just written when it starts,
                # and the next publish (a container's names, before that container
                # starts) waits for it. Network creation does not pay for its start-up.
                self._spawn()
            if state and state.get("exiting"):
                _wait_gone(int(state["pid"]), 3.0)
        finally:
            os.close(lock)
        for gateway, message in (state or {}).get("errors", {}).items():
            warn(f"DNS for the network with gateway {gateway} is unavailable: {message}")
        return state

    def resolver_pid(self) -> int | None:
        with self._publishing:
            self._settle()
        return self._live_pid()

    def _live_pid(self) -> int | None:
        """The running resolver's pid (None while none runs, or one is still starting)."""
        if not self._resolver_lock_held():
            return None
        try:
            return int((self.dir / "resolver.pid").read_text().strip())
        except (OSError, ValueError):
            return None

    def _resolver_lock_held(self) -> bool:
        """Whether a resolver runs or is starting: it holds the pid file's lock from before
        it is spawned (the spawner takes it and hands it over) until it exits."""
        try:
            fd = os.open(self.dir / "resolver.pid", os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        finally:
            os.close(fd)  # (also drops the shared lock, if we got it)
        return False

    def _await_control(self) -> dict | None:
        """Polls the control socket of a starting resolver until it answers (its state), or
        it has gone (None)."""
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            state = self._control()
            if state is not None:
                return state
            if not self._resolver_lock_held():
                return None
            time.sleep(0.005)
        raise Unavailable(f"the DNS resolver does not answer (see {self.dir}/resolver.log)")

    def _control(self, wait: bool = True) -> dict | None:
        """Tells the resolver to reload; its state (without `wait`: {} once told), or None
        when none listens."""
        path = self.dir / "control.sock"
        if not path.exists():
            return None
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(5.0)
            try:
                sock.connect(str(path))
                sock.sendall(b"reload\n")
                if not wait:
                    return {}
                reply = sock.makefile("rb").readline()
            except (ConnectionRefusedError, FileNotFoundError):
                return None  # a resolver that died; its socket file stays behind
            except (ConnectionResetError, BrokenPipeError):
                return None  # one that is exiting (it had no network left) drops requests
            except OSError as exc:
                raise Unavailable(f"the DNS resolver does not answer: {exc}") from None
        return json.loads(reply) if reply else None

    def _spawn(self) -> None:
        # The pid file's lock is taken here and handed to the resolver: from this moment
        # every process can tell that one is starting (see _resolver_lock_held).
        lock = os.open(self.dir / "resolver.pid", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return  # one is starting or running: the next publish reaches it
            log_file = os.open(self.dir / "resolver.log",
                               os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
            try:
                self._starting = subprocess.Popen(
                    [sys.executable, "-I", "-S", "-c", SERVER_MAIN, str(SERVER), "--daemon",
                     "--lock-fd", str(lock), str(self.dir)],
                    stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=log_file,
                    pass_fds=(lock,), start_new_session=True, close_fds=True, cwd="/")
            finally:
                os.close(log_file)
        finally:
            os.close(lock)

    def _settle(self) -> dict | None:
        """Waits for the first word of a resolver this object started (its state, or that
        another one runs already); raises Unavailable when it did not start."""
        proc, self._starting = self._starting, None
        if proc is None:
            return None
        assert proc.stdout is not None
        with proc.stdout:
            ready, _, _ = select.select([proc.stdout], [], [], START_TIMEOUT_S)
            line = proc.stdout.readline() if ready else b""
        try:
            proc.wait(timeout=START_TIMEOUT_S)  # it forks the resolver and exits at once
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            line = b""
        if not line:
            raise Unavailable(f"the DNS resolver did not start (see {self.dir}/resolver.log)")
        state = json.loads(line)
        if state.get("running"):  # another process started it first
            return self._control() or {}
        return state


def _wait_gone(pid: int, timeout: float) -> None:
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    try:
        select.select([fd], [], [], timeout)
    finally:
        os.close(fd)


# ------------------------------------------------------------------------------ files

def resolv_conf(gateway: str | None, dns: Sequence[str] = (), dns_search: Sequence[str] = (),
                dns_opt: Sequence[str] = (), host: str | None = None) -> str:
    """A container's /etc/resolv.conf. On a network (`gateway` given) the only nameserver is
    the resolver at the gateway (pass `dns` to `Dns.register` as upstreams). Without one,
    `dns` or else the host's nameservers. Search domains and options default to the host's
    (`host` is its resolv.conf text; read from /etc/resolv.conf when None)."""
    if host is None:
        try:
            host = HOST_RESOLV_CONF.read_text()
        except OSError:
            host = ""
    host_servers, host_search, host_options = parse_resolv_conf(host)
    servers = [gateway] if gateway else list(dns) or host_servers
    search = list(dns_search) or host_search
    options = list(dns_opt) if dns_opt else ([] if gateway else host_options)
    lines = [f"nameserver {s}" for s in servers]
    if search and search != ["."]:
        lines.append("search " + " ".join(search))
    if options:
        lines.append("options " + " ".join(options))
    return "\n".join(lines) + "\n"


HOSTS_HEADER = (
    "127.0.0.1\tlocalhost\n"
    "::1\tlocalhost ip6-localhost ip6-loopback\n"
    "fe00::0\tip6-localnet\n"
    "ff00::0\tip6-mcastprefix\n"
    "ff02::1\tip6-allnodes\n"
    "ff02::2\tip6-allrouters\n"
)


def hosts_file(hostname: str, domainname: str = "", ips: Sequence[str] = (),
               extra_hosts: Mapping[str, str | Sequence[str]] | Iterable[str] = (),
               host_gateway: str | None = None) -> str:
    """A container's /etc/hosts. `extra_hosts` is a mapping host -> ip(s) or Compose's list
    form ("host:ip" / "host=ip"); the value "host-gateway" becomes `host_gateway`."""
    lines = [HOSTS_HEADER.rstrip("\n")]
    pairs: list[tuple[str, str]] = []
    if isinstance(extra_hosts, Mapping):
        for name, value in extra_hosts.items():
            for ip in ([value] if isinstance(value, str) else value):
                pairs.append((name, ip))
    else:
        for item in extra_hosts:
            sep = "=" if "=" in item else ":"
            name, _, ip = item.partition(sep)
            pairs.append((name.strip(), ip.strip().strip("[]")))
    for name, ip in pairs:
        if ip == "host-gateway":
            if host_gateway is None:
                continue
            ip = host_gateway
        lines.append(f"{ip}\t{name}")
    names = f"{hostname}.{domainname} {hostname}" if domainname else hostname
    for ip in ips:
        lines.append(f"{ip}\t{names}")
    return "\n".join(lines) + "\n"
