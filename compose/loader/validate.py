"""Schema validation of the merged tree against schemas/compose-spec.json.

`validate(tree)` reports every violation at once as a `ConfigError` whose problems carry the
file and line (from the located tree), the key path (`services.web.ports[0]`) and a message
that says what was expected ("expected a string, got a list", `unknown key "imagee" (did you
mean "image"?)`).

Two interchangeable backends read the same schema file:
- "fast" (the default): our own compiler for the subset of JSON Schema the schema file uses
  (type, properties, patternProperties, additionalProperties, items, required, enum, pattern,
  minimum, maximum, uniqueItems, $ref). It rejects any other keyword when compiling (and
  `unsupported_keywords` finds them in the whole file, for a test), so the schema cannot
  quietly grow beyond what it checks. It exists because importing jsonschema
  costs ~75 ms, half of the budget of a whole `shipyard config` run.
- "jsonschema": the reference implementation (Draft 2020-12). tests/unit/test_validate.py
  checks that both backends find the same violations.
Both are compiled once, lazily, and cached at module level.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from compose.errors import ConfigError, Problem
from compose.loader.parse import format_path, locate

SCHEMA_PATH = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))), "schemas", "compose-spec.json")


@dataclass(frozen=True, slots=True)
class Violation:
    """One schema violation, backend-neutral. `schema` is the subschema that failed."""

    path: tuple[Any, ...]
    keyword: str
    schema: dict[str, Any]
    instance: Any


_SCHEMA: dict[str, Any] | None = None
_CACHE: dict[str, Callable[[Any], Iterator[Violation]]] = {}


def load_schema() -> dict[str, Any]:
    global _SCHEMA
    if _SCHEMA is None:
        with open(SCHEMA_PATH, encoding="utf-8") as handle:
            _SCHEMA = json.load(handle)
    return _SCHEMA


def violations(tree: Any, backend: str = "fast") -> list[Violation]:
    """Every schema violation in `tree`, in document order of discovery."""
    check = _CACHE.get(backend)
    if check is None:
        check = _compile_fast() if backend == "fast" else _compile_jsonschema()
        _CACHE[backend] = check
    return list(check(tree))


def schema_problems(tree: Any, backend: str = "fast", lenient: bool = False) -> list[Problem]:
    """The violations in `tree` as located, de-duplicated `Problem`s.

    `lenient` skips format and type violations of strings that still hold a `$` (trees that
    were not interpolated: `config --no-interpolate`)."""
    problems: list[Problem] = []
    seen: set[tuple[str, str]] = set()
    for violation in violations(tree, backend):
        if lenient and isinstance(violation.instance, str) and "$" in violation.instance:
            continue
        for path, message in _describe(violation):
            key = (format_path(path), message)
            if key in seen:
                continue
            seen.add(key)
            loc = locate(tree, path)
            problems.append(Problem(message, loc.file if loc else None,
                                    loc.line if loc else None, key[0] or None))
    problems.sort(key=lambda p: (p.file or "", p.line or 0))
    return problems


def validate(tree: Any, backend: str = "fast", lenient: bool = False) -> None:
    """Raises `ConfigError` listing every schema violation in `tree`."""
    problems = schema_problems(tree, backend, lenient)
    if problems:
        raise ConfigError(problems)


# --- messages -------------------------------------------------------------------------------

_TYPE_WORDS = {"string": "a string", "integer": "an integer", "number": "a number",
               "boolean": "a boolean", "array": "a list", "object": "a mapping", "null": "null"}


def kind_of(value: Any) -> str:
    if isinstance(value, bool):
        return f"a boolean ({str(value).lower()})"
    if value is None:
        return "nothing (null)"
    if isinstance(value, str):
        return f'the string "{value}"' if len(value) < 60 else "a string"
    if isinstance(value, int):
        return f"the integer {value}"
    if isinstance(value, float):
        return f"the number {value}"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return type(value).__name__


def _expected(schema: dict[str, Any]) -> str:
    if "x-expected" in schema:
        return schema["x-expected"]
    types = schema.get("type")
    if isinstance(types, str):
        types = [types]
    if types:
        words = [_TYPE_WORDS.get(t, t) for t in types]
        return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " or " + words[-1]
    return "a valid value"


def _show(value: Any) -> str:
    return f'"{value}"' if isinstance(value, str) else json.dumps(value, default=str)


def _describe(v: Violation) -> Iterator[tuple[tuple[Any, ...], str]]:
    schema, instance = v.schema, v.instance
    if v.keyword == "type":
        yield v.path, f"expected {_expected(schema)}, got {kind_of(instance)}"
    elif v.keyword == "additionalProperties":
        known = list(schema.get("properties", {}))
        patterns = [re.compile(p) for p in schema.get("patternProperties", {})]
        for key in instance:
            if key in known or any(p.search(str(key)) for p in patterns):
                continue
            if known:
                import difflib  # only when there is an unknown key to suggest for

                hint = difflib.get_close_matches(str(key), known, n=1, cutoff=0.6)
                extra = f' (did you mean "{hint[0]}"?)' if hint else ""
                yield (*v.path, key), f'unknown key "{key}"{extra}'
            else:
                names = schema.get("x-names", "name")
                yield (*v.path, key), f'"{key}" is not a valid {names}'
    elif v.keyword == "required":
        for key in schema["required"]:
            if key not in instance:
                yield v.path, f'missing required key "{key}"'
    elif v.keyword == "enum":
        options = ", ".join(str(o) for o in schema["enum"])
        yield v.path, f"{_show(instance)} is not one of: {options}"
    elif v.keyword == "pattern":
        yield v.path, f"{_show(instance)} is not valid (expected {_expected(schema)})"
    elif v.keyword == "minimum":
        yield v.path, f"{instance} is too small (expected {_expected(schema)})"
    elif v.keyword == "maximum":
        yield v.path, f"{instance} is too large (expected {_expected(schema)})"
    elif v.keyword == "uniqueItems":
        seen: list[Any] = []
        for item in instance:
            if item in seen:
                yield v.path, f"{_show(item)} is listed twice"
                break
            seen.append(item)
    else:  # pragma: no cover - the schema uses only the keywords above
        yield v.path, f"is not valid ({v.keyword})"


# --- the reference backend ------------------------------------------------------------------

def _compile_jsonschema() -> Callable[[Any], Iterator[Violation]]:
    import jsonschema  # heavy: only when asked for

    validator = jsonschema.Draft202012Validator(load_schema())

    def check(tree: Any) -> Iterator[Violation]:
        for error in validator.iter_errors(tree):
            yield from _flatten(error)

    return check


def _flatten(error: Any) -> Iterator[Violation]:
    if error.context:  # oneOf/anyOf: our schema has none, but stay correct if it grows some
        for sub in error.context:
            yield from _flatten(sub)
        return
    yield Violation(tuple(error.absolute_path), str(error.validator), error.schema,
                    error.instance)


# --- the fast backend -----------------------------------------------------------------------

_ANNOTATIONS = {"$schema", "$id", "title", "description", "x-expected", "x-names", "$defs"}
Check = Callable[[Any, tuple[Any, ...]], Iterator[Violation]]


_CLASSES: dict[str, tuple[type, ...]] = {
    "string": (str,), "object": (dict,), "array": (list,), "boolean": (bool,),
    "null": (type(None),), "integer": (int,), "number": (int, float)}


def _type_test(types: list[str]) -> Callable[[Any], bool]:
    """A fast test for JSON Schema `type`: booleans are not numbers, integral floats are
    integers."""
    classes = tuple(c for t in types for c in _CLASSES[t])
    bool_ok = "boolean" in types
    float_ints = "integer" in types and "number" not in types

    def test(value: Any) -> bool:
        if isinstance(value, bool):
            return bool_ok
        if isinstance(value, classes):
            return True
        return float_ints and isinstance(value, float) and value.is_integer()

    return test


_KEYWORDS = {"type", "properties", "patternProperties", "additionalProperties", "items",
             "required", "enum", "pattern", "minimum", "maximum", "uniqueItems", "$ref"}


def unsupported_keywords(schema: Any) -> set[str]:
    """The keywords anywhere in `schema` that the fast backend does not implement (it
    compiles each subschema on first use, so this is how the whole file is checked)."""
    found: set[str] = set()
    if isinstance(schema, dict):
        found |= set(schema) - _ANNOTATIONS - _KEYWORDS
        for key, sub in schema.items():
            if key in ("properties", "patternProperties", "$defs"):
                for child in sub.values():
                    found |= unsupported_keywords(child)
            elif key in ("additionalProperties", "items"):
                found |= unsupported_keywords(sub)
    return found


def _compile_fast() -> Callable[[Any], Iterator[Violation]]:
    """A checker for the whole schema. Each subschema is compiled the first time a value
    reaches it: a small file touches a few dozen of the schema's ~400 subschemas, and
    compiling them all (and their regular expressions) cost more than validating."""
    root = load_schema()
    refs: dict[str, Check] = {}

    def compile_ref(ref: str) -> Check:
        if ref not in refs:
            refs[ref] = compile_schema(root["$defs"][ref.removeprefix("#/$defs/")])
        return refs[ref]

    def compile_schema(schema: dict[str, Any]) -> Check:
        compiled: list[Check] = []

        def check(value: Any, path: tuple[Any, ...]) -> Iterator[Violation]:
            if not compiled:
                compiled.append(build(schema))
            return compiled[0](value, path)

        return check

    def build(schema: dict[str, Any]) -> Check:
        unknown = set(schema) - _ANNOTATIONS - _KEYWORDS
        if unknown:
            raise ValueError(f"schema keywords not supported by the fast validator: {unknown}")
        if "$ref" in schema:
            return compile_ref(schema["$ref"])
        types = schema.get("type")
        if isinstance(types, str):
            types = [types]
        type_ok = _type_test(types) if types else None
        props = {k: compile_schema(s) for k, s in schema.get("properties", {}).items()}
        patterns = [(re.compile(p), compile_schema(s))
                    for p, s in schema.get("patternProperties", {}).items()]
        additional = schema.get("additionalProperties", True)
        extra = compile_schema(additional) if isinstance(additional, dict) else None
        items = compile_schema(schema["items"]) if "items" in schema else None
        required = schema.get("required", ())
        enum = schema.get("enum")
        pattern = re.compile(schema["pattern"]) if "pattern" in schema else None
        minimum, maximum = schema.get("minimum"), schema.get("maximum")
        unique = schema.get("uniqueItems", False)

        def check(value: Any, path: tuple[Any, ...]) -> Iterator[Violation]:
            if type_ok is not None and not type_ok(value):
                yield Violation(path, "type", schema, value)
            if enum is not None and value not in enum:
                yield Violation(path, "enum", schema, value)
            if isinstance(value, dict):
                if any(k not in value for k in required):
                    yield Violation(path, "required", schema, value)
                unknown_key = False
                for key, child in value.items():
                    matched = False
                    if key in props:
                        matched = True
                        yield from props[key](child, (*path, key))
                    for regexp, sub in patterns:
                        if regexp.search(str(key)):
                            matched = True
                            yield from sub(child, (*path, key))
                    if not matched:
                        if additional is False:
                            unknown_key = True
                        elif extra is not None:
                            yield from extra(child, (*path, key))
                if unknown_key:
                    yield Violation(path, "additionalProperties", schema, value)
            elif isinstance(value, list):
                if items is not None:
                    for index, child in enumerate(value):
                        yield from items(child, (*path, index))
                if unique and _has_duplicates(value):
                    yield Violation(path, "uniqueItems", schema, value)
            elif isinstance(value, str):
                if pattern is not None and not pattern.search(value):
                    yield Violation(path, "pattern", schema, value)
            elif isinstance(value, int | float) and not isinstance(value, bool):
                if minimum is not None and value < minimum:
                    yield Violation(path, "minimum", schema, value)
                if maximum is not None and value > maximum:
                    yield Violation(path, "maximum", schema, value)

        return check

    top = compile_schema(root)
    return lambda tree: top(tree, ())


def _has_duplicates(values: list[Any]) -> bool:
    try:
        return len({json.dumps(v, sort_keys=True) for v in values}) != len(values)
    except TypeError:  # pragma: no cover - YAML trees are JSON-like
        return False
