"""Everything around a container's process: the bundle the runtime executes, and its undoing.

`bundle()` runs at each start, in this order (the order is the contract; `release()` undoes
it backwards and tolerates any prefix of it having happened, so a start killed half-way is
cleaned by the next stop or remove):

  1. rootfs    overlay of the image's layers + the container's upper dir
  2. volumes   named/anonymous volumes (copied up from the image on first use), binds, tmpfs
  3. network   a network namespace, attachments to each network, DNS names
  3b. ports    published host ports bound (held until the shim takes them), ports.json
  4. etc       /etc/hostname, /etc/hosts, /etc/resolv.conf in the container dir
  5. spec      config.json from the request + the image config (user resolved in the rootfs)

Before step 1 a marker file (`prepared`) is written, and `release()` removes it last; so
`release()` of a container that holds nothing (never started, or already released) costs
a few file checks, not a round of store transactions.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine.errors import InvalidArgument, NotFound
from engine.requests import MountRequest

if TYPE_CHECKING:
    from engine import Engine
    from engine.containers import Container


def with_image_volumes(mounts: Sequence[MountRequest],
                       image_config: dict[str, Any]) -> tuple[MountRequest, ...]:
    """The request's mounts plus an anonymous volume for each image `VOLUME` not already
    covered by one of them (as Docker does at create)."""
    declared = (image_config.get("config") or {}).get("Volumes") or {}
    covered = {os.path.normpath(m.target) for m in mounts}
    extra = [MountRequest(type="volume", target=path) for path in sorted(declared)
             if os.path.normpath(path) not in covered]
    return (*mounts, *extra)


# Made first by `bundle`, gone last with `release`: a bundle (or part of one) may exist.
# In the start's run directory (tmpfs: a reboot takes it along with what it stands for);
# engines before that made it in the container's directory.
MARKER = "prepared"


def bundle(engine: Engine, container: Container) -> None:
    from engine import snapshots
    from engine.reaper import exit_hook_argv

    run = run_files(engine, container)
    run.mkdir(parents=True, exist_ok=True)
    (run / MARKER).touch()
    image_config = engine.images.config(container.image_id)
    layers = engine.images.layer_dirs(container.image_id)
    rootfs = snapshots.mount_rootfs(container.directory, layers)
    mounts = _mounts(engine, container, rootfs)
    network_path, ips, gateway = join_networks(engine, container)
    _ports(engine, container, ips)
    etc = etc_files(container, ips, gateway, run)
    _write_spec(container, image_config, rootfs, mounts, network_path, etc,
                exit_hook_argv(engine.layout.root, container.id))


def holds_anything(engine: Engine, container: Container) -> bool:
    """Whether a bundle (or part of one) may exist: the marker, or (from engines before the
    marker in the run directory) a marker in the container's directory, a namespace file or
    a mounted rootfs; or the host went down with the container running (see
    `_ran_when_the_host_went_down`)."""
    from engine import netns, snapshots

    return ((run_files(engine, container) / MARKER).exists()
            or (container.directory / MARKER).exists()
            or netns.path_of(engine.layout, container.id[:32]).exists()
            or snapshots.rootfs_mounted(container.directory)
            or _ran_when_the_host_went_down(container))


def _ran_when_the_host_went_down(container: Container) -> bool:
    """A reboot takes the marker (tmpfs), the namespace and the mounts, but not the records
    in the store (leases, endpoints, names, port bindings): the runtime's last recorded
    status, on disk, still says the container ran. (A live shim never gets here: its
    container is not released.)"""
    from engine.runtime import state as st

    recorded = st.read(str(container.directory)) or {}
    return recorded.get("status") in st.LIVE


def release(engine: Engine, container: Container) -> None:
    from engine import snapshots

    if not holds_anything(engine, container):
        return
    _release_ports(engine, container)
    leave_networks(engine, container)
    for volume in container.volumes:
        if volume:
            engine.volumes.unmount_if_unused(volume, exclude=container.name)
    snapshots.unmount_rootfs(container.directory)
    (container.directory / MARKER).unlink(missing_ok=True)
    remove_run_files(engine, container)


def remove_run_files(engine: Engine, container: Container) -> None:
    """The start's run directory (plain files), its marker last."""
    run = run_files(engine, container)
    try:
        names = os.listdir(run)
    except FileNotFoundError:
        return
    for name in sorted(names, key=lambda name: name == MARKER):
        (run / name).unlink(missing_ok=True)
    run.rmdir()


# ---- 2. volumes ------------------------------------------------------------------------------

def _mounts(engine: Engine, container: Container, rootfs: Path) -> list[Any]:
    from engine.spec import Mount

    out = []
    for mount, volume in zip(container.request.mounts, container.volumes, strict=True):
        mode = "ro" if mount.read_only else "rw"
        if mount.type == "volume":
            source = engine.volumes.source(volume)
            if not mount.nocopy:
                engine.volumes.populate(volume, in_root(rootfs, mount.target))
            if mount.subpath:
                source = in_root(source, mount.subpath)
                if not source.is_dir():
                    raise NotFound(f'volume "{volume}" has no sub path "{mount.subpath}"')
            out.append(Mount(mount.target, "bind", str(source), ("rbind", mode)))
        elif mount.type == "bind":
            source = Path(mount.source)
            if not source.exists():
                if not mount.create_host_path:
                    raise NotFound(f'bind source path does not exist: "{mount.source}"')
                source.mkdir(parents=True, exist_ok=True)
            options = ["rbind", mode]
            if mount.propagation:
                options.append(mount.propagation)
            out.append(Mount(mount.target, "bind", str(source), tuple(options)))
        elif mount.type == "tmpfs":
            options = ["nosuid", "nodev"]
            if mount.tmpfs_size:
                options.append(f"size={mount.tmpfs_size}")
            if mount.tmpfs_mode is not None:
                options.append(f"mode={mount.tmpfs_mode:o}")
            if mount.read_only:
                options.append("ro")
            out.append(Mount(mount.target, "tmpfs", "tmpfs", tuple(options)))
        else:
            raise InvalidArgument(f'unknown mount type "{mount.type}"')
    return out


# ---- 3. network ------------------------------------------------------------------------------

def join_networks(engine: Engine, container: Container) -> tuple[str | None, list[str], str | None]:
    """(netns path or "host" or None for an empty one, the container's addresses, the
    gateway of its first network)."""
    request = container.request
    mode = request.network_mode
    if mode == "host":
        return "host", [], None
    if mode == "none":
        return None, [], None
    if mode.startswith("container:"):
        from engine import netns

        other = engine.containers.get(mode.partition(":")[2])
        if other.request.network_mode == "host":
            return "host", [], None
        path = netns.path_of(engine.layout, other.id[:32])
        if not netns.exists(path):
            raise InvalidArgument(f"container {other.name} is not running: it has no network "
                                  "namespace to join")
        return str(path), [], None
    attachments = request.networks
    if not attachments:
        from engine.requests import NetworkAttachment

        engine.networks.ensure_default()
        attachments = (NetworkAttachment(network="bridge"),)
    from engine import netns

    path = netns.create(engine.layout, container.id[:32])
    ips: list[str] = []
    gateway = None
    hostname = request.config.hostname
    # One DNS publish for all attachments, done before the process starts: its names resolve
    # as soon as it runs.
    with engine.networks.dns.batch():
        for attachment in attachments:
            endpoint = engine.networks.connect(
                attachment.network, container.id, str(path), container_name=container.name,
                aliases=attachment.aliases, ipv4_address=attachment.ipv4_address,
                mac_address=attachment.mac_address, gw_priority=attachment.priority,
                dns_names=[hostname] if hostname else [],
                links={alias: target for target, alias in attachment.links}, dns=request.dns)
            ips.append(str(endpoint.ipv4))
            gateway = gateway or str(endpoint.gateway)
    return str(path), ips, gateway


def leave_networks(engine: Engine, container: Container) -> None:
    """Undoes `join_networks` (idempotent): endpoints, names, leases, the namespace."""
    from engine import netns

    mode = container.request.network_mode
    if mode in ("host", "none") or mode.startswith("container:"):
        return
    path = netns.path_of(engine.layout, container.id[:32])
    # The namespace first: the kernel then unregisters its veths in a batch with those of
    # other namespaces going away. Not only when a live namespace is there: what a killed
    # create or delete left (a plain file, or the emptied directory mount) goes too, or
    # nothing would ever take it.
    netns.delete(path, engine.layout)
    with engine.networks.dns.batch():
        engine.networks.disconnect_all(container.id, namespace_released=True)


# ---- 3b. published ports ---------------------------------------------------------------------

def _ports(engine: Engine, container: Container, ips: list[str]) -> None:
    """Binds the published ports here (a port in use fails the start before anything runs);
    the shim forwards them to the first network's address."""
    from engine import ports

    ports.publish(engine, container, ips[0] if ips else None)


def _release_ports(engine: Engine, container: Container) -> None:
    from engine import ports

    ports.unpublish(engine, container)


# ---- 4. /etc files ---------------------------------------------------------------------------

def run_files(engine: Engine, container: Container) -> Path:
    """Where a start's files that need not outlive it go: the root's run directory, on
    tmpfs (making a small file on this disk costs ~0.6 ms of CPU, on tmpfs ~0.08)."""
    return engine.layout.run / "containers" / container.id


def etc_files(container: Container, ips: list[str], gateway: str | None,
              into: Path) -> dict[str, str]:
    """Writes the container's hosts, hostname and resolv.conf into `into` (an existing
    directory); returns their paths by name (bind-mounted over /etc/...)."""
    from engine import dns

    request = container.request
    config = request.config
    hostname = config.hostname or container.id[:12]
    files = {
        "hostname": hostname + "\n",
        "hosts": dns.hosts_file(hostname, config.domainname, ips,
                                {h: ip for h, ip in request.extra_hosts}),
        "resolv.conf": dns.resolv_conf(gateway, request.dns, request.dns_search,
                                       request.dns_options),
    }
    paths = {}
    for name, text in files.items():
        path = into / name
        path.write_text(text)
        paths[name] = str(path)
    return paths


# ---- 5. spec ---------------------------------------------------------------------------------

def _write_spec(container: Container, image_config: dict[str, Any], rootfs: Path,
                mounts: list[Any], network_path: str | None, etc: dict[str, str],
                exit_hook: list[str]) -> None:
    """config.json, and shim.json with the exit hook the shim runs when the container stops
    for good on its own (engine/reaper.py: it releases what `bundle` made)."""
    from engine import spec

    config = dataclasses.replace(
        container.request.config, id=container.id, image=container.image,
        image_id=container.image_id, mounts=(*container.request.config.mounts, *mounts),
        network=network_path, hosts_file=etc["hosts"], resolv_conf=etc["resolv.conf"],
        hostname=container.request.config.hostname or container.id[:12],
        hostname_file=etc["hostname"])
    passwd, group = user_files(rootfs)
    from engine.runtime import launch

    # build_spec takes the image config's "config" object (Cmd, Entrypoint, Env, User, ...)
    image = image_config.get("config") or {}
    config = _with_image_defaults(config, image)
    document = spec.build_spec(config, image, str(rootfs), passwd, group)
    launch.create(container.directory, document,
                  {**spec.shim_options(config), "exit_hook": exit_hook})


def _with_image_defaults(config: Any, image: dict[str, Any]) -> Any:
    """The image's HEALTHCHECK and STOPSIGNAL apply unless the container sets its own."""
    from engine.spec import Healthcheck

    changes: dict[str, Any] = {}
    check = image.get("Healthcheck") or {}
    if config.healthcheck is None and check.get("Test"):
        seconds = 1e-9  # image configs count nanoseconds
        defaults = Healthcheck(("NONE",))
        changes["healthcheck"] = Healthcheck(
            test=tuple(check["Test"]),
            interval=(check.get("Interval") or 0) * seconds or defaults.interval,
            timeout=(check.get("Timeout") or 0) * seconds or defaults.timeout,
            retries=check.get("Retries") or defaults.retries,
            start_period=(check.get("StartPeriod") or 0) * seconds,
            start_interval=(check.get("StartInterval") or 0) * seconds
            or defaults.start_interval)
    if not config.stop_signal and image.get("StopSignal"):
        changes["stop_signal"] = image["StopSignal"]
    return dataclasses.replace(config, **changes) if changes else config


def user_files(rootfs: Path) -> tuple[str | None, str | None]:
    """The root's /etc/passwd and /etc/group (None when unreadable), for resolving USER."""
    # The rootfs is untrusted: /etc/passwd may be a link meant to reach the host's.
    return _read_text(in_root(rootfs, "/etc/passwd")), _read_text(in_root(rootfs, "/etc/group"))


def _read_text(path: Path) -> str | None:
    try:
        with open(path) as f:
            return f.read(1 << 20)
    except (OSError, UnicodeDecodeError):  # unreadable counts as absent
        return None


def in_root(root: Path, path: str) -> Path:
    """`path` inside the container's root, following symlinks as the container would see
    them (absolute targets are relative to `root`), so an image's links never lead out."""
    from engine.runtime.rootpath import secure_join

    return Path(secure_join(str(root), path))
