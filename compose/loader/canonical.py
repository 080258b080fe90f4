"""The validated tree in canonical form: long syntax everywhere, defaults filled in, absolute
paths, profiles applied. The result is a plain JSON-able dict that `shipyard config` prints
and bind.py turns into the model; canonicalising it again gives the same dict (round trip).

Rules are data: `SERVICE_RULES` maps a service key to the function that gives its canonical
value, `CASTS` maps tree paths to the type a string from interpolation must take.

Decisions that follow `docker compose` (Compose Specification plus its reference loader):
- A string `command`/`entrypoint` is split the way a POSIX shell splits words (quotes and
  backslashes), giving the exec form; a list is kept; `null` means "the image's default".
- A bare `KEY` (or `KEY:` with no value) in `environment`/`build.args` takes its value from
  the project environment; when that has none the key stays with a null value (not set in the
  container). `env_file` entries are read and folded in, `environment` winning; `label_file`
  likewise into `labels`. Neither file list remains in the output.
- A service with neither `networks` nor `network_mode` joins `default`; a `default` network
  is added to the project when a service uses it and the file does not define it.
- Named networks, volumes, secrets and configs get their engine name `<project>_<key>` unless
  they set `name` or are external; resources no active service uses are dropped.
- Profiles select the active services (rules in profiles.py); inactive ones are dropped.
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from compose.errors import ConfigError, Problem
from compose.loader import syntax, units
from compose.loader.parse import format_path, locate
from compose.loader.paths import PathTable
from compose.loader.profiles import active_services, drop_inactive_refs, used_resources
from compose.loader.semantic import DURATIONS, SIZES


@dataclass(slots=True)
class Context:
    """What canonicalisation needs besides the tree. `warnings` is filled in."""

    name: str
    working_dir: str
    environment: Mapping[str, str]
    profiles: tuple[str, ...] = ()
    services: tuple[str, ...] = ()
    read_env_file: Callable[..., dict[str, str]] | None = None
    tree: Any = None  # the located tree, for error locations
    lenient: bool = False  # the tree was not interpolated: keep what cannot be converted
    warnings: list[str] = field(default_factory=list)

    def problem(self, path: tuple[Any, ...], message: str) -> Problem:
        loc = locate(self.tree, path) if self.tree is not None else None
        return Problem(message, loc.file if loc else None, loc.line if loc else None,
                       format_path(path))


# --- casts ----------------------------------------------------------------------------------

def _to_int(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return int(value)
        except ValueError:
            return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _to_float(value: Any) -> Any:
    if isinstance(value, str | int) and not isinstance(value, bool):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def _to_bool(value: Any) -> Any:
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    return value


_S = "services.*."
CASTS: PathTable[Callable[[Any], Any]] = PathTable({
    **{_S + f: _to_int for f in (
        "cpu_count", "cpu_percent", "cpu_shares", "cpu_period", "cpu_quota", "mem_swappiness",
        "oom_score_adj", "pids_limit", "scale", "deploy.replicas", "healthcheck.retries",
        "deploy.resources.limits.pids", "deploy.update_config.parallelism",
        "deploy.rollback_config.parallelism", "deploy.restart_policy.max_attempts",
        "deploy.placement.max_replicas_per_node", "ports.*.target", "ulimits.*",
        "ulimits.*.soft", "ulimits.*.hard", "networks.*.priority", "networks.*.gw_priority",
        "blkio_config.weight")},
    **{_S + f: _to_float for f in (
        "cpus", "deploy.resources.limits.cpus", "deploy.resources.reservations.cpus",
        "deploy.update_config.max_failure_ratio", "deploy.rollback_config.max_failure_ratio")},
    **{_S + f: _to_bool for f in (
        "attach", "init", "oom_kill_disable", "privileged", "read_only", "stdin_open", "tty",
        "use_api_socket", "build.no_cache", "build.pull", "build.privileged",
        "depends_on.*.required", "depends_on.*.restart", "healthcheck.disable",
        "volumes.*.read_only", "volumes.*.bind.create_host_path", "volumes.*.volume.nocopy",
        "develop.watch.*.initial_sync", "post_start.*.privileged", "pre_stop.*.privileged",
        "env_file.*.required")},
    **{f"{section}.*.{f}": _to_bool
       for section, fields in (("networks", ("external", "internal", "attachable",
                                             "enable_ipv4", "enable_ipv6")),
                               ("volumes", ("external",)), ("secrets", ("external",)),
                               ("configs", ("external",)))
       for f in fields},
})


# Only strings starting like a number or a boolean, and integral floats, can need a cast;
# testing that first keeps the path lookup off the common case.
_CASTABLE_START = frozenset("0123456789+-.tTfF")


def plain(node: Any, path: tuple[Any, ...] = ()) -> Any:
    """A deep plain copy of a located tree (dict/list/scalars) with `CASTS` applied."""
    if isinstance(node, dict):
        return {key: plain(value, (*path, key)) for key, value in node.items()}
    if isinstance(node, list):
        return [plain(value, (*path, index)) for index, value in enumerate(node)]
    if (isinstance(node, str) and node[:1] in _CASTABLE_START) or isinstance(node, float):
        cast = CASTS.get(path)
        if cast is not None:
            return cast(node)
    return node


# --- small canonical forms ------------------------------------------------------------------

def _scalar_text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _mapping(value: Any, ctx: Context | None = None, resolve: bool = False) -> dict[str, Any]:
    """list-or-dict -> dict of strings. With `resolve`, keys without a value take theirs from
    the project environment (None when it has none)."""
    out: dict[str, Any] = {}
    if isinstance(value, list):
        for item in value:
            key, sep, text = str(item).partition("=")
            out[key] = text if sep else None
    elif isinstance(value, dict):
        out = {str(k): _scalar_text(v) for k, v in value.items()}
    if resolve and ctx is not None:
        for key, text in out.items():
            if text is None:
                out[key] = ctx.environment.get(key)
    return {key: out[key] for key in sorted(out)}


def _string_list(value: Any) -> list[str]:
    if value is None:
        return []
    return [value] if isinstance(value, str) else [str(v) for v in value]


def _command(value: Any) -> list[str] | None:
    if value is None:
        return None
    if isinstance(value, str):
        return shlex.split(value)
    return [str(v) for v in value]


def _duration(value: Any) -> str:
    return units.format_duration(units.parse_duration(value))


def _host_path(path: str, ctx: Context) -> str:
    if path == "~" or path.startswith("~/"):
        home = ctx.environment.get("HOME")
        if home:
            path = home + path[1:]
    return os.path.normpath(os.path.join(ctx.working_dir, path))


# --- service rules --------------------------------------------------------------------------

def _build(value: Any, ctx: Context) -> dict[str, Any]:
    build = {"context": value} if isinstance(value, str) else dict(value)
    context = build.get("context", ".")
    if "://" not in context and not context.startswith("git@"):
        context = _host_path(context, ctx)
    build["context"] = context
    if "dockerfile_inline" not in build:
        build.setdefault("dockerfile", "Dockerfile")
    for key in ("args", "ssh"):
        if key in build:
            build[key] = _mapping(build[key], ctx, resolve=key == "args")
    for key in ("labels", "additional_contexts"):
        if key in build:
            build[key] = _mapping(build[key])
    first = {k: build.pop(k) for k in ("context", "dockerfile", "dockerfile_inline") if k in build}
    if "extra_hosts" in build:
        build["extra_hosts"] = _extra_hosts(build["extra_hosts"], ctx)
    if "shm_size" in build:
        build["shm_size"] = units.parse_bytes(build["shm_size"])
    if "secrets" in build:
        build["secrets"] = _file_refs(build["secrets"], ctx)
    return {**first, **build}


def _depends_on(value: Any, ctx: Context) -> dict[str, Any]:
    if isinstance(value, list):
        value = {name: {} for name in value}
    out = {}
    for name, entry in value.items():
        entry = dict(entry or {})
        out[name] = {"condition": entry.pop("condition", "service_started"),
                     "required": entry.pop("required", True),
                     "restart": entry.pop("restart", False), **entry}
    return out


def _networks(value: Any, ctx: Context) -> dict[str, Any]:
    if isinstance(value, list):
        return {name: None for name in value}
    return {name: (dict(entry) if entry else None) for name, entry in value.items()}


def _ports(value: Any, ctx: Context) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for spec in value:
        if isinstance(spec, dict):
            entry = dict(spec)
            entry.setdefault("mode", "ingress")
            entry.setdefault("protocol", "tcp")
            if entry.get("published") is not None:
                entry["published"] = str(entry["published"])
            out.append(entry)
        else:
            out.extend(syntax.parse_port(spec))
    return out


def _volumes(value: Any, ctx: Context) -> list[dict[str, Any]]:
    out = []
    for spec in value:
        entry = syntax.parse_volume(spec) if isinstance(spec, str) else dict(spec)
        if entry.get("type") == "bind" and entry.get("source"):
            entry["source"] = _host_path(entry["source"], ctx)
        if entry.get("type") == "bind":
            entry["bind"] = {"create_host_path": True, **(entry.get("bind") or {})}
        tmpfs = entry.get("tmpfs")
        if tmpfs and "size" in tmpfs:
            entry["tmpfs"] = {**tmpfs, "size": units.parse_bytes(tmpfs["size"])}
        if entry.get("volume") is None:
            entry.pop("volume", None)
        out.append(entry)
    return out


def _file_refs(value: Any, ctx: Context) -> list[dict[str, Any]]:
    return [{"source": ref} if isinstance(ref, str) else dict(ref) for ref in value]


def _extra_hosts(value: Any, ctx: Context) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    if isinstance(value, dict):
        for host, addresses in value.items():
            out.setdefault(host, []).extend(_string_list(addresses))
        return out
    for spec in value:
        host, address = syntax.parse_extra_host(spec)
        out.setdefault(host, []).append(address)
    return out


def _ulimits(value: Any, ctx: Context) -> dict[str, dict[str, int]]:
    return {name: ({"soft": limit, "hard": limit} if isinstance(limit, int) else dict(limit))
            for name, limit in value.items()}


def _healthcheck(value: Any, ctx: Context) -> dict[str, Any]:
    check = dict(value)
    test = check.get("test")
    if isinstance(test, str):
        check["test"] = ["CMD-SHELL", test]
    for key in ("interval", "timeout", "start_period", "start_interval"):
        if key in check:
            check[key] = _duration(check[key])
    return check


def _develop(value: Any, ctx: Context) -> dict[str, Any]:
    develop = dict(value)
    watch = []
    for rule in develop.get("watch") or ():
        rule = dict(rule)
        rule["path"] = _host_path(rule["path"], ctx)
        for key in ("ignore", "include"):
            if key in rule:
                rule[key] = _string_list(rule[key])
        watch.append(rule)
    if watch:
        develop["watch"] = watch
    return develop


def _pull_policy(value: Any, ctx: Context) -> str:
    return "missing" if value == "if_not_present" else value


def _hooks(value: Any, ctx: Context) -> list[dict[str, Any]]:
    out = []
    for hook in value:
        hook = dict(hook)
        hook["command"] = _command(hook.get("command"))
        if "environment" in hook:
            hook["environment"] = _mapping(hook["environment"], ctx, resolve=True)
        out.append(hook)
    return out


def _deploy(value: Any, ctx: Context) -> dict[str, Any] | None:
    if value is None:
        return None
    deploy = dict(value)
    if "labels" in deploy:
        deploy["labels"] = _mapping(deploy["labels"])
    return deploy


def _keep(value: Any, ctx: Context) -> Any:
    return value


SERVICE_RULES: dict[str, Callable[[Any, Context], Any]] = {
    "build": _build,
    "command": lambda v, ctx: _command(v),
    "entrypoint": lambda v, ctx: _command(v),
    "environment": lambda v, ctx: _mapping(v, ctx, resolve=True),
    "labels": lambda v, ctx: _mapping(v),
    "annotations": lambda v, ctx: _mapping(v),
    "sysctls": lambda v, ctx: _mapping(v),
    "depends_on": _depends_on,
    "networks": _networks,
    "ports": _ports,
    "volumes": _volumes,
    "secrets": _file_refs,
    "configs": _file_refs,
    "extra_hosts": _extra_hosts,
    "ulimits": _ulimits,
    "healthcheck": _healthcheck,
    "develop": _develop,
    "deploy": _deploy,
    "pull_policy": _pull_policy,
    "post_start": _hooks,
    "pre_stop": _hooks,
    "dns": lambda v, ctx: _string_list(v),
    "dns_search": lambda v, ctx: _string_list(v),
    "tmpfs": lambda v, ctx: _string_list(v),
    "expose": lambda v, ctx: [str(p) for p in v],
    "group_add": lambda v, ctx: [str(g) for g in v],
    "user": lambda v, ctx: str(v),
    "memswap_limit": lambda v, ctx: -1 if str(v) == "-1" else units.parse_bytes(v),
}
for _path in DURATIONS:
    if len(_path) == 1:
        SERVICE_RULES[_path[0]] = lambda v, ctx: _duration(v)
for _path in SIZES:
    if len(_path) == 1:
        SERVICE_RULES.setdefault(_path[0], lambda v, ctx: units.parse_bytes(v))
# Nested durations and sizes (deploy.*) are done after the key rules, by path.
NESTED_UNITS = [(p, _duration) for p in DURATIONS if len(p) > 1 and p[0] == "deploy"] + \
    [(p, units.parse_bytes) for p in SIZES if len(p) > 1 and p[0] == "deploy"]


# --- one service ----------------------------------------------------------------------------

def canonical_service(name: str, service: Mapping[str, Any], ctx: Context) -> dict[str, Any]:
    """One service in canonical form (keys sorted). `service` is a plain, cast dict."""
    out: dict[str, Any] = {}
    for key, value in service.items():
        if key in ("extends", "env_file", "label_file"):
            continue
        rule = SERVICE_RULES.get(key)
        try:
            out[key] = rule(value, ctx) if rule is not None and value is not None else value
        except ValueError:
            if not ctx.lenient:
                raise
            out[key] = value  # not interpolated: `${...}` cannot take its long form
    if "env_file" in service:
        from_files = _read_files(name, "env_file", service["env_file"], ctx)
        out["environment"] = {**from_files, **out.get("environment", {})}
    if "label_file" in service:
        from_files = _read_files(name, "label_file", service["label_file"], ctx)
        out["labels"] = {**from_files, **out.get("labels", {})}
    for path, parse in NESTED_UNITS:
        parent = out
        for part in path[:-1]:
            parent = parent.get(part) if isinstance(parent, dict) else None
        if isinstance(parent, dict) and parent.get(path[-1]) is not None:
            parent[path[-1]] = parse(parent[path[-1]])
    if not out.get("networks") and not out.get("network_mode"):
        out["networks"] = {"default": None}
    return {key: out[key] for key in sorted(out)}


def _read_files(name: str, key: str, value: Any, ctx: Context) -> dict[str, Any]:
    """The variables of a service's `env_file`/`label_file` list, later files winning.

    Errors inside a file name that file and line; a missing file is reported at the entry
    that names it."""
    entries = [value] if isinstance(value, str) else value
    merged: dict[str, Any] = {}
    for index, entry in enumerate(entries):
        spec = {"path": entry} if isinstance(entry, str) else entry
        where = ("services", name, key) if isinstance(value, str) else \
            ("services", name, key, index)
        if ctx.read_env_file is None:
            raise ConfigError(ctx.problem(where, f"cannot read {key}: no env file reader"))
        merged.update(ctx.read_env_file(
            _host_path(spec["path"], ctx), required=spec.get("required", True) is not False,
            raw=spec.get("format") == "raw", lookup=ctx.environment.get,
            origin=ctx.problem(where, "")))
    return merged


# --- the project ----------------------------------------------------------------------------

def _resource(kind: str, key: str, entry: Any, ctx: Context) -> dict[str, Any]:
    out = dict(entry or {})
    external = out.get("external")
    if isinstance(external, dict):  # legacy `external: {name: x}`
        out["external"] = True
        if external.get("name"):
            out["name"] = external["name"]
    if out.get("external"):
        out.setdefault("name", key)
    else:
        out.pop("external", None)
        out.setdefault("name", f"{ctx.name}_{key}")
    for field_ in ("labels",):
        if field_ in out:
            out[field_] = _mapping(out[field_])
    if kind in ("secrets", "configs") and out.get("file"):
        out["file"] = _host_path(out["file"], ctx)
    return {k: out[k] for k in sorted(out)}


def canonicalize(tree: Mapping[str, Any], ctx: Context) -> dict[str, Any]:
    """The canonical project dict of a validated, semantically checked tree."""
    ctx.tree = tree
    data = plain(tree)
    services = data.get("services") or {}
    active = active_services(services, ctx)
    out_services = {name: canonical_service(name, services[name] or {}, ctx)
                    for name in sorted(active)}
    drop_inactive_refs(services, active, out_services, ctx)
    used = used_resources(out_services.values())
    project: dict[str, Any] = {"name": ctx.name, "services": out_services}
    for kind in ("networks", "volumes", "secrets", "configs"):
        declared = data.get(kind) or {}
        if kind == "networks" and "default" in used["networks"]:
            declared.setdefault("default", None)
        section = {key: _resource(kind, key, declared[key], ctx)
                   for key in sorted(declared) if key in used[kind]}
        if section:
            project[kind] = section
    for key, value in data.items():
        if isinstance(key, str) and key.startswith("x-"):
            project[key] = value
    return project

