"""Compose short syntaxes, parsed into their long forms (plain dicts).

Each parser raises ValueError with a message that says what was expected; semantic.py turns
that into a located problem and canonical.py uses the result. The grammar comes from the
Compose Specification (services.ports, services.volumes, services.extra_hosts, ...).
"""

from __future__ import annotations

import re
from typing import Any

from compose.loader.units import parse_bytes

PROTOCOLS = ("tcp", "udp", "sctp")
_PORT_HELP = "expected [HOST_IP:][HOST_PORT:]CONTAINER_PORT[/PROTOCOL], ports and ranges 1-65535"
_RANGE = re.compile(r"^([0-9]+)(?:-([0-9]+))?$")


def _port_range(text: str, what: str, spec: object, allow_zero: bool = False) -> tuple[int, int]:
    match = _RANGE.match(text)
    if not match:
        raise ValueError(f"{_q(spec)} is not a valid port mapping: {what} \"{text}\" is not a "
                         f"port or range ({_PORT_HELP})")
    start = int(match.group(1))
    end = int(match.group(2) or start)
    low = 0 if allow_zero else 1
    if not (low <= start <= 65535 and low <= end <= 65535) or end < start:
        raise ValueError(f"{_q(spec)} is not a valid port mapping: {what} \"{text}\" is out of "
                         f"range ({_PORT_HELP})")
    return start, end


def parse_port(spec: object) -> list[dict[str, Any]]:
    """`"127.0.0.1:8080-8081:80-81/udp"` -> one long-syntax dict per container port.

    A host range with a single container port stays one entry (the engine picks a free host
    port from the range), as Docker does; equal-sized ranges expand pairwise.
    """
    if isinstance(spec, bool):
        raise ValueError(f"{spec!r} is not a valid port mapping ({_PORT_HELP})")
    text = str(spec).strip()
    protocol = "tcp"
    if "/" in text:
        text, protocol = text.rsplit("/", 1)
        if protocol not in PROTOCOLS:
            raise ValueError(f'{_q(spec)} is not a valid port mapping: unknown protocol '
                             f'"{protocol}" (expected tcp, udp or sctp)')
    host_ip = None
    if text.startswith("["):
        close = text.find("]")
        if close < 0 or text[close + 1:close + 2] != ":":
            raise ValueError(f"{_q(spec)} is not a valid port mapping ({_PORT_HELP})")
        host_ip, text = text[1:close], text[close + 2:]
        parts = text.split(":")
        if len(parts) == 1:
            parts = ["", *parts]
        if len(parts) != 2:
            raise ValueError(f"{_q(spec)} is not a valid port mapping ({_PORT_HELP})")
        host, container = parts
    else:
        parts = text.split(":")
        if len(parts) == 1:
            host, container = "", parts[0]
        elif len(parts) == 2:
            host, container = parts
        elif len(parts) == 3:
            host_ip, host, container = parts
            if not _IPV4.match(host_ip):
                raise ValueError(f'{_q(spec)} is not a valid port mapping: "{host_ip}" is not '
                                 "an IPv4 address (write IPv6 addresses in brackets)")
        else:
            raise ValueError(f"{_q(spec)} is not a valid port mapping ({_PORT_HELP})")
    c_start, c_end = _port_range(container, "container port", spec)
    entries: list[dict[str, Any]] = []
    if not host:
        for port in range(c_start, c_end + 1):
            entries.append(_port_entry(port, None, host_ip, protocol))
        return entries
    h_start, h_end = _port_range(host, "host port", spec, allow_zero=True)
    if c_start == c_end:
        published = host if h_start != h_end else str(h_start)
        return [_port_entry(c_start, published, host_ip, protocol)]
    if h_end - h_start != c_end - c_start:
        raise ValueError(f"{_q(spec)} is not a valid port mapping: host range {host} and "
                         f"container range {container} differ in size")
    for offset in range(c_end - c_start + 1):
        entries.append(_port_entry(c_start + offset, str(h_start + offset), host_ip, protocol))
    return entries


def _port_entry(target: int, published: str | None, host_ip: str | None,
                protocol: str) -> dict[str, Any]:
    entry: dict[str, Any] = {"mode": "ingress"}
    if host_ip:
        entry["host_ip"] = host_ip
    entry["target"] = target
    if published is not None:
        entry["published"] = published
    entry["protocol"] = protocol
    return entry


def check_published(value: object) -> None:
    """Long-syntax `published`: a port or a range, as a string or an integer."""
    if value is None or value == "":
        return
    _port_range(str(value), "published port", value, allow_zero=True)


_IPV4 = re.compile(r"^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$")
_ACCESS_MODES = {"ro", "rw", "z", "Z", "nocopy", "shared", "rshared", "slave", "rslave",
                 "private", "rprivate", "cached", "delegated", "consistent"}
_PROPAGATIONS = {"shared", "rshared", "slave", "rslave", "private", "rprivate"}
_VOLUME_HELP = "expected [SOURCE:]CONTAINER_PATH[:MODE], MODE one of ro, rw, z, Z, nocopy, ..."


def is_path_source(source: str) -> bool:
    """Whether a short-syntax source is a host path (bind) rather than a volume name."""
    return source.startswith((".", "/", "~")) or source in (".", "..")


def parse_volume(spec: str) -> dict[str, Any]:
    """`"./data:/var/lib/data:ro,z"` -> long syntax (`type`, `source`, `target`, ...).

    Host paths are returned as written; canonical.py makes them absolute.
    """
    parts = spec.split(":")
    mode = ""
    if len(parts) == 1:
        source, target = "", parts[0]
    elif len(parts) == 2:
        source, target = parts
        if not target.startswith("/") and parts[1] and set(parts[1].split(",")) <= _ACCESS_MODES \
                and parts[0].startswith("/"):
            # "/data:ro" is an anonymous volume with a mode, as Docker reads it.
            source, target, mode = "", parts[0], parts[1]
    elif len(parts) == 3:
        source, target, mode = parts
    else:
        raise ValueError(f"{_q(spec)} is not a valid volume ({_VOLUME_HELP})")
    if len(parts) > 1 and not source and not mode:
        raise ValueError(f'{_q(spec)} is not a valid volume: the source is empty '
                         f'({_VOLUME_HELP})')
    if not target.startswith("/"):
        raise ValueError(f'{_q(spec)} is not a valid volume: the container path "{target}" '
                         f"is not absolute ({_VOLUME_HELP})")
    options = [o for o in mode.split(",") if o] if mode else []
    for option in options:
        if option not in _ACCESS_MODES:
            raise ValueError(f'{_q(spec)} is not a valid volume: unknown mode "{option}" '
                             f"({_VOLUME_HELP})")
    if "ro" in options and "rw" in options:
        raise ValueError(f"{_q(spec)} is not a valid volume: both ro and rw")
    entry: dict[str, Any]
    if not source:
        entry = {"type": "volume", "target": target}
    elif is_path_source(source):
        entry = {"type": "bind", "source": source, "target": target}
    else:
        entry = {"type": "volume", "source": source, "target": target}
    if "ro" in options:
        entry["read_only"] = True
    if entry["type"] == "bind":
        bind: dict[str, Any] = {"create_host_path": True}
        for option in options:
            if option in _PROPAGATIONS:
                bind["propagation"] = option
            elif option in ("z", "Z"):
                bind["selinux"] = option
        entry["bind"] = bind
    elif "nocopy" in options:
        entry["volume"] = {"nocopy": True}
    return entry


def parse_extra_host(spec: str) -> tuple[str, str]:
    """`"host:1.2.3.4"`, `"host=1.2.3.4"` or `"host:::1"` -> (host, address)."""
    if "=" in spec:
        host, _, address = spec.partition("=")
    else:
        host, _, address = spec.partition(":")
    address = address.strip()
    if address.startswith("[") and address.endswith("]"):
        address = address[1:-1]
    if not host or not address:
        raise ValueError(f"{_q(spec)} is not a valid extra host (expected HOST:IP or HOST=IP)")
    return host.strip(), address


def parse_tmpfs(spec: str) -> tuple[str, int | None, int | None]:
    """`"/run:size=64m,mode=1777"` -> (path, size in bytes or None, mode or None); other
    options are ignored, as Docker does."""
    path, _, opts = spec.partition(":")
    size = mode = None
    for opt in filter(None, opts.split(",")):
        key, _, value = opt.partition("=")
        if key == "size":
            size = parse_bytes(value)
        elif key == "mode":
            try:
                mode = int(value, 8)
            except ValueError:
                raise ValueError(f"{_q(spec)}: mode \"{value}\" is not an octal number "
                                 "(expected e.g. mode=1777)") from None
    return path, size, mode


def parse_expose(spec: object) -> str:
    text = str(spec)
    port, _, protocol = text.partition("/")
    if protocol and protocol not in PROTOCOLS:
        raise ValueError(f'{_q(spec)} is not a valid exposed port: unknown protocol "{protocol}"')
    _port_range(port, "port", spec)
    return text


def _q(spec: object) -> str:
    return f'"{spec}"' if isinstance(spec, str) else str(spec)
