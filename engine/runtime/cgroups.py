"""Per-container cgroups on cgroup v2 or on v1 (per-controller hierarchies, hybrid hosts).

Stdlib only (the shim imports it by path). A container's cgroup is named by the spec's
`linux.cgroupsPath`, e.g. "/shipyard/<id>", taken from the root of every hierarchy (Docker's
cgroupfs driver does the same). `Cgroup(path)` finds the hierarchies from
/proc/self/mountinfo; `create()`, `apply(resources)`, `add(pid)`, `pids()`, `freeze()`,
`thaw()`, `kill()` and `remove()` act on all of them. `remove()` also prunes parent
directories it leaves empty, so nothing empty stays behind.
"""

from __future__ import annotations

import _signal as signal  # the C module: `signal` imports enum (~1 MB per shim)
import os
import time

try:
    from . import state
except ImportError:  # imported by path from the shim
    import state  # type: ignore[no-redef]

V1_CONTROLLERS = ("cpu", "cpuacct", "cpuset", "memory", "devices", "freezer", "pids", "blkio",
                  "net_cls", "net_prio", "perf_event", "hugetlb", "rdma", "misc")


def hierarchies(mountinfo: str | None = None) -> dict[str, str]:
    """Mount points of the cgroup hierarchies: {"unified": path} on pure v2; on v1/hybrid
    {controller or "name=x": mount point} (a co-mounted "cpu,cpuacct" maps each name)."""
    if mountinfo is None:
        with open("/proc/self/mountinfo") as f:
            mountinfo = f.read()
    v1: dict[str, str] = {}
    v2: str | None = None
    for line in mountinfo.splitlines():
        left, _, right = line.partition(" - ")
        fields = left.split()
        rfields = right.split()
        if len(rfields) < 3 or len(fields) < 5:
            continue
        fstype, mountpoint = rfields[0], fields[4]
        if fstype == "cgroup2":
            v2 = v2 or mountpoint
        elif fstype == "cgroup":
            for opt in rfields[2].split(","):
                if opt in V1_CONTROLLERS or opt.startswith("name="):
                    v1.setdefault(opt, mountpoint)
    if v1:
        return v1
    return {"unified": v2} if v2 else {}


_remembered: dict[str, str] | None = None


def remember_hierarchies() -> None:
    """Reads the mount table once for every later `Cgroup` of this process and its children
    (the fork server does, for the shims it forks, and a command, for the containers it
    handles: hosts do not remount cgroups under a running command). Idempotent."""
    global _remembered
    if _remembered is None:
        _remembered = hierarchies()


def _write(path: str, value: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.write(fd, value.encode())
    finally:
        os.close(fd)


def _read(path: str) -> str:
    return state.read_bytes(path).decode()  # no io objects: see state.read_bytes


class Cgroup:
    """One container's cgroup across all hierarchies."""

    __slots__ = ("mounts", "path", "v2")

    def __init__(self, path: str, mounts: dict[str, str] | None = None) -> None:
        self.path = "/" + path.strip("/")
        if mounts is None:
            mounts = _remembered if _remembered is not None else hierarchies()
        self.mounts = mounts
        self.v2 = "unified" in self.mounts

    def dirs(self) -> list[str]:
        """One directory per distinct hierarchy."""
        seen: dict[str, None] = {}
        for mountpoint in self.mounts.values():
            seen.setdefault(mountpoint + self.path)
        return list(seen)

    def dir(self, controller: str) -> str | None:
        mountpoint = self.mounts.get("unified" if self.v2 else controller)
        return None if mountpoint is None else mountpoint + self.path

    def create(self) -> None:
        for attempt in range(5):
            try:
                for d in self.dirs():
                    os.makedirs(d, exist_ok=True)
                    if d.startswith(self.mounts.get("cpuset", "\0") + "/"):
                        self._init_cpuset(d)
                break
            except FileNotFoundError:
                # a neighbour pruned a shared parent between our mkdirs: try again
                if attempt == 4:
                    raise
        if self.v2:
            self._enable_controllers()

    def _init_cpuset(self, leaf: str) -> None:
        # v1 cpuset refuses tasks until cpus and mems are set: copy them down the chain.
        root = self.mounts["cpuset"]
        parts = leaf[len(root):].strip("/").split("/")
        parent = root
        for part in parts:
            child = f"{parent}/{part}"
            for knob in ("cpuset.cpus", "cpuset.mems"):
                if not _read(f"{child}/{knob}").strip():
                    _write(f"{child}/{knob}", _read(f"{parent}/{knob}").strip())
            parent = child

    def _enable_controllers(self) -> None:
        root = self.mounts["unified"]
        parts = self.path.strip("/").split("/")
        parent = root
        wanted = set(_read(f"{root}/cgroup.controllers").split()) & {"cpu", "memory", "pids",
                                                                     "io", "cpuset"}
        for part in parts:  # each ancestor delegates the controllers to the next level
            have = set(_read(f"{parent}/cgroup.subtree_control").split())
            missing = wanted - have
            if missing:
                try:
                    _write(f"{parent}/cgroup.subtree_control",
                           " ".join("+" + c for c in sorted(missing)))
                except OSError:
                    pass  # best effort: limits on a missing controller fail later, clearly
            parent = f"{parent}/{part}"

    def apply(self, resources: dict) -> None:
        """Sets the OCI linux.resources limits (memory, cpu, pids, devices on v1)."""
        mem = resources.get("memory") or {}
        cpu = resources.get("cpu") or {}
        pids = resources.get("pids") or {}
        if self.v2:
            d = self.dir("memory")
            if mem.get("limit"):
                _write(f"{d}/memory.max", str(mem["limit"]))
                swap = mem.get("swap")
                if swap is not None and os.path.exists(f"{d}/memory.swap.max"):
                    _write(f"{d}/memory.swap.max",
                           "max" if swap < 0 else str(max(0, swap - mem["limit"])))
            if cpu.get("quota"):
                _write(f"{d}/cpu.max", f"{cpu['quota']} {cpu.get('period') or 100000}")
            if cpu.get("shares"):
                weight = 1 + ((cpu["shares"] - 2) * 9999) // 262142
                _write(f"{d}/cpu.weight", str(max(1, min(10000, weight))))
            if pids.get("limit"):
                _write(f"{d}/pids.max", str(pids["limit"]))
            return
        if mem.get("limit") and self.dir("memory"):
            d = self.dir("memory")
            _write(f"{d}/memory.limit_in_bytes", str(mem["limit"]))
            swap = mem.get("swap")
            if swap is not None and os.path.exists(f"{d}/memory.memsw.limit_in_bytes"):
                _write(f"{d}/memory.memsw.limit_in_bytes", str(swap))
        if self.dir("cpu"):
            d = self.dir("cpu")
            if cpu.get("quota"):
                _write(f"{d}/cpu.cfs_period_us", str(cpu.get("period") or 100000))
                _write(f"{d}/cpu.cfs_quota_us", str(cpu["quota"]))
            if cpu.get("shares"):
                _write(f"{d}/cpu.shares", str(cpu["shares"]))
        if pids.get("limit") and self.dir("pids"):
            _write(f"{self.dir('pids')}/pids.max", str(pids["limit"]))
        devices = resources.get("devices")
        if devices and self.dir("devices"):
            d = self.dir("devices")
            for rule in devices:
                entry = "{} {}:{} {}".format(
                    rule.get("type", "a"),
                    "*" if rule.get("major") is None else rule["major"],
                    "*" if rule.get("minor") is None else rule["minor"],
                    rule.get("access", "rwm"))
                if rule.get("type", "a") == "a":
                    entry = "a"
                _write(f"{d}/devices.{'allow' if rule.get('allow') else 'deny'}", entry)

    def add(self, pid: int) -> None:
        for d in self.dirs():
            _write(f"{d}/cgroup.procs", str(pid))

    def pids(self) -> list[int]:
        d = self.dir("pids") or self.dir("memory") or self.dirs()[0]
        try:
            return [int(p) for p in _read(f"{d}/cgroup.procs").split()]
        except FileNotFoundError:
            return []

    def freeze(self) -> None:
        if self.v2:
            _write(f"{self.dir('memory')}/cgroup.freeze", "1")
            return
        d = self.dir("freezer")
        _write(f"{d}/freezer.state", "FROZEN")
        for _ in range(1000):
            if _read(f"{d}/freezer.state").strip() == "FROZEN":
                return
            time.sleep(0.001)

    def thaw(self) -> None:
        if self.v2:
            _write(f"{self.dir('memory')}/cgroup.freeze", "0")
        else:
            _write(f"{self.dir('freezer')}/freezer.state", "THAWED")

    def frozen(self) -> bool:
        try:
            if self.v2:
                return _read(f"{self.dir('memory')}/cgroup.freeze").strip() == "1"
            return _read(f"{self.dir('freezer')}/freezer.state").strip() != "THAWED"
        except (FileNotFoundError, TypeError):
            return False

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Signals every process in the cgroup (frozen first on v1 so none can fork away)."""
        if self.v2 and sig == signal.SIGKILL and os.path.exists(
                f"{self.dir('memory')}/cgroup.kill"):
            _write(f"{self.dir('memory')}/cgroup.kill", "1")
            return
        freezable = not self.v2 and self.dir("freezer") and sig == signal.SIGKILL
        if freezable:
            try:
                self.freeze()
            except OSError:
                freezable = False
        for pid in self.pids():
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        if freezable:
            self.thaw()

    def memory_limit(self) -> int | None:
        d = self.dir("memory")
        name = "memory.max" if self.v2 else "memory.limit_in_bytes"
        try:
            raw = _read(f"{d}/{name}").strip()
        except (FileNotFoundError, TypeError):
            return None
        return None if raw == "max" else int(raw)

    def remove(self, timeout: float = 5.0) -> None:
        """Removes the cgroup (killing what is left), then prunes empty parents."""
        deadline = time.monotonic() + timeout
        for d in self.dirs():
            while True:
                try:
                    os.rmdir(d)
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise
                    self.kill()
                    time.sleep(0.005)
            self._prune(d)

    def _prune(self, leaf: str) -> None:
        parent = os.path.dirname(leaf)
        roots = set(self.mounts.values())
        while parent not in roots and parent != "/":
            try:
                os.rmdir(parent)
            except OSError:
                return
            parent = os.path.dirname(parent)
