"""`extends`: a service built on another one, in the same file or in another file.

`extends: NAME` or `extends: {service: NAME, file: PATH}`. A relative `file` is relative to
the directory of the file that holds the `extends`. The base service is resolved first
(chains of any length; a cycle is an error that prints it), copied, and the extending
service is merged onto it with the multi-file merge rules (`merge.py`), which are the
`extends` rules of the specification; `!reset`/`!override` work here too. Every attribute is
inherited: the current specification lists none that is not, and leaves it to the author to
declare the networks, volumes, ... that the base service refers to. A base service taken from
another file has its relative paths made absolute against that file's directory.
"""

from __future__ import annotations

import os
from typing import Any

from compose.errors import ConfigError, Problem
from compose.loader.files import STDIN, Sources
from compose.loader.interpolate import Interpolator
from compose.loader.merge import copy_tree, merge_value, strip_tags
from compose.loader.parse import Loc, YMap
from compose.loader.paths import absolute, rebase_service

Key = tuple[str, str]  # (absolute file path, service name)


class Extender:
    """Resolves `extends` for one environment; caches the other files it reads and the
    services it has resolved, so each is done once per load."""

    __slots__ = ("_done", "_interp", "_project_dir", "_sources", "_trees")

    def __init__(self, interp: Interpolator, sources: Sources, project_dir: str) -> None:
        self._interp = interp
        self._sources = sources
        self._project_dir = project_dir
        self._trees: dict[str, YMap] = {}
        self._done: dict[Key, Any] = {}

    def apply(self, tree: YMap, path: str) -> None:
        """Replaces, in place, each service of `tree` (the file at `path`) that uses
        `extends` by its resolved definition, which has no `extends` key and no tags."""
        services = tree.get("services")
        if not isinstance(services, YMap):
            return
        # Results for this file belong to this tree; a file listed twice is resolved twice.
        self._done = {k: v for k, v in self._done.items() if k[0] != path}
        for name in list(services):
            service = services[name]
            if isinstance(service, YMap) and "extends" in service:
                services[name] = self._resolve(path, services, name, ())

    def _resolve(self, path: str, services: YMap, name: str, chain: tuple[Key, ...]) -> Any:
        key = (path, name)
        done = self._done.get(key)
        if done is not None:
            return done
        service = services.get(name)
        if not isinstance(service, YMap) or "extends" not in service:
            return service
        chain = (*chain, key)
        where = _Where(self._sources, path, name, service)
        target, file = where.reference()
        if file is None:
            other, other_services = path, services
        else:
            base_dir = self._project_dir if path == STDIN else os.path.dirname(path)
            other = absolute(file, base_dir)
            if other == path:
                other_services = services
            else:
                other_services = self._load(other, where.problem("", "file")).get("services")
        if not isinstance(other_services, YMap) or target not in other_services:
            shown = self._sources.display(other)
            raise where.error(f'service "{target}" not found in {shown}', "service")
        if (other, target) in chain:
            cycle = (*chain[chain.index((other, target)):], (other, target))
            raise where.error(f"extends cycle: {_format_chain(cycle, self._sources)}")
        base = self._resolve(other, other_services, target, chain)
        base = strip_tags(copy_tree(base))
        if other != path:
            rebase_service(base, self._project_dir if other == STDIN
                           else os.path.dirname(other))
        own = YMap(service, loc=service.loc)
        own.key_locs = dict(service.key_locs)
        own.tags = dict(service.tags)
        del own["extends"]
        merged = merge_value(base, own, ("services", name), True)
        if isinstance(merged, YMap):
            merged.loc = service.loc
        self._done[key] = merged
        return merged

    def _load(self, path: str, origin: Problem) -> YMap:
        tree = self._trees.get(path)
        if tree is None:
            tree = self._interp.tree(self._sources.parse(path, origin)).tree
            self._trees[path] = tree
        return tree


class _Where:
    """Locates messages about one service's `extends`."""

    __slots__ = ("ext", "name", "service", "sources")

    def __init__(self, sources: Sources, path: str, name: str, service: YMap) -> None:
        self.sources = sources
        self.name = name
        self.service = service
        self.ext = service["extends"]

    def loc(self, field: str | None) -> Loc | None:
        if field and isinstance(self.ext, YMap) and field in self.ext:
            return self.ext.key_locs.get(field)
        return self.service.key_locs.get("extends") or self.service.loc

    def problem(self, message: str, field: str | None = None) -> Problem:
        loc = self.loc(field)
        suffix = f".{field}" if field and isinstance(self.ext, YMap) and field in self.ext \
            else ""
        return Problem(message, loc.file if loc else None, loc.line if loc else None,
                       f"services.{self.name}.extends{suffix}")

    def error(self, message: str, field: str | None = None) -> ConfigError:
        return ConfigError(self.problem(message, field))

    def reference(self) -> tuple[str, str | None]:
        """(service, file or None) of the `extends` value; checks its shape."""
        ext = self.ext
        if isinstance(ext, str) and ext:
            return ext, None
        if not isinstance(ext, YMap):
            raise self.error("extends must be a service name, or a mapping with `service` "
                             "and optionally `file`")
        target = ext.get("service")
        if not isinstance(target, str) or not target:
            raise self.error("extends needs `service`: the name of the service to extend",
                             "service")
        file = ext.get("file")
        if file is not None and (not isinstance(file, str) or not file):
            raise self.error("extends.file must be the path of a Compose file", "file")
        return target, file


def _format_chain(chain: tuple[Key, ...], sources: Sources) -> str:
    first_file = chain[0][0]
    return " -> ".join(name if path == first_file else f"{name} ({sources.display(path)})"
                       for path, name in chain)
