"""Frozen dataclasses <-> JSON-able dicts, driven by their type hints.

Records in the store keep requests and configurations as JSON; this turns them back into
the same dataclasses (nested dataclasses, tuples, mappings, optionals) without a hand-written
reader per type.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from functools import cache
from typing import Any, TypeVar

T = TypeVar("T")


def to_dict(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_dict(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {str(k): to_dict(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_dict(v) for v in value]
    return value


@cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def from_dict(cls: type[T], data: Any) -> T:
    """Builds `cls` from `to_dict`'s output; unknown keys are ignored (older records)."""
    return _build(cls, data)


def _build(hint: Any, data: Any) -> Any:
    if data is None:
        return None
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        options = [a for a in typing.get_args(hint) if a is not type(None)]
        for option in options:
            if dataclasses.is_dataclass(option) and isinstance(data, dict):
                return _build(option, data)
        return _build(options[0], data) if len(options) == 1 else data
    if dataclasses.is_dataclass(hint):
        hints = _hints(hint)
        kwargs = {f.name: _build(hints[f.name], data[f.name])
                  for f in dataclasses.fields(hint) if f.name in data}
        return hint(**kwargs)
    if origin is tuple:
        args = typing.get_args(hint)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_build(args[0], v) for v in data)
        if args:
            return tuple(_build(a, v) for a, v in zip(args, data, strict=False))
        return tuple(data)
    if origin in (list,):
        (arg,) = typing.get_args(hint) or (Any,)
        return [_build(arg, v) for v in data]
    if origin in (dict, Mapping, typing.Mapping) or hint in (dict, Mapping):
        args = typing.get_args(hint)
        value_hint = args[1] if len(args) == 2 else Any
        return {k: _build(value_hint, v) for k, v in data.items()}
    return data
