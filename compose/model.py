"""The Compose application model: what the rest of Shipyard works from.

Frozen dataclasses only; mappings are read-only views. Durations are float seconds, sizes
int bytes, paths absolute. `loader.bind` builds these from the canonical project dict, which
`Project.canonical` keeps (JSON-able) for `shipyard config` and the config hash.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any


class FrozenMap(Mapping[str, Any]):
    """A read-only, hashable mapping (dataclass defaults must be immutable)."""

    __slots__ = ("_data",)

    def __init__(self, data: Mapping[str, Any] | None = None) -> None:
        self._data = dict(data or {})

    def __getitem__(self, key: str) -> Any:
        return self._data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __repr__(self) -> str:
        return f"FrozenMap({self._data!r})"

    def __hash__(self) -> int:
        try:
            return hash(frozenset(self._data.items()))
        except TypeError:  # unhashable values (x- extensions): equal maps still hash equal
            return hash(frozenset(self._data))


EMPTY: Mapping[str, Any] = FrozenMap()


@dataclass(frozen=True, slots=True)
class Port:
    """One entry of `ports` (long syntax)."""

    target: int
    published: str | None = None  # a port or a range ("8000-8010"); None: not published
    host_ip: str | None = None
    protocol: str = "tcp"
    mode: str = "ingress"
    name: str | None = None
    app_protocol: str | None = None


@dataclass(frozen=True, slots=True)
class Mount:
    """One entry of `volumes`: a bind, a named or anonymous volume, a tmpfs, ..."""

    type: str  # bind | volume | tmpfs | npipe | cluster | image
    target: str
    source: str | None = None  # absolute host path (bind), volume key (volume), None (anonymous)
    read_only: bool = False
    consistency: str | None = None
    propagation: str | None = None
    create_host_path: bool = True
    selinux: str | None = None
    nocopy: bool = False
    subpath: str | None = None
    tmpfs_size: int | None = None
    tmpfs_mode: int | None = None


@dataclass(frozen=True, slots=True)
class ServiceNetwork:
    """A service's attachment to one of the project's networks."""

    name: str  # the network's key in the project
    aliases: tuple[str, ...] = ()
    ipv4_address: str | None = None
    ipv6_address: str | None = None
    mac_address: str | None = None
    priority: int = 0
    gw_priority: int = 0
    link_local_ips: tuple[str, ...] = ()
    interface_name: str | None = None
    driver_opts: Mapping[str, str] = EMPTY


@dataclass(frozen=True, slots=True)
class DependsOn:
    """One entry of `depends_on` (long syntax)."""

    condition: str = "service_started"  # | service_healthy | service_completed_successfully
    required: bool = True
    restart: bool = False


@dataclass(frozen=True, slots=True)
class Healthcheck:
    """A service's `healthcheck`; durations in seconds."""

    test: tuple[str, ...] = ()  # ("CMD", ...), ("CMD-SHELL", cmd), ("NONE",); () = image's
    interval: float | None = None
    timeout: float | None = None
    start_period: float | None = None
    start_interval: float | None = None
    retries: int | None = None
    disable: bool = False


@dataclass(frozen=True, slots=True)
class Build:
    """A service's `build` (long syntax); `context` is absolute."""

    context: str
    dockerfile: str | None = "Dockerfile"
    dockerfile_inline: str | None = None
    args: Mapping[str, str | None] = EMPTY
    target: str | None = None
    labels: Mapping[str, str] = EMPTY
    cache_from: tuple[str, ...] = ()
    cache_to: tuple[str, ...] = ()
    no_cache: bool = False
    pull: bool = False
    network: str | None = None
    shm_size: int | None = None
    extra_hosts: Mapping[str, tuple[str, ...]] = EMPTY
    tags: tuple[str, ...] = ()
    platforms: tuple[str, ...] = ()
    additional_contexts: Mapping[str, str] = EMPTY
    secrets: tuple[FileRef, ...] = ()
    ssh: Mapping[str, str | None] = EMPTY
    privileged: bool = False


@dataclass(frozen=True, slots=True)
class Resources:
    """CPU, memory and pid limits or reservations (`deploy.resources`)."""

    cpus: float | None = None
    memory: int | None = None
    pids: int | None = None


@dataclass(frozen=True, slots=True)
class RestartPolicy:
    """`deploy.restart_policy`; durations in seconds."""

    condition: str = "any"  # none | on-failure | any
    delay: float | None = None
    max_attempts: int | None = None
    window: float | None = None


@dataclass(frozen=True, slots=True)
class Deploy:
    """A service's `deploy` section (what a single engine can honour of it)."""

    mode: str = "replicated"
    replicas: int | None = None
    limits: Resources = field(default_factory=Resources)
    reservations: Resources = field(default_factory=Resources)
    restart_policy: RestartPolicy | None = None
    labels: Mapping[str, str] = EMPTY


@dataclass(frozen=True, slots=True)
class Ulimit:
    """One entry of `ulimits` (soft and hard limits)."""

    soft: int
    hard: int


@dataclass(frozen=True, slots=True)
class FileRef:
    """A service's use of a secret or config."""

    source: str
    target: str | None = None
    uid: str | None = None
    gid: str | None = None
    mode: int | None = None


@dataclass(frozen=True, slots=True)
class Logging:
    """A service's `logging` driver and its options."""

    driver: str | None = None
    options: Mapping[str, str] = EMPTY


@dataclass(frozen=True, slots=True)
class Hook:
    """A `post_start` or `pre_stop` command."""

    command: tuple[str, ...]
    user: str | None = None
    privileged: bool = False
    working_dir: str | None = None
    environment: Mapping[str, str | None] = EMPTY


@dataclass(frozen=True, slots=True)
class Service:
    """One service, in canonical (long) form."""

    name: str
    image: str | None = None
    build: Build | None = None
    command: tuple[str, ...] | None = None  # None: the image's CMD
    entrypoint: tuple[str, ...] | None = None  # None: the image's ENTRYPOINT
    environment: Mapping[str, str | None] = EMPTY  # None: declared but unset
    ports: tuple[Port, ...] = ()
    expose: tuple[str, ...] = ()
    volumes: tuple[Mount, ...] = ()
    tmpfs: tuple[str, ...] = ()
    networks: Mapping[str, ServiceNetwork] = EMPTY
    network_mode: str | None = None
    depends_on: Mapping[str, DependsOn] = EMPTY
    links: tuple[str, ...] = ()
    external_links: tuple[str, ...] = ()
    volumes_from: tuple[str, ...] = ()
    healthcheck: Healthcheck | None = None
    restart: str = "no"
    deploy: Deploy | None = None
    scale: int = 1
    user: str | None = None
    working_dir: str | None = None
    hostname: str | None = None
    domainname: str | None = None
    dns: tuple[str, ...] = ()
    dns_opt: tuple[str, ...] = ()
    dns_search: tuple[str, ...] = ()
    extra_hosts: Mapping[str, tuple[str, ...]] = EMPTY
    cap_add: tuple[str, ...] = ()
    cap_drop: tuple[str, ...] = ()
    privileged: bool = False
    read_only: bool = False
    init: bool = False
    stop_signal: str | None = None
    stop_grace_period: float | None = None
    ulimits: Mapping[str, Ulimit] = EMPTY
    sysctls: Mapping[str, str] = EMPTY
    shm_size: int | None = None
    mem_limit: int | None = None
    mem_reservation: int | None = None
    memswap_limit: int | None = None  # -1: unlimited
    cpus: float | None = None
    cpu_shares: int | None = None
    cpuset: str | None = None
    pids_limit: int | None = None
    oom_score_adj: int | None = None
    labels: Mapping[str, str] = EMPTY
    annotations: Mapping[str, str] = EMPTY
    container_name: str | None = None
    ipc: str | None = None
    pid: str | None = None
    uts: str | None = None
    userns_mode: str | None = None
    cgroup: str | None = None
    cgroup_parent: str | None = None
    devices: tuple[str, ...] = ()
    group_add: tuple[str, ...] = ()
    security_opt: tuple[str, ...] = ()
    secrets: tuple[FileRef, ...] = ()
    configs: tuple[FileRef, ...] = ()
    profiles: tuple[str, ...] = ()
    pull_policy: str = "missing"
    platform: str | None = None
    tty: bool = False
    stdin_open: bool = False
    logging: Logging | None = None
    post_start: tuple[Hook, ...] = ()
    pre_stop: tuple[Hook, ...] = ()
    runtime: str | None = None
    mac_address: str | None = None
    extensions: Mapping[str, Any] = EMPTY  # x-* keys, as written

    @property
    def replicas(self) -> int:
        return self.scale


@dataclass(frozen=True, slots=True)
class IpamConfig:
    """One entry of a network's `ipam.config`."""

    subnet: str | None = None
    ip_range: str | None = None
    gateway: str | None = None
    aux_addresses: Mapping[str, str] = EMPTY


@dataclass(frozen=True, slots=True)
class Network:
    """A top-level network."""

    key: str  # the name in the Compose file
    name: str  # the engine's name: <project>_<key>, `name:`, or the external name
    driver: str | None = None
    driver_opts: Mapping[str, str] = EMPTY
    ipam_driver: str | None = None
    ipam: tuple[IpamConfig, ...] = ()
    external: bool = False
    internal: bool = False
    enable_ipv4: bool = True
    enable_ipv6: bool = False
    attachable: bool = False
    labels: Mapping[str, str] = EMPTY


@dataclass(frozen=True, slots=True)
class Volume:
    """A top-level volume."""

    key: str
    name: str
    driver: str | None = None
    driver_opts: Mapping[str, str] = EMPTY
    external: bool = False
    labels: Mapping[str, str] = EMPTY


@dataclass(frozen=True, slots=True)
class Secret:
    """A top-level secret (also used for configs, which may carry `content`)."""

    key: str
    name: str
    file: str | None = None
    environment: str | None = None
    content: str | None = None
    external: bool = False
    labels: Mapping[str, str] = EMPTY


Config = Secret


@dataclass(frozen=True, slots=True)
class Project:
    """A loaded Compose project: what `up`, `down` and the other commands act on."""

    name: str
    working_dir: str
    config_files: tuple[str, ...] = ()
    services: Mapping[str, Service] = EMPTY  # by name, sorted by name
    networks: Mapping[str, Network] = EMPTY  # by key
    volumes: Mapping[str, Volume] = EMPTY
    secrets: Mapping[str, Secret] = EMPTY
    configs: Mapping[str, Config] = EMPTY
    environment: Mapping[str, str] = field(default=EMPTY, compare=False, repr=False)
    profiles: tuple[str, ...] = ()
    extensions: Mapping[str, Any] = EMPTY
    warnings: tuple[str, ...] = field(default=(), compare=False)
    # The canonical, JSON-able form this model was bound from (what `config` prints).
    canonical: Mapping[str, Any] = field(default=EMPTY, compare=False, repr=False)

    def service(self, name: str) -> Service:
        """The service called `name`; raises NotFound naming the known services."""
        try:
            return self.services[name]
        except KeyError:
            from engine.errors import NotFound

            known = ", ".join(self.services) or "none"
            raise NotFound(f'no such service: "{name}" (services: {known})') from None
