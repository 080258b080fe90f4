"""Tree paths for rule tables, and the fields of a Compose tree that hold file-system paths.

A pattern is a dotted key path where `*` matches any one key or list index:
`services.*.ports` matches `("services", "web", "ports")`, `services.*.ports.*.target` matches
`("services", "web", "ports", 0, "target")`. Exact segments win over `*`.

`rebase_project` and `rebase_service` turn the relative host paths of a tree into absolute
ones; `include` and `extends: file:` use them because the merged tree has one project
directory, while an included or extended file's paths are relative to its own directory.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Generic, TypeVar

from compose.loader.parse import YMap, YSeq

V = TypeVar("V")

_WILD = "*"


class PathTable(Generic[V]):
    """A lookup table from path patterns to values, compiled once into a trie."""

    __slots__ = ("_root",)

    def __init__(self, rules: Mapping[str, V]) -> None:
        self._root: dict[str, Any] = {}
        for pattern, value in rules.items():
            node = self._root
            for segment in pattern.split("."):
                node = node.setdefault(segment, {})
            node[None] = value  # type: ignore[index]

    def get(self, path: Sequence[Any]) -> V | None:
        """The value of the most exact pattern matching the whole of `path`, or None."""
        return _lookup(self._root, path, 0)

    def __contains__(self, path: Sequence[Any]) -> bool:
        return self.get(path) is not None


def _lookup(node: dict[Any, Any], path: Sequence[Any], index: int) -> Any:
    if index == len(path):
        return node.get(None)
    part = path[index]
    if isinstance(part, str):
        child = node.get(part)
        if child is not None:
            found = _lookup(child, path, index + 1)
            if found is not None:
                return found
    wild = node.get(_WILD)
    if wild is not None:
        return _lookup(wild, path, index + 1)
    return None


# --- host paths ---------------------------------------------------------------------------

# A value that names something other than a local directory: a URL, a git remote, or one of
# the `additional_contexts` forms (`docker-image://...`, `service:name`, `oci-layout://...`).
_NOT_A_PATH = re.compile(r"^(?:[a-zA-Z][a-zA-Z0-9+.-]*://|git@|github\.com/|service:)")


def absolute(value: Any, base_dir: str) -> Any:
    """`value` made absolute against `base_dir` when it is a relative local path.

    Values that are not strings, are already absolute, start with `~` (the home directory is
    expanded later) or `$` (not interpolated: `config --no-interpolate`), or are URLs, are
    returned unchanged.
    """
    if not isinstance(value, str) or not value or value[0] in "/~$":
        return value
    if _NOT_A_PATH.match(value):
        return value
    return os.path.normpath(os.path.join(base_dir, value))


def _rebase_key(node: Any, key: str, base_dir: str) -> None:
    if isinstance(node, YMap) and key in node:
        node[key] = absolute(node[key], base_dir)


def _rebase_build(service: YMap, base_dir: str) -> None:
    build = service.get("build")
    if isinstance(build, str):
        service["build"] = absolute(build, base_dir)
    elif isinstance(build, YMap):
        _rebase_key(build, "context", base_dir)
        contexts = build.get("additional_contexts")
        if isinstance(contexts, YMap):
            for name in list(contexts):
                contexts[name] = absolute(contexts[name], base_dir)
        elif isinstance(contexts, YSeq):
            for i, item in enumerate(contexts):
                if isinstance(item, str) and "=" in item:
                    name, _, value = item.partition("=")
                    contexts[i] = f"{name}={absolute(value, base_dir)}"


def _rebase_file_list(service: YMap, key: str, base_dir: str) -> None:
    value = service.get(key)
    if isinstance(value, str):
        service[key] = absolute(value, base_dir)
    elif isinstance(value, YSeq):
        for i, item in enumerate(value):
            if isinstance(item, str):
                value[i] = absolute(item, base_dir)
            else:
                _rebase_key(item, "path", base_dir)


def _is_relative_bind(source: str) -> bool:
    # The short syntax tells a bind mount from a named volume by its first character: a
    # name never starts with "." (or "/" or "~", which need no rebasing).
    return source == "." or source.startswith(("./", "../")) or source == ".."


def _rebase_volumes(service: YMap, base_dir: str) -> None:
    volumes = service.get("volumes")
    if not isinstance(volumes, YSeq):
        return
    for i, item in enumerate(volumes):
        if isinstance(item, str):
            source, sep, rest = item.partition(":")
            if sep and _is_relative_bind(source):
                volumes[i] = f"{absolute(source, base_dir)}:{rest}"
        elif isinstance(item, YMap) and item.get("type") == "bind":
            _rebase_key(item, "source", base_dir)


def _rebase_develop(service: YMap, base_dir: str) -> None:
    develop = service.get("develop")
    watch = develop.get("watch") if isinstance(develop, YMap) else None
    if isinstance(watch, YSeq):
        for rule in watch:
            _rebase_key(rule, "path", base_dir)


def rebase_service(service: Any, base_dir: str) -> None:
    """Makes the relative host paths of one service definition absolute, in place:
    `build` (context, additional_contexts), `env_file`, `label_file`, bind-mount sources in
    `volumes`, and `develop.watch[].path`."""
    if not isinstance(service, YMap):
        return
    _rebase_build(service, base_dir)
    _rebase_file_list(service, "env_file", base_dir)
    _rebase_file_list(service, "label_file", base_dir)
    _rebase_volumes(service, base_dir)
    _rebase_develop(service, base_dir)


def rebase_project(tree: YMap, base_dir: str) -> None:
    """Makes every relative host path of a whole tree absolute, in place: each service's
    (see `rebase_service`) and the `file` of top-level `configs` and `secrets`."""
    for _section, services in _sections(tree, ("services",)):
        for name in services:
            rebase_service(services[name], base_dir)
    for _section, resources in _sections(tree, ("configs", "secrets")):
        for name in resources:
            _rebase_key(resources[name], "file", base_dir)


def _sections(tree: YMap, names: Iterable[str]) -> Iterable[tuple[str, YMap]]:
    for name in names:
        value = tree.get(name)
        if isinstance(value, YMap):
            yield name, value
