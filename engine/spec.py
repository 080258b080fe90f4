"""Pure: a container's configuration + its image's config -> an OCI runtime spec (config.json).

`build_spec` follows Docker's semantics where they are observable from inside the container
(entrypoint/cmd merging, env overlay and PATH default, user and group resolution from the
image's /etc/passwd and /etc/group, default capabilities, masked/readonly paths, default
mounts and devices). The result also runs under `runc run`. `shim_options` extracts what the
per-container monitor needs that the OCI spec has no place for (restart policy, healthcheck,
stop signal). No I/O: the caller reads the image's passwd/group files and passes the text.
"""

# No `from __future__ import annotations` here: engine.serde reads these classes' type
# hints to rebuild stored records, and real annotation objects cost nothing to read,
# where strings are compiled by typing.get_type_hints in every process (~1.5 ms).
import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from engine.errors import InvalidArgument

# resource, signal, the capability table and the seccomp profile (which imports ctypes) are
# imported by the functions that use them: `engine.containers` imports this module for its
# types on every command, and most commands never build a spec.

OCI_VERSION = "1.0.2"
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
DEFAULT_SHM_SIZE = 64 * 1024 * 1024
DEFAULT_NOFILE = 1048576

MASKED_PATHS = (
    "/proc/asound", "/proc/acpi", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
    "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi",
    "/sys/firmware", "/sys/devices/virtual/powercap",
)
READONLY_PATHS = ("/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger")

# Device cgroup rules Docker allows by default, after denying everything.
DEFAULT_DEVICE_RULES = (
    ("c", None, None, "m"), ("b", None, None, "m"),
    ("c", 1, 3, "rwm"), ("c", 1, 5, "rwm"), ("c", 1, 7, "rwm"), ("c", 1, 8, "rwm"),
    ("c", 1, 9, "rwm"), ("c", 5, 0, "rwm"), ("c", 5, 1, "rwm"), ("c", 5, 2, "rwm"),
    ("c", 136, None, "rwm"), ("c", 10, 200, "rwm"),
)

# Namespaces a container gets, in the order init joins/creates them.
NAMESPACE_ORDER = ("pid", "network", "ipc", "uts", "mount", "cgroup")


@dataclass(frozen=True, slots=True)
class Resources:
    """A container's cgroup limits."""

    memory: int | None = None          # bytes
    memory_swap: int | None = None     # bytes of memory+swap; -1 = unlimited (Docker)
    cpus: float | None = None
    cpu_shares: int | None = None
    pids_limit: int | None = None
    shm_size: int | None = None        # bytes


@dataclass(frozen=True, slots=True)
class Ulimit:
    """One rlimit of the container's process."""

    name: str    # "nofile", "nproc", ... (RLIMIT_ without prefix, any case)
    soft: int
    hard: int


@dataclass(frozen=True, slots=True)
class Mount:
    """An OCI mount given by the engine (bind, volume, tmpfs)."""

    destination: str
    type: str = "bind"
    source: str = ""
    options: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class RestartPolicy:
    """What the monitor does when the container's process exits."""

    name: str = "no"          # no | always | on-failure | unless-stopped
    max_retries: int = 0      # on-failure only; 0 = unlimited


@dataclass(frozen=True, slots=True)
class Healthcheck:
    """The monitor's health probe; durations in seconds."""

    test: tuple[str, ...]     # ("CMD", ...), ("CMD-SHELL", "..."), ("NONE",)
    interval: float = 30.0    # seconds
    timeout: float = 30.0
    retries: int = 3
    start_period: float = 0.0
    start_interval: float = 5.0


@dataclass(frozen=True, slots=True)
class ContainerConfig:
    """A container's runtime configuration (what becomes config.json and the monitor's options)."""

    id: str
    image: str = ""
    image_id: str = ""
    entrypoint: tuple[str, ...] | None = None
    cmd: tuple[str, ...] | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    working_dir: str = ""
    user: str = ""
    group_add: tuple[str, ...] = ()
    hostname: str = ""
    domainname: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)
    tty: bool = False
    stdin_open: bool = False
    console_size: tuple[int, int] = (0, 0)  # (rows, columns) of the TTY at the start; 0: unset
    cap_add: tuple[str, ...] = ()
    cap_drop: tuple[str, ...] = ()
    privileged: bool = False
    read_only: bool = False
    init: bool = False
    sysctls: Mapping[str, str] = field(default_factory=dict)
    ulimits: tuple[Ulimit, ...] = ()
    resources: Resources = Resources()
    security_opt: tuple[str, ...] = ()
    mounts: tuple[Mount, ...] = ()
    stop_signal: str = ""
    stop_timeout: float | None = None
    restart: RestartPolicy = RestartPolicy()
    healthcheck: Healthcheck | None = None
    network: str | None = None   # netns path; None = new empty netns; "host"
    namespaces: Mapping[str, str] = field(default_factory=dict)  # pid/ipc/uts: "host" or path
    hosts_file: str | None = None
    resolv_conf: str | None = None
    hostname_file: str | None = None
    cgroup_parent: str = "/shipyard"


# ---- process ------------------------------------------------------------------------------

def command(config: ContainerConfig, image_config: Mapping) -> list[str]:
    """Docker's merge: an entrypoint given by the container replaces the image's and drops
    the image's Cmd; without one, Cmd falls back to the image's. `("",)` clears the
    entrypoint."""
    entrypoint = config.entrypoint
    cmd = list(config.cmd) if config.cmd is not None else None
    if entrypoint == ("",):
        entrypoint = ()
        ep: list[str] = []
    elif not entrypoint:
        if not cmd:
            cmd = list(image_config.get("Cmd") or [])
        ep = list(image_config.get("Entrypoint") or []) if entrypoint is None else []
    else:
        ep = list(entrypoint)
    args = ep + (cmd or [])
    if not args:
        raise InvalidArgument(f"container {config.id[:12]}: no command specified "
                              "(the image has no Entrypoint/Cmd and none was given)")
    return args


def environment(config: ContainerConfig, image_config: Mapping, home: str,
                hostname: str) -> list[str]:
    """Image Env overlaid by the container's env; PATH, HOSTNAME and HOME defaulted."""
    merged: dict[str, str] = {}
    for item in image_config.get("Env") or []:
        key, _, value = item.partition("=")
        merged[key] = value
    merged.update(config.env)
    merged.setdefault("PATH", DEFAULT_PATH)
    merged = {"PATH": merged.pop("PATH"), "HOSTNAME": hostname, **merged}
    if config.tty:
        merged.setdefault("TERM", "xterm")
    merged.setdefault("HOME", home or "/")
    return [f"{k}={v}" for k, v in merged.items()]


def _parse_table(text: str | None, fields: int) -> list[list[str]]:
    rows = []
    for line in (text or "").splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        parts = line.split(":")
        if len(parts) >= fields:
            rows.append(parts)
    return rows


def resolve_user(user: str, passwd: str | None, group: str | None,
                 group_add: tuple[str, ...] = ()) -> tuple[int, int, list[int], str]:
    """Docker's user resolution -> (uid, gid, additional gids, home).

    `user` is "", "name", "uid", "name:group", "uid:gid" (group by name or number). A name
    must exist in the image's /etc/passwd; a number need not (gid then defaults to 0)."""
    users = _parse_table(passwd, 7)
    groups = _parse_table(group, 4)
    spec_user, _, spec_group = (user or "root").partition(":")
    entry = next((u for u in users if u[0] == spec_user), None)
    if entry is None and spec_user.isdigit():
        entry = next((u for u in users if u[2] == spec_user), None)
    if entry is not None:
        uid, gid, home, name = int(entry[2]), int(entry[3]), entry[5], entry[0]
    elif spec_user.isdigit():
        uid, gid, home, name = int(spec_user), 0, "/", ""
    elif spec_user == "root":
        uid, gid, home, name = 0, 0, "/root", "root"
    else:
        raise InvalidArgument(f'unable to find user {spec_user}: no matching entries in '
                              'passwd file')

    def group_id(ref: str) -> int:
        if ref.isdigit():
            return int(ref)
        found = next((g for g in groups if g[0] == ref), None)
        if found is None:
            raise InvalidArgument(f"unable to find group {ref}: no matching entries in "
                                  "group file")
        return int(found[2])

    if spec_group:
        gid = group_id(spec_group)
    # Like Docker (runc's user lookup): the primary group first, then the groups that list
    # the user by name (unless a group was given explicitly), then group_add.
    extra: list[int] = [gid]
    if name and not spec_group:
        extra += sorted(int(g[2]) for g in groups if name in g[3].split(","))
    extra += [group_id(ref) for ref in group_add]
    return uid, gid, list(dict.fromkeys(extra)), home


def _rlimits(config: ContainerConfig,
             host_limits: Mapping[str, tuple[int, int]]) -> list[dict]:
    """Default nofile plus the configured ulimits, capped at the caller's hard limits
    (raising a hard limit needs CAP_SYS_RESOURCE, which this kind of host withholds)."""
    wanted: dict[str, tuple[int, int]] = {"nofile": (DEFAULT_NOFILE, DEFAULT_NOFILE)}
    for u in config.ulimits:
        wanted[u.name.lower()] = (u.soft, u.hard)
    import resource

    out = []
    for name, (soft, hard) in wanted.items():
        if not hasattr(resource, f"RLIMIT_{name.upper()}"):
            raise InvalidArgument(f"ulimits: unknown resource {name!r}")
        host = host_limits.get(name)
        if host is not None and host[1] != resource.RLIM_INFINITY:
            hard = min(hard, host[1]) if hard >= 0 else host[1]
            soft = min(soft, hard) if soft >= 0 else hard
        out.append({"type": f"RLIMIT_{name.upper()}", "hard": hard, "soft": soft})
    return out


def host_rlimits() -> dict[str, tuple[int, int]]:
    """The calling process's limits, the ceiling for a container's."""
    import resource

    return {name: resource.getrlimit(getattr(resource, f"RLIMIT_{name.upper()}"))
            for name in ("nofile", "nproc", "core", "memlock", "stack", "nice", "rtprio")}


def signal_number(name: str | int) -> int:
    """'SIGTERM', 'TERM', 'term', '15' -> 15. Raises InvalidArgument."""
    if isinstance(name, int):
        return name
    text = name.strip().upper()
    if text.isdigit():
        return int(text)
    if not text.startswith("SIG"):
        text = "SIG" + text
    import signal

    try:
        return int(signal.Signals[text])
    except KeyError:
        raise InvalidArgument(f"invalid signal: {name}") from None


# ---- mounts and linux ---------------------------------------------------------------------

def default_mounts(shm_size: int | None) -> list[dict]:
    shm = shm_size or DEFAULT_SHM_SIZE
    return [
        {"destination": "/proc", "type": "proc", "source": "proc",
         "options": ["nosuid", "noexec", "nodev"]},
        {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
         "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
        {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
         "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620",
                     "gid=5"]},
        {"destination": "/sys", "type": "sysfs", "source": "sysfs",
         "options": ["nosuid", "noexec", "nodev", "ro"]},
        {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
         "options": ["ro", "nosuid", "noexec", "nodev"]},
        {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
         "options": ["nosuid", "noexec", "nodev"]},
        {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
         "options": ["nosuid", "noexec", "nodev", "mode=1777", f"size={shm}"]},
    ]


def _etc_mounts(config: ContainerConfig) -> list[dict]:
    out = []
    for dest, src in (("/etc/resolv.conf", config.resolv_conf),
                      ("/etc/hostname", config.hostname_file), ("/etc/hosts", config.hosts_file)):
        if src:
            out.append({"destination": dest, "type": "bind", "source": src,
                        "options": ["rbind", "rprivate"]})
    return out


def _namespaces(config: ContainerConfig) -> list[dict]:
    out = []
    for kind in NAMESPACE_ORDER:
        if kind == "network":
            if config.network == "host":
                continue
            ns = {"type": "network"}
            if config.network:
                ns["path"] = config.network
            out.append(ns)
            continue
        mode = config.namespaces.get(kind)
        if mode == "host":
            continue
        out.append({"type": kind, "path": mode} if mode else {"type": kind})
    return out


def _resources(config: ContainerConfig) -> dict:
    r = config.resources
    out: dict = {"devices": [{"allow": False, "access": "rwm"}]}
    if not config.privileged:
        for kind, major, minor, access in DEFAULT_DEVICE_RULES:
            rule: dict = {"allow": True, "type": kind, "access": access}
            if major is not None:
                rule["major"] = major
            if minor is not None:
                rule["minor"] = minor
            out["devices"].append(rule)
    else:
        out["devices"] = [{"allow": True, "access": "rwm"}]
    memory: dict = {}
    if r.memory:
        memory["limit"] = r.memory
        if r.memory_swap is None or r.memory_swap == 0:
            memory["swap"] = 2 * r.memory
        elif r.memory_swap == -1:
            memory["swap"] = -1
        else:
            if r.memory_swap < r.memory:
                raise InvalidArgument("memory_swap must be at least memory (it is the total of "
                                      "memory and swap), or -1 for unlimited swap")
            memory["swap"] = r.memory_swap
    if memory:
        out["memory"] = memory
    cpu: dict = {}
    if r.cpus:
        cpu["period"] = 100000
        cpu["quota"] = int(r.cpus * 100000)
    if r.cpu_shares:
        cpu["shares"] = r.cpu_shares
    if cpu:
        out["cpu"] = cpu
    if r.pids_limit:
        out["pids"] = {"limit": r.pids_limit}
    return out


def build_spec(config: ContainerConfig, image_config: Mapping, rootfs: str,
               passwd: str | None = None, group: str | None = None,
               host_limits: Mapping[str, tuple[int, int]] | None = None,
               machine: str | None = None) -> dict:
    """The OCI runtime spec for `config` (see module doc). `image_config` is the image
    config's "config" object (Env, Entrypoint, Cmd, WorkingDir, User, ...). Raises
    InvalidArgument for what the user got wrong (unknown user, capability, signal, ...)."""
    hostname = config.hostname or config.id[:12]
    user_ref = config.user or image_config.get("User") or ""
    uid, gid, extra_gids, home = resolve_user(user_ref, passwd, group, config.group_add)
    from engine.runtime import caps as capabilities

    try:
        cap_list = capabilities.resolve(config.cap_add, config.cap_drop, config.privileged)
    except capabilities.UnknownCapability as e:
        raise InvalidArgument(f"unknown capability: {e.args[0]!r}") from None
    no_new_privs = False
    seccomp_on = not config.privileged
    for opt in config.security_opt:
        key, _, value = opt.replace("=", ":", 1).partition(":")
        if key == "no-new-privileges":
            no_new_privs = value in ("", "true")
        elif key == "seccomp":
            if value != "unconfined":
                raise InvalidArgument(f"security_opt: seccomp={value}: only 'unconfined' "
                                      "is supported")
            seccomp_on = False
        elif key in ("apparmor", "label"):
            continue  # no LSM here; accepted for compatibility
        else:
            raise InvalidArgument(f"security_opt: unknown option {opt!r}")
    limits = host_rlimits() if host_limits is None else host_limits
    process = {
        "terminal": config.tty,
        "user": {"uid": uid, "gid": gid, "additionalGids": extra_gids},
        "args": command(config, image_config),
        "env": environment(config, image_config, home, hostname),
        "cwd": config.working_dir or image_config.get("WorkingDir") or "/",
        "capabilities": {k: list(cap_list) for k in ("bounding", "effective", "permitted")},
        "rlimits": _rlimits(config, limits),
        "noNewPrivileges": no_new_privs,
    }
    if config.tty and all(config.console_size):
        process["consoleSize"] = {"height": config.console_size[0],
                                  "width": config.console_size[1]}
    if uid == 0:
        process["capabilities"]["inheritable"] = []
    linux: dict = {
        "cgroupsPath": f"{config.cgroup_parent.rstrip('/')}/{config.id}",
        "namespaces": _namespaces(config),
        "resources": _resources(config),
        "sysctl": dict(config.sysctls),
    }
    if not config.privileged:
        linux["maskedPaths"] = list(MASKED_PATHS)
        linux["readonlyPaths"] = list(READONLY_PATHS)
    if seccomp_on:
        from engine.runtime import seccomp

        # os.uname().machine is what platform.machine() returns on Linux, without platform.
        linux["seccomp"] = seccomp.profile(cap_list, machine or os.uname().machine)
    mounts = default_mounts(config.resources.shm_size)
    if config.privileged:
        for m in mounts:
            if m["type"] in ("sysfs", "cgroup"):
                m["options"] = [o for o in m["options"] if o != "ro"] + ["rw"]
    given = [{"destination": m.destination, "type": m.type, "source": m.source,
              "options": list(m.options)} for m in config.mounts]
    given_dest = {m["destination"] for m in given}
    mounts = [m for m in mounts if m["destination"] not in given_dest]
    mounts += [m for m in _etc_mounts(config) if m["destination"] not in given_dest]
    mounts += given
    spec = {
        "ociVersion": OCI_VERSION,
        "process": process,
        "root": {"path": rootfs, "readonly": config.read_only},
        "hostname": hostname,
        "mounts": mounts,
        "annotations": {"org.opencontainers.image.ref.name": config.image} if config.image
        else {},
        "linux": linux,
    }
    if config.domainname:
        spec["domainname"] = config.domainname
    return spec


def shim_options(config: ContainerConfig) -> dict:
    """What the shim needs beyond config.json: stop signal/timeout, restart, healthcheck,
    stdio (tty, stdin_open), init. Plain JSON-able data (the shim reads it without the
    engine package)."""
    policy = config.restart
    if policy.name not in ("no", "always", "on-failure", "unless-stopped"):
        raise InvalidArgument(f"restart: unknown policy {policy.name!r} (expected no, always, "
                              "on-failure[:max-retries] or unless-stopped)")
    health = None
    hc = config.healthcheck
    if hc is not None and hc.test and hc.test[0] != "NONE":
        kind = hc.test[0]
        if kind == "CMD":
            test = list(hc.test[1:])
        elif kind == "CMD-SHELL":
            test = ["/bin/sh", "-c", " ".join(hc.test[1:])]
        else:
            raise InvalidArgument(f"healthcheck: test must start with CMD, CMD-SHELL or NONE, "
                                  f"not {kind!r}")
        if not test:
            raise InvalidArgument("healthcheck: empty test command")
        health = {"test": test, "interval": hc.interval or 30.0, "timeout": hc.timeout or 30.0,
                  "retries": hc.retries or 3, "start_period": hc.start_period,
                  "start_interval": hc.start_interval or 5.0}
    return {
        "id": config.id,
        "stop_signal": signal_number(config.stop_signal or "SIGTERM"),
        "stop_timeout": 10.0 if config.stop_timeout is None else config.stop_timeout,
        "restart": {"name": policy.name, "max_retries": policy.max_retries},
        "healthcheck": health,
        "tty": config.tty,
        "console_size": list(config.console_size),
        "stdin_open": config.stdin_open,
        "init": config.init,
    }
