"""`include`: other Compose projects whose resources are copied into this one.

Short syntax: a list of paths. Long syntax: `path` (a string, or a list of files merged
together), `project_directory` (default: the directory of the first path) and `env_file`
(a string or list; default: the optional `.env` of that project directory). Paths in the
entry are relative to the including project's directory. Each included project loads on its
own (interpolation with its env files overridden by the including project's environment,
its own includes, extends and merges), its relative paths become absolute against its
project directory, and its services, networks, volumes, configs, secrets and models are
copied in. A name defined both by the including file and an included project (or by two
included projects) is an error, unless both definitions are identical; includes that lead
back to a file on the way are an error that prints the chain.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from compose.errors import ConfigError, Problem
from compose.loader.dotenv import read_env_file
from compose.loader.files import Sources
from compose.loader.options import Scope
from compose.loader.parse import Loc, YMap, YSeq
from compose.loader.paths import absolute, rebase_project

RESOURCES = {"services": "service", "networks": "network", "volumes": "volume",
             "configs": "config", "secrets": "secret", "models": "model"}

LoadFiles = Callable[[Sequence[str], Scope], YMap]
"""Loads and merges Compose files (absolute paths) in a scope; raw.py's pipeline."""


@dataclass(frozen=True, slots=True)
class IncludeEntry:
    """One `include` item, paths still as written."""

    paths: tuple[str, ...]
    project_directory: str | None
    env_files: tuple[str, ...] | None
    loc: Loc | None
    path: str  # key path of the entry in messages, e.g. "include[0]"


def apply_includes(tree: YMap, path: str, scope: Scope, sources: Sources,
                   load: LoadFiles) -> None:
    """Removes `include` from `tree` (the file at `path`) and copies in what it includes."""
    if "include" not in tree:
        return
    entries = tree.pop("include")
    loc = tree.key_locs.pop("include", None)
    if entries is None:
        return
    if not isinstance(entries, YSeq):
        raise ConfigError(_problem("include must be a list of paths, or of mappings with "
                                   "`path`", loc, "include"))
    for index, item in enumerate(entries):
        entry = parse_entry(item, entries.item_loc(index) or loc, f"include[{index}]")
        included = _load_entry(entry, path, scope, sources, load)
        _import(tree, included, entry, sources)


def parse_entry(item: Any, loc: Loc | None, where: str) -> IncludeEntry:
    """Checks the shape of one `include` item."""
    if isinstance(item, str) and item:
        return IncludeEntry((item,), None, None, loc, where)
    if not isinstance(item, YMap):
        raise ConfigError(_problem("an include entry must be a path, or a mapping with "
                                   "`path`", loc, where))
    unknown = sorted(str(k) for k in item if k not in ("path", "project_directory",
                                                       "env_file"))
    if unknown:
        raise ConfigError(_problem(f"unknown include attribute {unknown[0]!r} (expected "
                                   "path, project_directory, env_file)",
                                   item.key_locs.get(unknown[0], loc), where))
    paths = _strings(item, "path", loc, where, required=True)
    env_files = _strings(item, "env_file", loc, where, required=False)
    project_directory = item.get("project_directory")
    if project_directory is not None and not isinstance(project_directory, str):
        raise ConfigError(_problem("project_directory must be a path",
                                   item.key_locs.get("project_directory", loc),
                                   f"{where}.project_directory"))
    return IncludeEntry(paths or (), project_directory, env_files, loc, where)


def _strings(item: YMap, key: str, loc: Loc | None, where: str,
             required: bool) -> tuple[str, ...] | None:
    value = item.get(key)
    at = item.key_locs.get(key, loc)
    if value is None:
        if required:
            raise ConfigError(_problem("include needs `path`: the Compose file(s) to include",
                                       loc, where))
        return None
    values = [value] if isinstance(value, str) else value
    if not isinstance(values, list) or not values \
            or not all(isinstance(v, str) and v for v in values):
        raise ConfigError(_problem(f"{key} must be a path or a list of paths", at,
                                   f"{where}.{key}"))
    return tuple(values)


def _load_entry(entry: IncludeEntry, path: str, scope: Scope, sources: Sources,
                load: LoadFiles) -> YMap:
    base = scope.project_dir
    paths = [absolute(p, base) for p in entry.paths]
    on_the_way = (*scope.chain, path)
    for target in paths:
        if target in on_the_way:
            cycle = [*on_the_way[on_the_way.index(target):], target]
            shown = " -> ".join(sources.display(p) for p in cycle)
            raise ConfigError(_problem(f"include cycle: {shown}", entry.loc, entry.path))
    project_dir = (absolute(entry.project_directory, base) if entry.project_directory
                   else os.path.dirname(paths[0]))
    parent_env = scope.interp.env
    defaults = _env_defaults(entry, base, project_dir, parent_env, sources)
    child = Scope(project_dir, scope.interp.with_env({**defaults, **parent_env}),
                  (*on_the_way,))
    for target in paths:  # parse now, so a missing file is reported at this entry
        sources.parse(target, _problem("", entry.loc, f"{entry.path}"))
    included = load(paths, child)
    rebase_project(included, project_dir)
    return included


def _env_defaults(entry: IncludeEntry, base: str, project_dir: str,
                  parent_env: Any, sources: Sources) -> dict[str, str]:
    values: dict[str, str] = {}

    def lookup(name: str) -> str | None:
        found = parent_env.get(name)
        return found if found is not None else values.get(name)

    if entry.env_files is None:
        default = os.path.join(project_dir, ".env")
        if os.path.isfile(default):
            values.update(read_env_file(default, lookup=lookup,
                                        display=sources.display(default)))
        return values
    for given in entry.env_files:
        env_path = absolute(given, base)
        values.update(read_env_file(env_path, lookup=lookup, display=sources.display(env_path),
                                    origin=_problem("", entry.loc, f"{entry.path}.env_file")))
    return values


def _import(tree: YMap, included: YMap, entry: IncludeEntry, sources: Sources) -> None:
    for section, kind in RESOURCES.items():
        theirs = included.get(section)
        if not isinstance(theirs, YMap) or not theirs:
            continue
        ours = tree.get(section)
        if not isinstance(ours, YMap):
            ours = YMap(loc=tree.key_locs.get(section) or theirs.loc)
            tree[section] = ours
            if section not in tree.key_locs and theirs.loc is not None:
                tree.key_locs[section] = theirs.loc
        for name, value in theirs.items():
            their_loc = theirs.key_locs.get(name)
            if name in ours:
                if ours[name] == value:
                    continue
                here = ours.key_locs.get(name) or ours.loc
                there = f" at {their_loc}" if their_loc else ""
                raise ConfigError(_problem(
                    f'{kind} "{name}" is also defined by the included project{there} '
                    f"({entry.path}); include does not merge definitions, rename one of them",
                    here, f"{section}.{name}"))
            ours[name] = value
            if their_loc is not None:
                ours.key_locs[name] = their_loc


def _problem(message: str, loc: Loc | None, path: str) -> Problem:
    return Problem(message, loc.file if loc else None, loc.line if loc else None, path)

