"""Safe YAML loading that remembers where every key and item came from.

The tree this returns is made of `YMap` (a dict), `YSeq` (a list) and plain scalars (str,
int, float, bool, None). Each `YMap` knows its own location and the location of each key;
each `YSeq` knows its own location and the location of each item. Later stages
(interpolation, merge, validation) use `locate()` to turn a key path into `file:line`.

Scalars follow YAML 1.2's core schema, as the Compose Specification's reference loader
does: only `true`/`false` are booleans (`restart: no` is the string "no"), `80:80` is a
string (YAML 1.1 would read it as a base-60 number), `0755` and `0o755` are
both octal (as Compose's reference loader reads file modes). Anchors, aliases and merge
keys (`<<`) work; duplicate keys are an error.

The tags `!reset` and `!override` are recorded on the parent mapping (`YMap.tags`) and the
value is kept untagged; `merge.py` gives them their meaning.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from compose.errors import ConfigError, Problem


class _LazyPattern:
    """A regular expression compiled on first use (see `_import_yaml`)."""

    __slots__ = ("_args", "_compiled")

    def __init__(self, pattern: Any, flags: int) -> None:
        self._args = (pattern, flags)
        self._compiled: re.Pattern[Any] | None = None

    def __getattr__(self, name: str) -> Any:
        if self._compiled is None:
            self._compiled = _RE_COMPILE(*self._args)
        return getattr(self._compiled, name)


_RE_COMPILE = re.compile


def _import_yaml() -> Any:
    """PyYAML, with the regular expressions its modules compile at import time (~6 ms, most
    of it Reader.NON_PRINTABLE's Unicode ranges, and the YAML 1.1 resolvers) deferred to
    their first use: with libyaml's parser and our own resolvers below, none is ever used.
    Only calls from PyYAML's own modules are deferred; PyYAML uses them only through
    `.match`/`.search`, which the stand-in forwards."""
    if "yaml" in sys.modules:
        return sys.modules["yaml"]

    def deferred(pattern: Any, flags: int = 0) -> Any:
        caller = sys._getframe(1).f_globals.get("__name__", "")
        if caller == "yaml" or caller.startswith("yaml."):
            return _LazyPattern(pattern, flags)
        return _RE_COMPILE(pattern, flags)

    re.compile = deferred
    try:
        import yaml
    finally:
        re.compile = _RE_COMPILE
    return yaml


yaml = _import_yaml()

RESET = "!reset"
OVERRIDE = "!override"


@dataclass(frozen=True, slots=True)
class Loc:
    """A position in a source file; line and column count from 1."""

    file: str
    line: int
    column: int = 1

    def __str__(self) -> str:
        return f"{self.file}:{self.line}"


class YMap(dict):
    """A mapping from a YAML file. `loc` is where it starts, `key_locs[k]` where key k is,
    `tags[k]` is "!reset" or "!override" when the value of k carried that tag."""

    loc: Loc | None
    key_locs: dict[Any, Loc]
    tags: dict[Any, str]

    def __init__(self, *args: Any, loc: Loc | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.loc = loc
        self.key_locs = {}
        self.tags = {}


class YSeq(list):
    """A sequence from a YAML file. `loc` is where it starts, `item_locs[i]` where item i is
    (`None` for items that did not come from a file)."""

    loc: Loc | None
    item_locs: list[Loc | None]

    def __init__(self, items: Iterable[Any] = (), loc: Loc | None = None,
                 item_locs: list[Loc | None] | None = None) -> None:
        super().__init__(items)
        self.loc = loc
        self.item_locs = list(item_locs) if item_locs is not None else [None] * len(self)

    def item_loc(self, index: int) -> Loc | None:
        if 0 <= index < len(self.item_locs):
            return self.item_locs[index] or self.loc
        return self.loc


@dataclass(frozen=True, slots=True)
class _Tagged:
    """A `!reset` / `!override` tagged value, until the tree is built."""

    tag: str
    value: Any


def _mark_loc(file: str, mark: yaml.Mark | None) -> Loc | None:
    if mark is None:
        return None
    return Loc(file, mark.line + 1, mark.column + 1)


# YAML 1.2 core schema resolvers (https://yaml.org/spec/1.2.2/#1032-tag-resolution).
_CORE_RESOLVERS: list[tuple[str, re.Pattern[str], str]] = [
    ("tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), "tTfF"),
    ("tag:yaml.org,2002:int",
     re.compile(r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$"), "-+0123456789"),
    ("tag:yaml.org,2002:float",
     re.compile(r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
                r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"),
     "-+0123456789."),
    ("tag:yaml.org,2002:null", re.compile(r"^(?:~|null|Null|NULL|)$"), "~nN\0"),
]


# libyaml's C parser when PyYAML was built with it: ~5x faster on large files, same nodes.
_BaseLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _Loader(_BaseLoader):  # type: ignore[misc, valid-type]
    """SafeLoader with YAML 1.2 scalars, located containers and the Compose tags."""

    file_name = "<input>"


_Loader.yaml_implicit_resolvers = {}
for _tag, _regexp, _first in _CORE_RESOLVERS:
    _Loader.add_implicit_resolver(_tag, _regexp, list(_first))
_Loader.add_implicit_resolver("tag:yaml.org,2002:null", re.compile(r"^$"), [""])
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:merge", re.compile(r"^(?:<<)$"), ["<"])


def _construct_bool(loader: _Loader, node: yaml.ScalarNode) -> bool:
    return loader.construct_scalar(node).lower() == "true"


def _construct_int(loader: _Loader, node: yaml.ScalarNode) -> int:
    text = str(loader.construct_scalar(node))
    if text.startswith("0o"):
        return int(text[2:], 8)
    if text.startswith("0x"):
        return int(text[2:], 16)
    sign = -1 if text.startswith("-") else 1
    digits = text.lstrip("+-")
    if len(digits) > 1 and digits.startswith("0") and set(digits) <= set("01234567"):
        # Compose's reference loader reads `mode: 0400` as octal (as Go's strconv does).
        return sign * int(digits, 8)
    return int(text, 10)


def _construct_float(loader: _Loader, node: yaml.ScalarNode) -> float:
    text = str(loader.construct_scalar(node)).lower()
    if text.endswith("inf"):
        return float("-inf") if text.startswith("-") else float("inf")
    if text.endswith("nan"):
        return float("nan")
    return float(text)


def _construct_map(loader: _Loader, node: yaml.MappingNode) -> YMap:
    own = sum(1 for key_node, _ in node.value if key_node.tag != "tag:yaml.org,2002:merge")
    loader.flatten_mapping(node)  # resolves `<<` merge keys: merged pairs come first
    merged = len(node.value) - own
    result = YMap(loc=_mark_loc(loader.file_name, node.start_mark))
    own_keys: set[Any] = set()
    for index, (key_node, value_node) in enumerate(node.value):
        key = loader.construct_object(key_node, deep=True)
        if isinstance(key, _Tagged):
            key = key.value
        if not isinstance(key, (str, int, float, bool)) and key is not None:
            raise yaml.constructor.ConstructorError(
                "while constructing a mapping", node.start_mark,
                "found an unhashable or complex key", key_node.start_mark)
        if index >= merged:
            if key in own_keys:
                raise yaml.constructor.ConstructorError(
                    "while constructing a mapping", node.start_mark,
                    f"found duplicate key {key!r}", key_node.start_mark)
            own_keys.add(key)
        value = loader.construct_object(value_node, deep=True)
        if isinstance(value, _Tagged):
            result.tags[key] = value.tag
            value = value.value
        result[key] = value
        loc = _mark_loc(loader.file_name, key_node.start_mark)
        if loc is not None:
            result.key_locs[key] = loc
    return result


def _construct_seq(loader: _Loader, node: yaml.SequenceNode) -> YSeq:
    items: list[Any] = []
    locs: list[Loc | None] = []
    for child in node.value:
        value = loader.construct_object(child, deep=True)
        if isinstance(value, _Tagged):
            value = value.value
        items.append(value)
        locs.append(_mark_loc(loader.file_name, child.start_mark))
    return YSeq(items, loc=_mark_loc(loader.file_name, node.start_mark), item_locs=locs)


def _construct_tagged(loader: _Loader, node: yaml.Node) -> _Tagged:
    if isinstance(node, yaml.MappingNode):
        value: Any = _construct_map(loader, node)
    elif isinstance(node, yaml.SequenceNode):
        value = _construct_seq(loader, node)
    else:
        text = loader.construct_scalar(node)
        value = _resolve_plain(text) if not node.style else text  # plain: None or ""
    return _Tagged(node.tag, value)


def _resolve_plain(text: str) -> Any:
    """The value a plain scalar would have had without an explicit tag."""
    for tag, regexp, _ in _CORE_RESOLVERS:
        if regexp.match(text):
            node = yaml.ScalarNode(tag, text)
            return _SCALAR_CONSTRUCTORS[tag](_Loader(""), node)
    return text


_SCALAR_CONSTRUCTORS = {
    "tag:yaml.org,2002:bool": _construct_bool,
    "tag:yaml.org,2002:int": _construct_int,
    "tag:yaml.org,2002:float": _construct_float,
    "tag:yaml.org,2002:null": lambda loader, node: None,
}
for _tag, _fn in _SCALAR_CONSTRUCTORS.items():
    _Loader.add_constructor(_tag, _fn)
_Loader.add_constructor("tag:yaml.org,2002:map", _construct_map)
_Loader.add_constructor("tag:yaml.org,2002:seq", _construct_seq)
_Loader.add_constructor(RESET, _construct_tagged)
_Loader.add_constructor(OVERRIDE, _construct_tagged)


def parse_yaml(text: str, file: str) -> Any:
    """Parses one Compose document. Returns a `YMap` (or None for an empty document).

    Raises `ConfigError` with the file and line for syntax errors, duplicate keys, unknown
    tags and multiple documents.
    """
    loader = _Loader(text)
    loader.file_name = file
    try:
        document = loader.get_single_data()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        problem = exc.problem or exc.context or "invalid YAML"
        if "found another document" in str(problem):
            problem = "a Compose file holds a single document, found another one"
        if "could not determine a constructor for the tag" in str(problem):
            problem = f"{problem} (Compose knows only !reset and !override)"
        raise ConfigError(Problem(f"invalid YAML: {problem}", file, line)) from None
    except yaml.YAMLError as exc:  # e.g. "expected a single document in the stream"
        raise ConfigError(Problem(f"invalid YAML: {exc}", file)) from None
    finally:
        loader.dispose()
    return document


def locate(tree: Any, path: Iterable[Any]) -> Loc | None:
    """The most precise known location of `path` (keys and indexes) inside `tree`.

    Walks as far down as the path exists and returns the deepest location found, so an
    error about a missing key points at the mapping that lacks it.
    """
    best: Loc | None = getattr(tree, "loc", None)
    node = tree
    for part in path:
        if isinstance(node, YMap) and part in node:
            best = node.key_locs.get(part, best)
            node = node[part]
        elif isinstance(node, YSeq) and isinstance(part, int) and 0 <= part < len(node):
            best = node.item_loc(part) or best
            node = node[part]
        elif _has_child(node, part):
            node = node[part]
        else:
            break
        inner = getattr(node, "loc", None)
        if inner is not None and isinstance(node, YMap | YSeq) and best is None:
            best = inner
    return best


def _has_child(node: Any, part: Any) -> bool:
    if isinstance(node, dict):
        return part in node
    return isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node)


def format_path(path: Iterable[Any]) -> str:
    """`("services", "web", "ports", 0)` -> `services.web.ports[0]`."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out
