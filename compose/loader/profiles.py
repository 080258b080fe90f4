"""Which services are active (profiles, services named on the command line), and which
networks, volumes, secrets and configs the active ones use.

Rules (Compose Specification, profiles): a service without `profiles` is always active; one
with `profiles` is active when one of them is enabled ("*" enables all) or when it is named
explicitly, and naming a service enables what it depends on, transitively. An active service
that needs an inactive one is an error, unless its `depends_on` entry says `required: false`:
then the entry is dropped with a warning.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from compose.errors import ConfigError, Problem
from compose.graph import closure
from compose.loader.semantic import service_refs

if TYPE_CHECKING:
    from compose.loader.canonical import Context


def active_services(services: Mapping[str, Any], ctx: Context) -> set[str]:
    """Names of the services that profiles and explicit names enable."""
    enabled = set(ctx.profiles)
    active = {name for name, service in services.items()
              if not (service or {}).get("profiles") or "*" in enabled
              or enabled & set((service or {}).get("profiles") or ())}
    missing = [n for n in ctx.services if n not in services]
    if missing:
        raise ConfigError([Problem(f'no such service: "{n}"') for n in missing])
    todo, seen = list(ctx.services), set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        active.add(name)
        for kind, _, other in service_refs(name, services[name] or {}):
            entry = (services[name].get("depends_on") or {}) if kind == "depends_on" else {}
            optional = isinstance(entry, dict) and (entry.get(other) or {}).get("required") \
                is False
            if other in services and not optional:
                todo.append(other)
    return active


def drop_inactive_refs(services: Mapping[str, Any], active: set[str],
                        out: dict[str, dict[str, Any]], ctx: Context) -> None:
    problems = []
    for name in sorted(active):
        for kind, path, other in service_refs(name, services[name] or {}):
            if other in active or other not in services:
                continue
            depends = out[name].get("depends_on") or {}
            if kind == "depends_on" and depends.get(other, {}).get("required") is False:
                del depends[other]
                ctx.warnings.append(f'service "{name}": optional dependency "{other}" is '
                                    "disabled by profiles and is ignored")
                continue
            profiles = ", ".join((services[other] or {}).get("profiles") or ())
            problems.append(ctx.problem(path, f'service "{name}" needs "{other}", which is '
                                        f"disabled by profiles (enable one of: {profiles})"))
    if problems:
        raise ConfigError(problems)


def used_resources(services: Iterable[Mapping[str, Any]]) -> dict[str, set[str]]:
    used: dict[str, set[str]] = {k: set() for k in ("networks", "volumes", "secrets", "configs")}
    for service in services:
        used["networks"].update(service.get("networks") or ())
        used["volumes"].update(m["source"] for m in service.get("volumes") or ()
                               if m.get("type") == "volume" and m.get("source"))
        for kind in ("secrets", "configs"):
            used[kind].update(ref["source"] for ref in service.get(kind) or ())
        used["secrets"].update(ref["source"]
                               for ref in (service.get("build") or {}).get("secrets") or ())
    return used


def select(project: Mapping[str, Any], names: Iterable[str]) -> dict[str, Any]:
    """The canonical `project` cut down to `names` and their dependencies, with the
    networks, volumes, secrets and configs they use (`config SERVICE...`)."""
    services = project.get("services") or {}
    refs = {name: [other for _, _, other in service_refs(name, service) if other in services]
            for name, service in services.items()}
    keep = closure(names, refs, ConfigError)
    out = {key: value for key, value in project.items()}
    out["services"] = {name: services[name] for name in sorted(keep)}
    used = used_resources(out["services"].values())
    for kind in ("networks", "volumes", "secrets", "configs"):
        if kind in out:
            section = {k: v for k, v in out[kind].items() if k in used[kind]}
            if section:
                out[kind] = section
            else:
                del out[kind]
    return out
