"""Host side of benchmarks/peers.py: helper commands, dockerd's private lifetime, and what the
peers leave in the kernel after their own cleanup (netns, links, iptables chains, cgroups),
recorded before the run, taken away after it and checked."""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

PEERS = Path(os.environ.get("SHIPYARD_PEERS_DIR", "/var/tmp/shipyard-peers"))
DOCKER = "/usr/bin/docker"  # Debian's client; /usr/local/bin/docker may be a newer one


class Failed(Exception):
    """A measured command failed or timed out; the message is its last line of output."""


def sh(argv: list[str], env: dict[str, str] | None = None, timeout: float = 120,
       check: bool = True) -> str:
    """Runs an unmeasured helper command; returns stdout."""
    r = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=timeout,
                       stdin=subprocess.DEVNULL)
    if check and r.returncode != 0:
        raise Failed(f"{shlex.join(argv)}: {last_line(r.stderr or r.stdout)}")
    return r.stdout


def last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1][:160] if lines else "?"


def start_dockerd() -> subprocess.Popen:
    """dockerd with private state; --iptables=false keeps the machine's firewall as it was
    (the stacks need no NAT), --ip-forward=false leaves the sysctl alone."""
    for d in ("docker", "docker-exec"):
        (PEERS / d).mkdir(parents=True, exist_ok=True)
    log = open(PEERS / "dockerd.log", "w")  # noqa: SIM115 (lives as long as dockerd)
    proc = subprocess.Popen(
        ["dockerd", "--data-root", str(PEERS / "docker"), "--exec-root", str(PEERS / "docker-exec"),
         "--pidfile", str(PEERS / "dockerd.pid"), "-H", f"unix://{PEERS}/docker.sock",
         "--iptables=false", "--ip6tables=false", "--ip-forward=false",
         "--exec-opt", "native.cgroupdriver=cgroupfs"],
        stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    env = {**os.environ, "DOCKER_HOST": f"unix://{PEERS}/docker.sock"}
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise Failed(f"dockerd exited {proc.returncode}: see {PEERS}/dockerd.log")
        if subprocess.run([DOCKER, "version"], env=env, capture_output=True).returncode == 0:
            return proc
        time.sleep(0.2)
    raise Failed("dockerd did not answer within 30 s")


def stop_dockerd(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)


@dataclass(frozen=True, slots=True)
class HostState:
    links: frozenset[str]
    netns: frozenset[str]
    netavark_chains: bool
    nft_tables: frozenset[str]
    cgroups: frozenset[str]
    mounts: frozenset[str]


def host_state() -> HostState:
    try:
        netns = frozenset(os.listdir("/run/netns"))
    except FileNotFoundError:
        netns = frozenset()
    tables = sh(["nft", "list", "tables"], check=False).splitlines()
    return HostState(frozenset(os.listdir("/sys/class/net")), netns,
                     "NETAVARK" in sh(["iptables-save"], check=False),
                     frozenset(t.strip() for t in tables if t.strip()), peer_cgroups(),
                     frozenset(mounts()))


# the parents dockerd and podman make with the cgroupfs manager, and leave behind
PEER_CGROUPS = ("docker", "libpod_parent")


def peer_cgroups() -> frozenset[str]:
    root = Path("/sys/fs/cgroup")
    found = {str(d) for d in root.glob("*/*") if d.name in PEER_CGROUPS and d.is_dir()}
    found |= {str(d) for d in root.glob("*") if d.name in PEER_CGROUPS and d.is_dir()}
    return frozenset(found)


def quiet(argv: list[str], env: dict[str, str] | None = None, timeout: float = 120) -> str:
    """Cleanup steps run even after failures: they report, they never raise."""
    try:
        return sh(argv, env, timeout)
    except (Failed, subprocess.TimeoutExpired, OSError) as e:
        print(f"  cleanup: {e}", file=sys.stderr)
        return ""


def restore_host(before: HostState) -> None:
    """Takes away what the peers leave in the kernel after their own cleanup: podman's named
    netns, docker0, netavark's iptables chains and the iptables-nft tables they sat in."""
    after = host_state()
    for name in after.netns - before.netns:
        if name.startswith("netns-"):
            print(f"  cleanup: podman left netns {name}: deleting it", file=sys.stderr)
            quiet(["ip", "netns", "delete", name])
    for link in after.links - before.links:
        if link == "docker0" or link.startswith(("br-", "podman")):
            print(f"  cleanup: deleting link {link}", file=sys.stderr)
            quiet(["ip", "link", "delete", link])
    if after.netavark_chains and not before.netavark_chains:
        print("  cleanup: netavark left its iptables chains: deleting them", file=sys.stderr)
        for table in ("filter", "nat"):
            rules = sh(["iptables-save", "-t", table], check=False).splitlines()
            for rule in rules:
                if rule.startswith("-A ") and "NETAVARK" in rule:
                    chain = rule.split()[1]
                    if not chain.startswith("NETAVARK"):
                        quiet(["iptables", "-t", table, "-D", *shlex.split(rule)[1:]])
            for rule in rules:
                if rule.startswith(":NETAVARK"):
                    quiet(["iptables", "-t", table, "-F", rule[1:].split()[0]])
                    quiet(["iptables", "-t", table, "-X", rule[1:].split()[0]])
    for table in after.nft_tables - before.nft_tables:
        family_name = table.split()[1:]
        listing = json.loads(sh(["nft", "-j", "list", "table", *family_name], check=False)
                             or '{"nftables": []}')
        if family_name in (["ip", "nat"], ["ip", "filter"]) and not any(
                "rule" in item for item in listing["nftables"]):
            print(f"  cleanup: deleting the empty nft {table}", file=sys.stderr)
            quiet(["nft", "delete", "table", *family_name])
    for cg in after.cgroups - before.cgroups:
        # bottom-up; rmdir refuses a cgroup that still has tasks, which is what we want
        print(f"  cleanup: deleting cgroup {cg}", file=sys.stderr)
        for dirpath, _dirs, _files in sorted(os.walk(cg), reverse=True):
            try:
                os.rmdir(dirpath)
            except OSError as e:
                print(f"  cleanup: cgroup {dirpath}: {e}", file=sys.stderr)
    from engine.layout import Layout

    # The engine's run directory of the benchmark's root (names, locks) goes with the root.
    shutil.rmtree(Layout.at(PEERS / "shipyard-root").run, ignore_errors=True)
    for d in ("docker", "docker-exec", "podman-storage", "podman-networks", "shipyard-root",
              "stacks", "bundle"):
        if not any(str(PEERS / d) in m for m in mounts()):
            shutil.rmtree(PEERS / d, ignore_errors=True)
    shutil.rmtree("/run/shipyard-peers-podman", ignore_errors=True)
    # A podman run that missed the private storage.conf mounts its default graph root on
    # itself and keeps it until reboot: take it away if this run made it.
    for mount in sorted(set(mounts()) - before.mounts, reverse=True):
        if mount.startswith(PODMAN_DEFAULT_STORAGE):
            print(f"  cleanup: podman left its default storage mounted at {mount}",
                  file=sys.stderr)
            quiet(["umount", mount])


PODMAN_DEFAULT_STORAGE = "/var/lib/containers/storage"


def mounts() -> list[str]:
    with open("/proc/self/mountinfo") as f:
        return [line.split()[4] for line in f]


PEER_PROGRAMS = {"dockerd", "containerd", "containerd-shim", "containerd-shim-runc-v2", "conmon",
                 "aardvark-dns", "netavark"}


def leftovers(before: HostState) -> list[str]:
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            comm = Path(f"/proc/{pid}/comm").read_text().strip()
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if int(pid) != os.getpid() and (comm in PEER_PROGRAMS or str(PEERS) in cmdline
                                        or "peers-bench" in cmdline):
            found.append(f"process {pid} {cmdline[:100]}")
    # every mount the run added, wherever it is (a peer may ignore the private config)
    found += [f"mount {m}" for m in sorted(set(mounts()) - before.mounts)]
    after = host_state()
    found += [f"link {link}" for link in after.links - before.links
              if link == "docker0" or link.startswith(("br-", "podman", "veth"))]
    found += [f"netns {n}" for n in after.netns - before.netns if n.startswith("netns-")]
    found += [f"cgroup {cg}" for cg in after.cgroups - before.cgroups]
    ours = "table inet shipyard_" + hashlib.sha256(  # engine/egress.py names it so
        str(PEERS / "shipyard-root").encode()).hexdigest()[:10]
    found += [f"nft {t}" for t in after.nft_tables - before.nft_tables
              if t in ("table ip nat", "table ip filter", ours)]
    if after.netavark_chains and not before.netavark_chains:
        found.append("iptables NETAVARK chains")
    found += [f"{d} under {PEERS}" for d in ("docker", "podman-storage", "shipyard-root")
              if (PEERS / d).exists()]
    return found
