"""Leak checks for integration tests: what the kernel holds before and after a test.

`snapshot()` records mounts, network links, named network namespaces, cgroups and processes;
`diff(before, after)` lists what appeared. A test asserts the diff is empty after cleanup.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

CGROUP_ROOTS = (Path("/sys/fs/cgroup"),)


@dataclass(frozen=True)
class Snapshot:
    mounts: frozenset[str]
    links: frozenset[str]
    netns: frozenset[str]
    cgroups: frozenset[str]
    pids: frozenset[int]


def _mounts() -> frozenset[str]:
    with open("/proc/self/mountinfo") as f:
        return frozenset(line.split()[4] for line in f)


def _links() -> frozenset[str]:
    return frozenset(os.listdir("/sys/class/net"))


def _netns() -> frozenset[str]:
    try:
        return frozenset(os.listdir("/run/netns"))
    except FileNotFoundError:
        return frozenset()


def _cgroups() -> frozenset[str]:
    """Cgroups under a `shipyard*` directory: where the engine puts containers and build
    steps (the machine's own agents create and drop cgroups of their own meanwhile)."""
    found: set[str] = set()
    for root in CGROUP_ROOTS:
        for dirpath, _dirnames, _ in os.walk(root):
            if "/shipyard" in dirpath:
                found.add(dirpath)
    return frozenset(found)


def _pids() -> frozenset[int]:
    return frozenset(int(p) for p in os.listdir("/proc") if p.isdigit())


ENGINE_PROGRAMS = ("shim.py", "dnsserver.py", "nsexec.py", "shipyard")


def _ours(pid: int, cmdline: str) -> bool:
    """Whether a process is one the engine could have left: a container's (its root is not
    the host's) or one of the engine's own programs. Other processes on the machine (a shell,
    another suite) are not this test's business."""
    try:
        if os.readlink(f"/proc/{pid}/root") != "/":
            return True
    except OSError:
        return False
    return any(program in cmdline for program in ENGINE_PROGRAMS) and "pytest" not in cmdline


def snapshot() -> Snapshot:
    return Snapshot(_mounts(), _links(), _netns(), _cgroups(), _pids())


def diff(before: Snapshot, after: Snapshot) -> dict[str, list]:
    """What `after` has that `before` did not. Processes count only if still alive and not
    zombies of the test itself."""
    leaked: dict[str, list] = {}
    for field in ("mounts", "links", "netns", "cgroups"):
        extra = sorted(getattr(after, field) - getattr(before, field))
        if extra:
            leaked[field] = extra
    procs = []
    for pid in sorted(after.pids - before.pids):
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        state = stat.rsplit(")", 1)[1].split()[0]
        if state != "Z" and _ours(pid, cmdline):
            procs.append(f"{pid} {cmdline.strip()}")
    if procs:
        leaked["processes"] = procs
    return leaked
