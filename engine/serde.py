"""Frozen dataclasses <-> JSON-able dicts, driven by their type hints.

Records in the store keep requests and configurations as JSON; this turns them back into
the same dataclasses (nested dataclasses, tuples, mappings, optionals) without a hand-written
reader per type.

`from_dict` reads each type's hints once and builds a converter for it (cached), so reading
a record is a walk over its data, not over the typing machinery: every command that lists
containers reads each container's request this way.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Callable, Mapping
from functools import cache
from typing import Any, TypeVar

T = TypeVar("T")
Convert = Callable[[Any], Any]


# Field names of each dataclass seen by to_dict (None: not a dataclass).
_NAMES: dict[type, tuple[str, ...] | None] = {}
_PLAIN = frozenset({str, int, float, bool, type(None)})


def to_dict(value: Any) -> Any:
    cls = type(value)
    if cls in _PLAIN:
        return value
    try:
        names = _NAMES[cls]
    except KeyError:
        names = _NAMES[cls] = (tuple(f.name for f in dataclasses.fields(cls))
                               if dataclasses.is_dataclass(cls) else None)
    if names is not None:
        return {name: to_dict(getattr(value, name)) for name in names}
    if isinstance(value, Mapping):
        return {str(k): to_dict(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_dict(v) for v in value]
    return value


def from_dict(cls: type[T], data: Any) -> T:
    """Builds `cls` from `to_dict`'s output; unknown keys are ignored (older records)."""
    return _converter(cls)(data)


def _identity(data: Any) -> Any:
    return data


@cache
def _converter(hint: Any) -> Convert:
    """The function that turns JSON data into a value of type `hint` (None stays None)."""
    build = _build(hint)
    if build is None:
        return _identity

    def convert(data: Any) -> Any:
        return None if data is None else build(data)

    return convert


def _build(hint: Any) -> Convert | None:
    """A converter for non-None data of type `hint`, or None when the data is the value."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        options = [a for a in typing.get_args(hint) if a is not type(None)]
        fallback = _converter(options[0]) if len(options) == 1 else _identity
        classes = [o for o in options if dataclasses.is_dataclass(o)]
        if not classes:
            return None if fallback is _identity else fallback
        record = _converter(classes[0])
        # A mapping is the first dataclass option; anything else goes the single option's
        # way (or stays as it is).
        return lambda data: record(data) if isinstance(data, dict) else fallback(data)
    if dataclasses.is_dataclass(hint):
        return _record(hint)
    if origin is tuple:
        args = typing.get_args(hint)
        if len(args) == 2 and args[1] is Ellipsis:
            item = _converter(args[0])
            if item is _identity:
                return tuple
            return lambda data: tuple(item(v) for v in data)
        if args:
            items = [_converter(a) for a in args]
            return lambda data: tuple(c(v) for c, v in zip(items, data, strict=False))
        return tuple
    if origin is list:
        (arg,) = typing.get_args(hint) or (Any,)
        item = _converter(arg)
        return lambda data: [item(v) for v in data]
    if origin in (dict, Mapping, typing.Mapping) or hint in (dict, Mapping):
        args = typing.get_args(hint)
        value = _converter(args[1]) if len(args) == 2 else _identity
        if value is _identity:
            return lambda data: dict(data.items())
        return lambda data: {k: value(v) for k, v in data.items()}
    return None


def _record(cls: type) -> Convert:
    """Builds `cls` from a dict of its fields' data (keys it lacks take their defaults).
    The fields' converters are made on first use, so types may refer to each other."""
    fields: list[tuple[str, Convert]] = []

    def build(data: Any) -> Any:
        if not fields:
            hints = typing.get_type_hints(cls)
            made = [(f.name, _converter(hints[f.name])) for f in dataclasses.fields(cls)]
            # all at once: another thread must never see (and build from) half of them
            fields[:] = made
        return cls(**{name: convert(data[name]) for name, convert in fields if name in data})

    return build
