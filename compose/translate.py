"""Pure: a Compose service (of a project), replica number -> the engine's `CreateRequest`.

Names and labels are Docker Compose's, so tools that read them keep working: containers are
`<project>-<service>-<n>` (or `container_name`), networks and volumes carry their project
names from the model. No I/O: secrets and configs whose source is inline `content` or an
`environment` variable become files that the caller writes (`file_sources`) before it
creates the container; `source_dir` says where they will live.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from compose import __version__
from engine.errors import InvalidArgument, Unavailable

if TYPE_CHECKING:
    from compose.model import FileRef, Mount, Project, Service
    from engine.requests import CreateRequest, MountRequest

PREFIX = "com.docker.compose."
PROJECT = PREFIX + "project"
SERVICE = PREFIX + "service"
NUMBER = PREFIX + "container-number"
CONFIG_HASH = PREFIX + "config-hash"
ONEOFF = PREFIX + "oneoff"
WORKING_DIR = PREFIX + "project.working_dir"
CONFIG_FILES = PREFIX + "project.config_files"
DEPENDS_ON = PREFIX + "depends_on"
IMAGE = PREFIX + "image"
VERSION = PREFIX + "version"
NETWORK = PREFIX + "network"
VOLUME = PREFIX + "volume"

ANONYMOUS_RE = re.compile(r"^[0-9a-f]{64}$")  # the engine's names for anonymous volumes


def container_name(project: Project, service: Service | str, number: int) -> str:
    """`container_name` when set, else `<project>-<service>-<number>`."""
    svc = project.service(service) if isinstance(service, str) else service
    if svc.container_name:
        return svc.container_name
    return f"{project.name}-{svc.name}-{number}"


def oneoff_name(project: Project, service: str, suffix: str) -> str:
    """Docker Compose's name for a `run` container: `<project>-<service>-run-<suffix>`."""
    return f"{project.name}-{service}-run-{suffix}"


def config_hash(project: Project, service: str) -> str:
    from compose.confighash import service_hash

    return service_hash((project.canonical.get("services") or {}).get(service) or {})


def project_labels(project: Project) -> dict[str, str]:
    return {PROJECT: project.name, VERSION: __version__}


def network_labels(project: Project, key: str) -> dict[str, str]:
    return {**project_labels(project), NETWORK: key}


def volume_labels(project: Project, key: str) -> dict[str, str]:
    return {**project_labels(project), VOLUME: key}


def service_labels(project: Project, service: Service, number: int, *, oneoff: bool = False,
                   hash_: str | None = None) -> dict[str, str]:
    depends = ",".join(f"{name}:{d.condition}:{str(d.restart).lower()}"
                       for name, d in service.depends_on.items())
    labels = dict(service.labels)
    labels.update({
        PROJECT: project.name, SERVICE: service.name, NUMBER: str(number),
        ONEOFF: "True" if oneoff else "False",
        CONFIG_HASH: hash_ if hash_ is not None else config_hash(project, service.name),
        WORKING_DIR: project.working_dir, CONFIG_FILES: ",".join(project.config_files),
        DEPENDS_ON: depends, IMAGE: service.image or default_image(project, service),
        VERSION: __version__,
    })
    return labels


def default_image(project: Project, service: Service) -> str:
    """The image a service runs: `image`, or for a build without one `<project>-<service>`."""
    return service.image or f"{project.name}-{service.name}"


@dataclass(frozen=True, slots=True)
class FileSource:
    """A secret or config file the caller must write before creating the container."""

    path: str          # absolute, under source_dir
    content: str
    mode: int = 0o444
    uid: int | None = None
    gid: int | None = None


def service_request(project: Project, service: Service | str, number: int, *,
                    oneoff: bool = False, name: str | None = None,
                    config_hash_: str | None = None,
                    anonymous_volumes: Mapping[str, str] | None = None,
                    source_dir: str | None = None,
                    command: tuple[str, ...] | None = None,
                    entrypoint: tuple[str, ...] | None = None,
                    environment: Mapping[str, str] | None = None,
                    extra_labels: Mapping[str, str] | None = None,
                    publish_ports: bool = True) -> CreateRequest:
    """The request that creates replica `number` of `service`.

    `anonymous_volumes` maps a target path to the anonymous volume an earlier container of
    this replica used there (kept across recreation); `source_dir` is where `file_sources`
    writes inline secrets/configs (default: `<working_dir>/.shipyard`, which callers should
    override with a directory under the engine root). `command`, `entrypoint`, `environment`
    (overlaid) and `publish_ports` serve `run`."""
    from engine.requests import CreateRequest
    from engine.spec import ContainerConfig

    svc = project.service(service) if isinstance(service, str) else service
    labels = service_labels(project, svc, number, oneoff=oneoff, hash_=config_hash_)
    labels.update(extra_labels or {})
    env = {k: v for k, v in svc.environment.items() if v is not None}
    env.update(environment or {})
    image = default_image(project, svc)
    config = ContainerConfig(
        id="", image=image,
        entrypoint=_entrypoint(entrypoint if entrypoint is not None else svc.entrypoint),
        cmd=command if command is not None else svc.command,
        env=env, working_dir=svc.working_dir or "", user=svc.user or "",
        group_add=tuple(svc.group_add), hostname=svc.hostname or "",
        domainname=svc.domainname or "", labels=labels, tty=svc.tty,
        stdin_open=svc.stdin_open, cap_add=tuple(svc.cap_add), cap_drop=tuple(svc.cap_drop),
        privileged=svc.privileged, read_only=svc.read_only, init=bool(svc.init),
        sysctls=dict(svc.sysctls), ulimits=_ulimits(svc), resources=_resources(svc),
        security_opt=tuple(svc.security_opt), stop_signal=svc.stop_signal or "",
        stop_timeout=svc.stop_grace_period, restart=_restart(svc),
        healthcheck=_healthcheck(svc), namespaces=_namespaces(svc))
    mode, attachments = _networks(project, svc, name or container_name(project, svc, number))
    mounts = (*_mounts(project, svc, anonymous_volumes or {}),
              *_file_mounts(project, svc, source_dir or _default_source_dir(project)))
    return CreateRequest(
        image=image, config=config, name=name or container_name(project, svc, number),
        labels=labels, network_mode=mode, networks=attachments,
        ports=_ports(svc) if publish_ports else (), mounts=mounts,
        volumes_from=_volumes_from(project, svc), dns=tuple(svc.dns),
        dns_search=tuple(svc.dns_search), dns_options=tuple(svc.dns_opt),
        extra_hosts=tuple((host, ip) for host, ips in svc.extra_hosts.items() for ip in ips),
        expose=tuple(svc.expose), runtime=svc.runtime or "")


def _default_source_dir(project: Project) -> str:
    return os.path.join(project.working_dir, ".shipyard")


def _entrypoint(value: tuple[str, ...] | None) -> tuple[str, ...] | None:
    # Compose's `entrypoint: []` or "" clears the image's; the engine spells that ("",).
    return ("",) if value == () else value


def _ulimits(svc: Service) -> tuple:
    from engine.spec import Ulimit

    return tuple(Ulimit(name, u.soft, u.hard) for name, u in svc.ulimits.items())


def _resources(svc: Service):  # -> engine.spec.Resources
    from engine.spec import Resources

    limits = svc.deploy.limits if svc.deploy else None
    return Resources(
        memory=svc.mem_limit or (limits.memory if limits else None),
        memory_swap=svc.memswap_limit, cpus=svc.cpus or (limits.cpus if limits else None),
        cpu_shares=svc.cpu_shares,
        pids_limit=svc.pids_limit or (limits.pids if limits else None), shm_size=svc.shm_size)


def _restart(svc: Service):  # -> engine.spec.RestartPolicy
    from engine.spec import RestartPolicy

    policy = svc.deploy.restart_policy if svc.deploy else None
    if svc.restart == "no" and policy is not None:
        name = {"none": "no", "on-failure": "on-failure", "any": "always"}[policy.condition]
        return RestartPolicy(name, policy.max_attempts or 0 if name == "on-failure" else 0)
    name, _, count = svc.restart.partition(":")
    if name not in ("no", "always", "on-failure", "unless-stopped"):
        raise InvalidArgument(f'service "{svc.name}": restart "{svc.restart}" is not valid '
                              "(expected no, always, on-failure[:N] or unless-stopped)")
    return RestartPolicy(name, int(count) if count.isdigit() else 0)


def _healthcheck(svc: Service):  # -> engine.spec.Healthcheck | None
    from engine.spec import Healthcheck

    hc = svc.healthcheck
    if hc is None:
        return None
    if hc.disable or hc.test[:1] == ("NONE",):
        return Healthcheck(("NONE",))
    if not hc.test:
        return None  # the image's own healthcheck (if any) applies
    return Healthcheck(
        test=hc.test, interval=hc.interval or 30.0, timeout=hc.timeout or 30.0,
        retries=hc.retries if hc.retries is not None else 3,
        start_period=hc.start_period or 0.0, start_interval=hc.start_interval or 5.0)


def _namespaces(svc: Service) -> dict[str, str]:
    out = {}
    for kind, mode in (("ipc", svc.ipc), ("pid", svc.pid), ("uts", svc.uts)):
        if not mode or mode in ("private", "shareable"):
            continue
        if mode == "host":
            out[kind] = "host"
        else:
            raise Unavailable(f'service "{svc.name}": {kind}: "{mode}" is not supported yet '
                              "(only host or private)")
    return out


def _networks(project: Project, svc: Service, name: str) -> tuple[str, tuple]:
    from engine.requests import NetworkAttachment

    mode = svc.network_mode
    if mode:
        if mode.startswith("service:"):
            return "container:" + container_name(project, mode.removeprefix("service:"), 1), ()
        return mode, ()
    links = tuple(_links(project, svc))
    ordered = sorted(svc.networks.values(), key=lambda n: (-n.priority, n.name))
    attachments = []
    for net in ordered:
        network = project.networks.get(net.name)
        if network is None:
            raise InvalidArgument(f'service "{svc.name}" uses network "{net.name}", '
                                  "which is not defined")
        attachments.append(NetworkAttachment(
            network=network.name, aliases=tuple(dict.fromkeys((svc.name, *net.aliases))),
            ipv4_address=net.ipv4_address, mac_address=net.mac_address or svc.mac_address,
            priority=net.gw_priority or net.priority, links=links))
    return "bridge", tuple(attachments)


def _links(project: Project, svc: Service):
    for link in svc.links:
        target, _, alias = link.partition(":")
        if target in project.services:
            yield container_name(project, target, 1), alias or target
    for link in svc.external_links:
        target, _, alias = link.partition(":")
        yield target, alias or target


def _ports(svc: Service) -> tuple:
    from engine.requests import PortBinding

    out = []
    for port in svc.ports:
        low, _, high = (port.published or "").partition("-")
        out.append(PortBinding(container_port=port.target, protocol=port.protocol,
                               host_ip=port.host_ip or "", host_port=int(low or 0),
                               host_port_end=int(high or 0)))
    return tuple(out)


def _mounts(project: Project, svc: Service,
            anonymous: Mapping[str, str]) -> list[MountRequest]:
    from engine.requests import MountRequest

    out = []
    for m in svc.volumes:
        out.append(_mount(project, svc, m, anonymous))
    covered = {os.path.normpath(m.target) for m in out}
    # Anonymous volumes of the old container that the service does not declare (the
    # image's VOLUMEs): keep them too.
    for target, volume in sorted(anonymous.items()):
        if os.path.normpath(target) not in covered:
            out.append(MountRequest(type="volume", target=target, source=volume))
    for item in svc.tmpfs:
        # Imported only here: its regular expressions cost ~3 ms to compile at import.
        from compose.loader.syntax import parse_tmpfs

        path, size, mode = parse_tmpfs(item)  # checked by the loader (semantic.py)
        out.append(MountRequest(type="tmpfs", target=path, tmpfs_size=size, tmpfs_mode=mode))
    return out


def _mount(project: Project, svc: Service, m: Mount,
           anonymous: Mapping[str, str]) -> MountRequest:
    from engine.requests import MountRequest

    if m.type == "volume":
        if m.source:
            volume = project.volumes.get(m.source)
            source = volume.name if volume else m.source
            labels = {} if volume is None or volume.external else volume_labels(project, m.source)
        else:
            source = anonymous.get(m.target, "")
            labels = project_labels(project)
        return MountRequest(type="volume", target=m.target, source=source,
                            read_only=m.read_only, nocopy=m.nocopy, subpath=m.subpath or "",
                            volume_labels=labels)
    if m.type == "bind":
        return MountRequest(type="bind", target=m.target, source=m.source or "",
                            read_only=m.read_only, propagation=m.propagation or "",
                            create_host_path=m.create_host_path)
    if m.type == "tmpfs":
        return MountRequest(type="tmpfs", target=m.target, read_only=m.read_only,
                            tmpfs_size=m.tmpfs_size, tmpfs_mode=m.tmpfs_mode)
    raise Unavailable(f'service "{svc.name}": volumes: type "{m.type}" is not supported')


def _volumes_from(project: Project, svc: Service) -> tuple[str, ...]:
    out = []
    for item in svc.volumes_from:
        if item.startswith("container:"):
            out.append(item.removeprefix("container:"))
            continue
        name, _, mode = item.partition(":")
        target = container_name(project, name, 1) if name in project.services else name
        out.append(f"{target}:{mode}" if mode else target)
    return tuple(out)


# ---- secrets and configs ---------------------------------------------------------------------

def _file_target(ref: FileRef, kind: str) -> str:
    if kind == "secrets":
        target = ref.target or ref.source
        return target if target.startswith("/") else f"/run/secrets/{target}"
    return ref.target or f"/{ref.source}"


def _source_path(base: str, svc: Service, kind: str, ref: FileRef) -> str:
    """Where an inline secret/config is written: one file per target (two uses of one
    secret may differ in mode or owner)."""
    return os.path.join(base, svc.name, kind, _file_target(ref, kind).lstrip("/"))


def _file_refs(project: Project, svc: Service):
    for kind, refs, defined in (("secrets", svc.secrets, project.secrets),
                                ("configs", svc.configs, project.configs)):
        for ref in refs:
            item = defined.get(ref.source)
            if item is None:
                raise InvalidArgument(f'service "{svc.name}" uses {kind[:-1]} "{ref.source}", '
                                      "which is not defined")
            yield kind, ref, item


def _file_mounts(project: Project, svc: Service, source_dir: str) -> list[MountRequest]:
    from engine.requests import MountRequest

    out = []
    for kind, ref, item in _file_refs(project, svc):
        if item.external:
            raise Unavailable(f'service "{svc.name}": external {kind} ("{item.name}") need a '
                              "swarm and are not supported")
        source = item.file or _source_path(source_dir, svc, kind, ref)
        out.append(MountRequest(type="bind", target=_file_target(ref, kind), source=source,
                                read_only=True, create_host_path=False))
    return out


def file_sources(project: Project, service: Service | str,
                 source_dir: str | None = None) -> tuple[FileSource, ...]:
    """The secret/config files (inline `content` or `environment` sources) the service's
    containers mount, with their `uid`, `gid` and `mode`. Raises for a missing variable."""
    svc = project.service(service) if isinstance(service, str) else service
    base = source_dir or _default_source_dir(project)
    out = []
    for kind, ref, item in _file_refs(project, svc):
        if item.file or item.external:
            continue
        if item.environment is not None:
            if item.environment not in project.environment:
                raise InvalidArgument(f'{kind[:-1]} "{item.key}": environment variable '
                                      f'"{item.environment}" is not set')
            content = project.environment[item.environment]
        else:
            content = item.content or ""
        out.append(FileSource(
            path=_source_path(base, svc, kind, ref), content=content,
            mode=ref.mode if ref.mode is not None else 0o444,
            uid=int(ref.uid) if ref.uid and ref.uid.isdigit() else None,
            gid=int(ref.gid) if ref.gid and ref.gid.isdigit() else None))
    return tuple(out)


def anonymous_volumes_of(request: CreateRequest, volumes: tuple[str, ...]) -> dict[str, str]:
    """Target -> anonymous volume name, for a container created from `request` whose mounts
    resolved to `volumes` (the engine's `Container.volumes`)."""
    out = {}
    for mount, volume in zip(request.mounts, volumes, strict=False):
        if mount.type == "volume" and volume and (not mount.source
                                                  or ANONYMOUS_RE.match(mount.source)):
            out[mount.target] = volume
    return out
