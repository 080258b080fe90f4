"""What a caller asks of the engine when it creates a container.

`CreateRequest` is the engine-level description of a container, in the engine's own terms
(no Compose): the runtime configuration (`spec.ContainerConfig`, without its id) plus what
the engine must prepare around it: the image, network attachments, published ports, volume,
bind and tmpfs mounts, and the name-service files. The Compose layer and the `container`
CLI both build one; `containers.Containers.create` consumes it.
"""

# No `from __future__ import annotations` here: engine.serde reads these classes' type
# hints to rebuild stored records, and real annotation objects cost nothing to read,
# where strings are compiled by typing.get_type_hints in every process (~1.5 ms).
from collections.abc import Mapping
from dataclasses import dataclass, field

from engine.spec import ContainerConfig


@dataclass(frozen=True, slots=True)
class NetworkAttachment:
    """A container's attachment to one network."""

    network: str                        # name or id
    aliases: tuple[str, ...] = ()
    ipv4_address: str | None = None
    mac_address: str | None = None
    priority: int = 0                   # highest first decides the default route
    links: tuple[tuple[str, str], ...] = ()  # (container name, alias) visible from this one


@dataclass(frozen=True, slots=True)
class PortBinding:
    """A published port: host address and port -> the container's port."""

    container_port: int
    protocol: str = "tcp"
    host_ip: str = ""                   # "" = every address
    host_port: int = 0                  # 0 = an ephemeral port
    host_port_end: int = 0              # > host_port: pick a free one in the range


@dataclass(frozen=True, slots=True)
class MountRequest:
    """A mount the engine prepares: a volume, a bind or a tmpfs."""

    type: str                           # "volume" | "bind" | "tmpfs"
    target: str
    source: str = ""                    # volume name ("" = anonymous) or absolute host path
    read_only: bool = False
    nocopy: bool = False                # volume: don't copy the image's content in
    subpath: str = ""                   # volume: mount only this sub directory
    propagation: str = ""               # bind: rprivate (default), shared, slave, ...
    create_host_path: bool = True       # bind: create a missing source directory
    tmpfs_size: int | None = None
    tmpfs_mode: int | None = None
    volume_labels: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class CreateRequest:
    """Everything the engine needs to create one container (see module doc)."""

    image: str
    config: ContainerConfig             # its `id` is ignored: the engine assigns one
    name: str | None = None
    labels: Mapping[str, str] = field(default_factory=dict)
    network_mode: str = "bridge"        # bridge | none | host | container:<name or id>
    networks: tuple[NetworkAttachment, ...] = ()
    ports: tuple[PortBinding, ...] = ()
    mounts: tuple[MountRequest, ...] = ()
    volumes_from: tuple[str, ...] = ()  # "<container>[:ro|:rw]"
    dns: tuple[str, ...] = ()
    dns_search: tuple[str, ...] = ()
    dns_options: tuple[str, ...] = ()
    extra_hosts: tuple[tuple[str, str], ...] = ()  # (hostname, address)
    expose: tuple[str, ...] = ()
    auto_remove: bool = False
    runtime: str = ""                   # "" = native; "runc" or "crun" when installed
