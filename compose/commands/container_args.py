"""Docker's `run`/`create` flags -> an engine `CreateRequest`.

The flag names, short forms and value syntaxes are Docker's (`docker run --help`), so that
muscle memory carries over. Value parsing that Compose shares (ports, volumes, extra hosts)
goes through `compose.loader.syntax`, so both front ends accept exactly the same strings.
"""

from __future__ import annotations

import argparse
import shlex
from typing import Any

from engine.errors import InvalidArgument


def add_create_flags(parser: argparse.ArgumentParser) -> None:
    """Flags shared by `container create` and `container run`."""
    add = parser.add_argument
    add("--help", action="help", help="show this help message and exit")
    add("--name", help="assign a name to the container")
    add("-e", "--env", action="append", default=[], metavar="KEY[=VALUE]")
    add("--env-file", action="append", default=[], metavar="FILE")
    add("-l", "--label", action="append", default=[], metavar="KEY=VALUE")
    add("--entrypoint", help="overwrite the default ENTRYPOINT of the image")
    add("-u", "--user", default="", help="username or UID (format: <name|uid>[:<group|gid>])")
    add("--group-add", action="append", default=[])
    add("-w", "--workdir", default="")
    add("-h", "--hostname", default="")
    add("--domainname", default="")
    add("-t", "--tty", action="store_true")
    add("-i", "--interactive", action="store_true")
    add("--network", "--net", dest="network", action="append", default=[],
        help="connect to a network (bridge, none, host, container:NAME or a network name)")
    add("--network-alias", action="append", default=[])
    add("--ip", default=None, help="IPv4 address on the (first) network")
    add("--mac-address", default=None)
    add("-p", "--publish", action="append", default=[],
        metavar="[IP:][HOST:]CONTAINER[/PROTO]")
    add("--expose", action="append", default=[])
    add("-v", "--volume", action="append", default=[], metavar="[SRC:]DST[:OPTS]")
    add("--mount", action="append", default=[], metavar="type=...,target=...")
    add("--tmpfs", action="append", default=[], metavar="PATH[:OPTS]")
    add("--volumes-from", action="append", default=[])
    add("--dns", action="append", default=[])
    add("--dns-search", action="append", default=[])
    add("--dns-option", action="append", default=[])
    add("--add-host", action="append", default=[], metavar="HOST:IP")
    add("--restart", default="no", help="no, always, on-failure[:N], unless-stopped")
    add("--health-cmd", default=None)
    add("--health-interval", default=None)
    add("--health-timeout", default=None)
    add("--health-retries", type=int, default=None)
    add("--health-start-period", default=None)
    add("--health-start-interval", default=None)
    add("--no-healthcheck", action="store_true")
    add("-m", "--memory", default=None)
    add("--memory-swap", default=None)
    add("--cpus", type=float, default=None)
    add("-c", "--cpu-shares", type=int, default=None)
    add("--pids-limit", type=int, default=None)
    add("--shm-size", default=None)
    add("--cap-add", action="append", default=[])
    add("--cap-drop", action="append", default=[])
    add("--privileged", action="store_true")
    add("--read-only", action="store_true")
    add("--init", action="store_true")
    add("--security-opt", action="append", default=[])
    add("--sysctl", action="append", default=[], metavar="KEY=VALUE")
    add("--ulimit", action="append", default=[], metavar="NAME=SOFT[:HARD]")
    add("--stop-signal", default="")
    add("--stop-timeout", type=int, default=None)
    add("--runtime", default="", help="native (default), runc or crun")
    add("--rm", action="store_true", help="remove the container when it exits")
    add("image")
    add("command", nargs=argparse.REMAINDER)


def _pairs(values: list[str], flag: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not key or not sep:
            raise InvalidArgument(f'{flag} "{item}": expected KEY=VALUE')
        out[key] = value
    return out


def _environment(args: argparse.Namespace, environ: dict[str, str]) -> dict[str, str]:
    from compose.loader.dotenv import read_env_file

    env: dict[str, str] = {}
    for path in args.env_file:
        env.update(read_env_file(path, lookup=environ.get))
    for item in args.env:
        key, sep, value = item.partition("=")
        if sep:
            env[key] = value
        elif key in environ:  # `-e KEY` passes the caller's value through, as Docker does
            env[key] = environ[key]
    return env


def _duration(text: str | None, flag: str) -> float | None:
    if text is None:
        return None
    from compose.loader.units import parse_duration

    try:
        return parse_duration(text)
    except ValueError as exc:
        raise InvalidArgument(f"{flag}: {exc}") from None


def _bytes(text: str | None, flag: str) -> int | None:
    if text is None:
        return None
    if text == "-1":
        return -1
    from compose.loader.units import parse_bytes

    try:
        return parse_bytes(text)
    except ValueError as exc:
        raise InvalidArgument(f"{flag}: {exc}") from None


def _restart(text: str) -> Any:
    from engine.spec import RestartPolicy

    name, _, count = text.partition(":")
    if name not in ("no", "always", "on-failure", "unless-stopped"):
        raise InvalidArgument(
            f'--restart "{text}": expected no, always, on-failure[:N] or unless-stopped')
    if count and (name != "on-failure" or not count.isdigit()):
        raise InvalidArgument(f'--restart "{text}": only on-failure takes a retry count')
    return RestartPolicy(name, int(count or 0))


def _healthcheck(args: argparse.Namespace) -> Any:
    from engine.spec import Healthcheck

    if args.no_healthcheck:
        return Healthcheck(("NONE",))
    if args.health_cmd is None:
        return None
    defaults = Healthcheck(("NONE",))
    return Healthcheck(
        test=("CMD-SHELL", args.health_cmd),
        interval=_duration(args.health_interval, "--health-interval") or defaults.interval,
        timeout=_duration(args.health_timeout, "--health-timeout") or defaults.timeout,
        retries=args.health_retries if args.health_retries is not None else defaults.retries,
        start_period=_duration(args.health_start_period, "--health-start-period") or 0.0,
        start_interval=(_duration(args.health_start_interval, "--health-start-interval")
                        or defaults.start_interval),
    )


def _ulimits(values: list[str]) -> tuple[Any, ...]:
    from engine.spec import Ulimit

    out = []
    for item in values:
        name, sep, limits = item.partition("=")
        soft, _, hard = limits.partition(":")
        try:
            out.append(Ulimit(name, int(soft), int(hard or soft)))
        except ValueError:
            raise InvalidArgument(f'--ulimit "{item}": expected NAME=SOFT[:HARD]') from None
        if not sep:
            raise InvalidArgument(f'--ulimit "{item}": expected NAME=SOFT[:HARD]')
    return tuple(out)


def _ports(values: list[str]) -> tuple[Any, ...]:
    from compose.loader.syntax import parse_port
    from engine.requests import PortBinding

    out = []
    for item in values:
        try:
            entries = parse_port(item)
        except ValueError as exc:
            raise InvalidArgument(f"-p: {exc}") from None
        for entry in entries:
            published = str(entry.get("published") or "")
            low, _, high = published.partition("-")
            out.append(PortBinding(
                container_port=int(entry["target"]), protocol=entry.get("protocol", "tcp"),
                host_ip=entry.get("host_ip") or "", host_port=int(low or 0),
                host_port_end=int(high or 0)))
    return tuple(out)


def _mounts(args: argparse.Namespace, cwd: str) -> tuple[Any, ...]:
    import os

    from compose.loader.syntax import parse_tmpfs, parse_volume
    from engine.requests import MountRequest

    out: list[MountRequest] = []
    for item in args.volume:
        try:
            entry = parse_volume(item)
        except ValueError as exc:
            raise InvalidArgument(f"-v: {exc}") from None
        source = entry.get("source") or ""
        kind = entry.get("type", "volume")
        if kind == "bind":
            source = os.path.normpath(os.path.join(cwd, os.path.expanduser(source)))
        out.append(MountRequest(
            type=kind, target=entry["target"], source=source,
            read_only=bool(entry.get("read_only")),
            nocopy=bool((entry.get("volume") or {}).get("nocopy")),
            propagation=(entry.get("bind") or {}).get("propagation", "")))
    for item in args.mount:
        out.append(_mount_flag(item, cwd))
    for item in args.tmpfs:
        try:
            path, size, mode = parse_tmpfs(item)
        except ValueError as exc:
            raise InvalidArgument(f"--tmpfs: {exc}") from None
        out.append(MountRequest(type="tmpfs", target=path, tmpfs_size=size, tmpfs_mode=mode))
    return tuple(out)


def _mount_flag(item: str, cwd: str) -> Any:
    import os

    from engine.requests import MountRequest

    fields: dict[str, str] = {}
    for part in item.split(","):
        key, sep, value = part.partition("=")
        fields[key.strip()] = value if sep else "true"
    kind = fields.get("type", "volume")
    target = fields.get("target") or fields.get("destination") or fields.get("dst")
    if kind not in ("volume", "bind", "tmpfs") or not target:
        raise InvalidArgument(
            f'--mount "{item}": expected type=volume|bind|tmpfs and target=PATH')
    source = fields.get("source") or fields.get("src") or ""
    if kind == "bind":
        if not source:
            raise InvalidArgument(f'--mount "{item}": a bind mount needs source=PATH')
        source = os.path.normpath(os.path.join(cwd, source))
    read_only = fields.get("readonly", fields.get("ro", "false")) in ("true", "1")
    return MountRequest(
        type=kind, target=target, source=source, read_only=read_only,
        nocopy=fields.get("volume-nocopy") in ("true", "1"),
        subpath=fields.get("volume-subpath", ""),
        propagation=fields.get("bind-propagation", ""),
        create_host_path=False,  # --mount never creates a missing bind source (Docker)
        tmpfs_size=_bytes(fields.get("tmpfs-size"), "tmpfs-size"),
        tmpfs_mode=int(fields["tmpfs-mode"], 8) if "tmpfs-mode" in fields else None)


def _networks(args: argparse.Namespace) -> tuple[str, tuple[Any, ...]]:
    from engine.requests import NetworkAttachment

    mode = "bridge"
    attachments = []
    for index, name in enumerate(args.network):
        if name in ("none", "host") or name.startswith("container:"):
            if len(args.network) > 1:
                raise InvalidArgument(f'--network {name} cannot be combined with other networks')
            mode = name
            continue
        first = index == 0
        attachments.append(NetworkAttachment(
            network=name, aliases=tuple(args.network_alias) if first else (),
            ipv4_address=args.ip if first else None,
            mac_address=args.mac_address if first else None))
    return mode, tuple(attachments)


def create_request(args: argparse.Namespace, environ: dict[str, str], cwd: str) -> Any:
    """The `CreateRequest` that Docker would build from these flags."""
    from compose.attach import terminal_size
    from compose.loader.syntax import parse_extra_host
    from engine.requests import CreateRequest
    from engine.spec import ContainerConfig, Resources

    command = tuple(args.command) if args.command else None
    entrypoint = None
    if args.entrypoint is not None:
        entrypoint = tuple(shlex.split(args.entrypoint)) if args.entrypoint else ("",)
    security = tuple(args.security_opt)
    resources = Resources(
        memory=_bytes(args.memory, "--memory"), memory_swap=_bytes(args.memory_swap,
                                                                    "--memory-swap"),
        cpus=args.cpus, cpu_shares=args.cpu_shares, pids_limit=args.pids_limit,
        shm_size=_bytes(args.shm_size, "--shm-size"))
    config = ContainerConfig(
        id="", image=args.image, entrypoint=entrypoint, cmd=command,
        env=_environment(args, environ), working_dir=args.workdir, user=args.user,
        group_add=tuple(args.group_add), hostname=args.hostname, domainname=args.domainname,
        labels=_pairs(args.label, "--label"), tty=args.tty, stdin_open=args.interactive,
        console_size=terminal_size() if args.tty else (0, 0),
        cap_add=tuple(args.cap_add), cap_drop=tuple(args.cap_drop), privileged=args.privileged,
        read_only=args.read_only, init=args.init, sysctls=_pairs(args.sysctl, "--sysctl"),
        ulimits=_ulimits(args.ulimit), resources=resources, security_opt=security,
        stop_signal=args.stop_signal, stop_timeout=args.stop_timeout,
        restart=_restart(args.restart), healthcheck=_healthcheck(args))
    mode, attachments = _networks(args)
    hosts = []
    for item in args.add_host:
        try:
            hosts.append(parse_extra_host(item))
        except ValueError as exc:
            raise InvalidArgument(f"--add-host: {exc}") from None
    return CreateRequest(
        image=args.image, config=config, name=args.name, labels=config.labels,
        network_mode=mode, networks=attachments, ports=_ports(args.publish),
        mounts=_mounts(args, cwd), volumes_from=tuple(args.volumes_from), dns=tuple(args.dns),
        dns_search=tuple(args.dns_search), dns_options=tuple(args.dns_option),
        extra_hosts=tuple(hosts), expose=tuple(args.expose), auto_remove=args.rm,
        runtime=args.runtime)
