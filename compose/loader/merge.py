"""Merging Compose trees: several `-f` files, and a service with the one it `extends`.

The Compose Specification's rules (merge chapter, `extends` section), as a table keyed by
tree path (`RULES`); anything not in the table follows the defaults:
- mappings merge key by key; scalars are replaced; sequences are appended;
- an override that is null keeps the base (write `!reset null` to remove a value);
- `!reset` on a key removes it (from the base too); `!override` replaces without merging.
Special cases: `command`, `entrypoint`, `healthcheck.test` are replaced; `ports`, `volumes`,
`secrets`, `configs`, `devices` and `blkio_config.device_*` merge entries that share their
unique key (short and long syntax alike); `environment`, `labels`, `build.args`, ... merge by
variable name whether written as lists or maps; `cap_add`, `dns`, `profiles`, ... append
without duplicates; `networks`, `depends_on` and `extra_hosts` merge by name across their
list and map forms; `build: path` merges as `build: {context: path}`.

Inputs are never mutated. The result shares nodes with its inputs, so callers hand over both
trees and keep only the result. The base is tag-free; tags found in the override are
consumed, so the result is tag-free too. Locations stay with the nodes: a merged key points
at the file its value came from.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Any

from compose.loader.parse import OVERRIDE, RESET, YMap, YSeq
from compose.loader.paths import PathTable

Path = tuple[Any, ...]
Rule = Callable[[Any, Any, Path, bool], Any]


def merge_trees(base: Any, override: Any, *, tagged: bool) -> Any:
    """`override` (a whole Compose file, or a service) merged onto `base`.

    `tagged` says whether `override` may contain `!reset`/`!override` tags.
    """
    return merge_value(base, override, (), tagged)


def merge_value(base: Any, over: Any, path: Path, tagged: bool) -> Any:
    """One value merged at `path` (the key path from the top of a Compose file)."""
    if over is None:
        return base
    rule = RULES.get(path)
    if rule is not None:
        return rule(base, over, path, tagged)
    if isinstance(base, YMap) and isinstance(over, YMap):
        return merge_maps(base, over, path, tagged)
    if isinstance(base, YSeq) and isinstance(over, YSeq):
        return _append(base, over, tagged)
    return _clean(over, tagged)


def merge_maps(base: YMap, over: YMap, path: Path, tagged: bool) -> YMap:
    out = YMap(base, loc=base.loc)
    out.key_locs = dict(base.key_locs)
    tags = over.tags if tagged else None
    for key, value in over.items():
        tag = tags.get(key) if tags else None
        if tag == RESET:
            out.pop(key, None)
            out.key_locs.pop(key, None)
            continue
        if tag == OVERRIDE or key not in out:
            out[key] = _clean(value, tagged)
        elif value is None:
            continue
        else:
            out[key] = merge_value(out[key], value, (*path, key), tagged)
        loc = over.key_locs.get(key)
        if loc is not None:
            out.key_locs[key] = loc
    return out


def _append(base: YSeq, over: YSeq, tagged: bool) -> YSeq:
    items = [_clean(item, tagged) for item in over] if tagged else over
    return YSeq([*base, *items], loc=base.loc,
                item_locs=[*base.item_locs, *over.item_locs])


def _clean(node: Any, tagged: bool) -> Any:
    return strip_tags(node) if tagged else node


def strip_tags(node: Any) -> Any:
    """Applies the tags left in a tree that has no base to merge with: keys tagged `!reset`
    are removed, `!override` means nothing more. Mutates and returns `node`."""
    if isinstance(node, YMap):
        if node.tags:
            for key, tag in node.tags.items():
                if tag == RESET and key in node:
                    del node[key]
                    node.key_locs.pop(key, None)
            node.tags = {}
        for value in node.values():
            if isinstance(value, YMap | YSeq):
                strip_tags(value)
    elif isinstance(node, YSeq):
        for value in node:
            if isinstance(value, YMap | YSeq):
                strip_tags(value)
    return node


def copy_tree(node: Any) -> Any:
    """A deep copy of a tree, with its locations and tags."""
    if isinstance(node, YMap):
        out = YMap({k: copy_tree(v) for k, v in node.items()}, loc=node.loc)
        out.key_locs = dict(node.key_locs)
        out.tags = dict(node.tags)
        return out
    if isinstance(node, YSeq):
        return YSeq([copy_tree(v) for v in node], loc=node.loc, item_locs=node.item_locs)
    return node


# --- list <-> map normal forms ------------------------------------------------------------

def _as_seq(value: Any) -> YSeq:
    if isinstance(value, YSeq):
        return value
    if isinstance(value, list):
        return YSeq(value)
    return YSeq([value], loc=getattr(value, "loc", None))


def _seq_to_map(seq: YSeq, split: Callable[[Any], tuple[Any, Any]]) -> YMap:
    out = YMap(loc=seq.loc)
    for index, item in enumerate(seq):
        key, value = split(item)
        out[key] = value
        loc = seq.item_loc(index)
        if loc is not None:
            out.key_locs[key] = loc
    return out


def _split_assignment(item: Any) -> tuple[Any, Any]:
    """`KEY=VALUE` -> (KEY, VALUE); a bare `KEY` -> (KEY, None)."""
    text = str(item) if not isinstance(item, str) else item
    key, sep, value = text.partition("=")
    return key, value if sep else None


def _split_host(item: Any) -> tuple[Any, Any]:
    """`host=ip` or `host:ip` (extra_hosts) -> (host, ip)."""
    text = str(item)
    if "=" in text:
        host, _, address = text.partition("=")
    else:
        host, _, address = text.partition(":")
    return host, address


def _split_name(item: Any) -> tuple[Any, Any]:
    return item, None


def _split_dependency(item: Any) -> tuple[Any, Any]:
    return item, YMap({"condition": "service_started"})


def _mapping(split: Callable[[Any], tuple[Any, Any]]) -> Rule:
    """Merges by key, turning the list form into a map first."""
    def rule(base: Any, over: Any, path: Path, tagged: bool) -> Any:
        b = _seq_to_map(base, split) if isinstance(base, YSeq) else base
        o = _seq_to_map(over, split) if isinstance(over, YSeq) else over
        if isinstance(b, YMap) and isinstance(o, YMap):
            return merge_maps(b, o, path, tagged)
        return _clean(over, tagged)
    return rule


def _names(split: Callable[[Any], tuple[Any, Any]]) -> Rule:
    """Two lists stay a list without duplicates; a map on either side makes both maps."""
    as_map = _mapping(split)

    def rule(base: Any, over: Any, path: Path, tagged: bool) -> Any:
        if isinstance(base, YSeq) and isinstance(over, YSeq):
            return _keyed_merge(base, over, path, tagged, _identity)
        return as_map(base, over, path, tagged)
    return rule


# --- sequences with unique keys -----------------------------------------------------------

def _identity(item: Any) -> Hashable:
    return item if isinstance(item, Hashable) else id(item)


def _keyed_merge(base: Any, over: Any, path: Path, tagged: bool,
                 key: Callable[[Any], Hashable]) -> YSeq:
    """Appends the override's entries; one whose key an earlier entry has replaces it (or,
    when both are mappings, merges into it)."""
    b = _as_seq(base)
    o = _as_seq(over)
    items = list(b)
    locs = list(b.item_locs) + [None] * (len(items) - len(b.item_locs))
    index: dict[Hashable, int] = {}
    for i, item in enumerate(items):
        index.setdefault(key(item), i)
    for j, item in enumerate(o):
        item = _clean(item, tagged)
        k = key(item)
        at = index.get(k)
        loc = o.item_loc(j)
        if at is None:
            index[k] = len(items)
            items.append(item)
            locs.append(loc)
        else:
            old = items[at]
            items[at] = (merge_maps(old, item, (*path, at), False)
                         if isinstance(old, YMap) and isinstance(item, YMap) else item)
            locs[at] = loc
    return YSeq(items, loc=b.loc, item_locs=locs)


def _unique(key: Callable[[Any], Hashable] = _identity) -> Rule:
    def rule(base: Any, over: Any, path: Path, tagged: bool) -> Any:
        return _keyed_merge(base, over, path, tagged, key)
    return rule


def port_key(item: Any) -> Hashable:
    """{host ip, container port, published port, protocol} of a `ports` entry."""
    if isinstance(item, YMap):
        published = item.get("published")
        return (str(item.get("host_ip") or ""), str(item.get("target", "")),
                "" if published is None else str(published),
                str(item.get("protocol") or "tcp"))
    text = str(item)
    text, _, protocol = text.partition("/")
    parts = text.rsplit(":", 2)
    target = parts[-1]
    published = parts[-2] if len(parts) >= 2 else ""
    host_ip = parts[0].strip("[]") if len(parts) == 3 else ""
    return host_ip, target, published, protocol or "tcp"


def volume_key(item: Any) -> Hashable:
    """The container path of a `volumes` entry (`src:dst[:mode]`, `dst`, or long syntax)."""
    if isinstance(item, YMap):
        return item.get("target", id(item))
    parts = str(item).split(":")
    return parts[1] if len(parts) >= 2 else parts[0]


def _mount_key(default_dir: str) -> Callable[[Any], Hashable]:
    """The target of a `secrets`/`configs` entry; the source name's default otherwise."""
    def key(item: Any) -> Hashable:
        if isinstance(item, YMap):
            target = item.get("target")
            if target is None:
                return default_dir + str(item.get("source"))
            target = str(target)
            return target if target.startswith("/") else default_dir + target
        return default_dir + str(item)
    return key


def device_key(item: Any) -> Hashable:
    """The container path of a `devices` entry; a CDI name (`vendor/class=name`) is its own
    key."""
    if isinstance(item, YMap):
        return item.get("target", item.get("source", id(item)))
    parts = str(item).split(":")
    return parts[1] if len(parts) >= 2 else parts[0]


def _path_key(item: Any) -> Hashable:
    """The `path` of an `env_file` or `blkio_config` entry, short or long syntax."""
    if isinstance(item, YMap):
        return item.get("path", id(item))
    return _identity(item)


# --- special mappings ---------------------------------------------------------------------

def _replace(base: Any, over: Any, path: Path, tagged: bool) -> Any:
    return _clean(over, tagged)


def _build(base: Any, over: Any, path: Path, tagged: bool) -> Any:
    b = YMap({"context": base}, loc=None) if isinstance(base, str) else base
    o = YMap({"context": over}, loc=None) if isinstance(over, str) else over
    if isinstance(b, YMap) and isinstance(o, YMap):
        return merge_maps(b, o, path, tagged)
    return _clean(over, tagged)


def _logging(base: Any, over: Any, path: Path, tagged: bool) -> Any:
    # Options belong to a driver: a different driver brings its own options only.
    if (isinstance(base, YMap) and isinstance(over, YMap) and "driver" in over
            and base.get("driver") not in (None, over["driver"])):
        return _clean(over, tagged)
    if isinstance(base, YMap) and isinstance(over, YMap):
        return merge_maps(base, over, path, tagged)
    return _clean(over, tagged)


_KV = _mapping(_split_assignment)
_S = "services.*."

RULES: PathTable[Rule] = PathTable({
    **{_S + f: _replace for f in ("command", "entrypoint", "healthcheck.test", "extends")},
    **{_S + f: _KV for f in ("environment", "labels", "annotations", "sysctls",
                             "build.args", "build.labels", "deploy.labels",
                             "volumes.*.volume.labels")},
    **{_S + f: _unique() for f in (
        "cap_add", "cap_drop", "security_opt", "dns", "dns_search", "dns_opt", "expose",
        "profiles", "volumes_from", "links", "external_links", "tmpfs", "group_add",
        "device_cgroup_rules", "networks.*.aliases", "networks.*.link_local_ips",
        "build.tags", "build.cache_from", "build.cache_to", "build.platforms",
        "deploy.placement.constraints")},
    _S + "env_file": _unique(_path_key),
    _S + "label_file": _unique(_path_key),
    _S + "ports": _unique(port_key),
    _S + "volumes": _unique(volume_key),
    _S + "secrets": _unique(_mount_key("/run/secrets/")),
    _S + "configs": _unique(_mount_key("/")),
    _S + "devices": _unique(device_key),
    **{_S + f"blkio_config.{f}": _unique(_path_key)
       for f in ("device_read_bps", "device_read_iops", "device_write_bps",
                 "device_write_iops", "weight_device")},
    _S + "networks": _names(_split_name),
    _S + "models": _names(_split_name),
    _S + "depends_on": _names(_split_dependency),
    _S + "extra_hosts": _names(_split_host),
    _S + "build.extra_hosts": _names(_split_host),
    _S + "build": _build,
    _S + "logging": _logging,
})
