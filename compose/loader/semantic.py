"""Checks the schema cannot express, on the validated, located tree.

`check(tree)` raises one `ConfigError` listing every problem: references to undefined
services, networks, volumes, secrets and configs; duplicate container names; short-syntax
ports, volumes, tmpfs mounts, extra hosts and exposed ports; durations and byte sizes;
`container_name` with more than one replica; `network_mode` together with `networks`;
dependency cycles. The tree may still hold interpolated strings where integers or booleans
belong ("3", "true"); this module reads them leniently, canonical.py casts them.
"""

from __future__ import annotations

import shlex
from collections.abc import Iterator, Mapping
from typing import Any

from compose.errors import ConfigError, Problem
from compose.loader import syntax, units
from compose.loader.parse import format_path, locate

Path = tuple[Any, ...]

# Tree paths (under a service) of values that are durations or byte sizes.
DURATIONS: tuple[Path, ...] = (
    ("healthcheck", "interval"), ("healthcheck", "timeout"), ("healthcheck", "start_period"),
    ("healthcheck", "start_interval"), ("stop_grace_period",), ("cpu_rt_period",),
    ("cpu_rt_runtime",), ("deploy", "restart_policy", "delay"),
    ("deploy", "restart_policy", "window"), ("deploy", "update_config", "delay"),
    ("deploy", "update_config", "monitor"), ("deploy", "rollback_config", "delay"),
    ("deploy", "rollback_config", "monitor"),
)
SIZES: tuple[Path, ...] = (
    ("shm_size",), ("mem_limit",), ("mem_reservation",), ("build", "shm_size"),
    ("deploy", "resources", "limits", "memory"), ("deploy", "resources", "reservations", "memory"),
)


def service_refs(name: str, service: Mapping[str, Any]) -> Iterator[tuple[str, Path, str]]:
    """(kind, path, other service) for each reference from `service` to another service.

    kind is "depends_on", "links", "volumes_from", "network_mode", "ipc" or "pid"; these are
    the edges of the dependency graph.
    """
    depends = service.get("depends_on") or ()
    for index, other in enumerate(depends):
        key = other if isinstance(depends, dict) else index
        yield "depends_on", ("services", name, "depends_on", key), other
    for index, link in enumerate(service.get("links") or ()):
        yield "links", ("services", name, "links", index), link.split(":", 1)[0]
    for index, source in enumerate(service.get("volumes_from") or ()):
        if not source.startswith("container:"):
            yield "volumes_from", ("services", name, "volumes_from", index), \
                source.split(":", 1)[0]
    for key in ("network_mode", "ipc", "pid"):
        value = service.get(key)
        if isinstance(value, str) and value.startswith("service:"):
            yield key, ("services", name, key), value.removeprefix("service:")


def check(tree: Mapping[str, Any], lenient: bool = False) -> None:
    """Raises `ConfigError` with every semantic problem in the validated `tree`.

    `lenient` skips problems about values that still hold a `$` (not interpolated)."""
    problems = [p for p in problems_in(tree, lenient) if p is not None]
    if problems:
        problems.sort(key=lambda p: (p.file or "", p.line or 0))
        raise ConfigError(problems)


def problems_in(tree: Mapping[str, Any], lenient: bool = False) -> Iterator[Problem]:
    def problem(path: Path, message: str) -> Problem:
        if lenient and _has_dollar(_get(tree, path)):
            return None  # type: ignore[return-value]
        loc = locate(tree, path)
        return Problem(message, loc.file if loc else None, loc.line if loc else None,
                       format_path(path))

    services = tree.get("services") or {}
    defined = {kind: set(tree.get(kind) or {}) for kind in
               ("networks", "volumes", "secrets", "configs")}
    names: dict[str, str] = {}
    for name, service in services.items():
        service = service or {}
        base: Path = ("services", name)
        yield from (problem(p, m) for p, m in _service_problems(name, service, services, defined))
        container_name = service.get("container_name")
        if container_name:
            if container_name in names:
                yield problem((*base, "container_name"),
                              f'container name "{container_name}" is already used by service '
                              f'"{names[container_name]}"')
            else:
                names[container_name] = name
    for kind in ("secrets", "configs"):
        for name, entry in (tree.get(kind) or {}).items():
            sources = ("file", "environment", "external") + (("content",) if kind == "configs"
                                                             else ())
            if not any(k in (entry or {}) for k in sources):
                yield problem((kind, name), f"{kind[:-1]} \"{name}\" needs one of: "
                              + ", ".join(sources))
    for kind in ("networks", "volumes"):
        for name, entry in (tree.get(kind) or {}).items():
            entry = entry or {}
            if _truthy(entry.get("external")):
                for key in ("driver", "driver_opts", "ipam", "labels"):
                    if key in entry:
                        yield problem((kind, name, key), f'external {kind[:-1]} "{name}" cannot '
                                      f"also set {key} (it is managed outside this project)")
    yield from _cycle_problems(services, problem)


def _service_problems(name: str, service: Mapping[str, Any], services: Mapping[str, Any],
                      defined: Mapping[str, set[str]]) -> Iterator[tuple[Path, str]]:
    base: Path = ("services", name)
    if "image" not in service and "build" not in service and "provider" not in service:
        yield base, f'service "{name}" has neither an image nor a build context'
    for kind, path, other in service_refs(name, service):
        if other not in services:
            what = {"depends_on": "depends on", "links": "links to",
                    "volumes_from": "mounts volumes from"}.get(kind, f"shares {kind} with")
            yield path, f'service "{name}" {what} "{other}", which is not defined'
        elif other == name:
            yield path, f'service "{name}" cannot refer to itself'

    networks = service.get("networks") or ()
    if service.get("network_mode") and networks:
        yield (*base, "network_mode"), ('network_mode and networks cannot be used together '
                                        f'(network_mode is "{service["network_mode"]}")')
    for net in networks:
        if net != "default" and net not in defined["networks"]:
            path = (*base, "networks", net) if isinstance(networks, dict) else \
                (*base, "networks", list(networks).index(net))
            yield path, f'network "{net}" is not defined (add it under the top-level networks key)'

    for index, spec in enumerate(service.get("ports") or ()):
        path = (*base, "ports", index)
        try:
            if isinstance(spec, dict):
                syntax.check_published(spec.get("published"))
            else:
                syntax.parse_port(spec)
        except ValueError as error:
            yield path, str(error)

    for index, spec in enumerate(service.get("volumes") or ()):
        path = (*base, "volumes", index)
        if isinstance(spec, str):
            try:
                entry = syntax.parse_volume(spec)
            except ValueError as error:
                yield path, str(error)
                continue
        else:
            entry = spec
            if entry.get("type") in ("bind", "image") and not entry.get("source"):
                yield path, f'a {entry["type"]} mount needs a source'
            if not str(entry.get("target", "")).startswith("/") and entry.get("type") != "npipe":
                yield path, f'the container path "{entry.get("target", "")}" is not absolute'
            size = (entry.get("tmpfs") or {}).get("size")
            if size is not None:
                yield from _unit(units.parse_bytes, size, (*path, "tmpfs", "size"))
        source = entry.get("source")
        if entry.get("type") == "volume" and source and source not in defined["volumes"]:
            yield path, (f'volume "{source}" is not defined (add it under the top-level '
                         "volumes key, or write ./" + source + " for a host directory)")

    for kind in ("secrets", "configs"):
        for index, ref in enumerate(service.get(kind) or ()):
            source = ref if isinstance(ref, str) else ref.get("source")
            if source not in defined[kind]:
                yield (*base, kind, index), (f'{kind[:-1]} "{source}" is not defined (add it '
                                             f"under the top-level {kind} key)")

    tmpfs = service.get("tmpfs")
    for index, spec in enumerate([tmpfs] if isinstance(tmpfs, str) else tmpfs or ()):
        try:
            syntax.parse_tmpfs(spec)
        except ValueError as error:
            yield (*base, "tmpfs") if isinstance(tmpfs, str) else (*base, "tmpfs", index), \
                str(error)

    hosts = service.get("extra_hosts")
    if isinstance(hosts, list):
        for index, spec in enumerate(hosts):
            try:
                syntax.parse_extra_host(spec)
            except ValueError as error:
                yield (*base, "extra_hosts", index), str(error)
    for index, spec in enumerate(service.get("expose") or ()):
        try:
            syntax.parse_expose(spec)
        except ValueError as error:
            yield (*base, "expose", index), str(error)

    for path in DURATIONS:
        value = _get(service, path)
        if value is not None:
            yield from _unit(units.parse_duration, value, (*base, *path))
    for path in SIZES:
        value = _get(service, path)
        if value is not None:
            yield from _unit(units.parse_bytes, value, (*base, *path))
    swap = service.get("memswap_limit")
    if swap is not None and str(swap) != "-1":
        yield from _unit(units.parse_bytes, swap, (*base, "memswap_limit"))

    for key in ("command", "entrypoint"):
        value = service.get(key)
        if isinstance(value, str):
            try:
                shlex.split(value)
            except ValueError as error:
                yield (*base, key), f"cannot split {key} into words: {error} (check the quotes)"

    test = _get(service, ("healthcheck", "test"))
    if isinstance(test, list) and test and test[0] not in ("NONE", "CMD", "CMD-SHELL"):
        yield (*base, "healthcheck", "test", 0), (
            f'"{test[0]}" is not a healthcheck test kind (expected NONE, CMD or CMD-SHELL '
            "as the first item, or a string for the shell)")

    replicas = _int(service.get("scale"))
    if replicas is None:
        replicas = _int(_get(service, ("deploy", "replicas")))
    if service.get("container_name") and replicas is not None and replicas > 1:
        yield (*base, "container_name"), (
            f"container_name cannot be used with {replicas} replicas (container names are "
            "unique; remove container_name or scale to 1)")

    for limit, value in (service.get("ulimits") or {}).items():
        if isinstance(value, dict):
            soft, hard = _int(value.get("soft")), _int(value.get("hard"))
            if soft is not None and hard is not None and soft > hard:
                yield (*base, "ulimits", limit), f"soft limit {soft} is above hard limit {hard}"


def _cycle_problems(services: Mapping[str, Any], problem: Any) -> Iterator[Problem]:
    from compose.graph import find_cycle

    edges: dict[str, list[str]] = {}
    first_path: dict[tuple[str, str], Path] = {}
    for name, service in services.items():
        edges[name] = []
        for _, path, other in service_refs(name, service or {}):
            if other in services and other != name:
                edges[name].append(other)
                first_path.setdefault((name, other), path)
    cycle = find_cycle(edges)
    if cycle:
        yield problem(first_path[(cycle[0], cycle[1])],
                      "dependency cycle: " + " -> ".join(cycle))


def _unit(parser: Any, value: Any, path: Path) -> Iterator[tuple[Path, str]]:
    try:
        parser(value)
    except ValueError as error:
        yield path, str(error)


def _get(node: Any, path: Path) -> Any:
    for part in path:
        if isinstance(node, dict):
            node = node.get(part)
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            node = node[part]
        else:
            return None
    return node


def _has_dollar(value: Any) -> bool:
    if isinstance(value, str):
        return "$" in value
    if isinstance(value, dict):
        return any(_has_dollar(v) for v in value.values())
    if isinstance(value, list):
        return any(_has_dollar(v) for v in value)
    return False


def _int(value: Any) -> int | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _truthy(value: Any) -> bool:
    if isinstance(value, str):
        return value.lower() == "true"
    return bool(value)
