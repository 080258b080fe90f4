"""Variable substitution in Compose values: `$VAR`, `${VAR}`, `${VAR:-d}`, `${VAR-d}`,
`${VAR:?e}`, `${VAR?e}`, `${VAR:+a}`, `${VAR+a}`, nesting in the operand, `$$` for `$`.

Follows the Compose Specification's interpolation chapter: a `$` starts a substitution only
when a name (`[A-Za-z_][A-Za-z0-9_]*`) or `{` follows, otherwise it is kept; inside braces
anything but a name and one of the six operators is an error ("invalid interpolation
format"). Only values are substituted, never mapping keys; `x-` extensions are values too.
An unset variable used without a default becomes "" with one warning per variable.

`expand` is the pure string function (used by `.env` parsing as well); `Interpolator` walks a
parsed tree, returning a fresh, unshared copy (YAML aliases become separate nodes) with the
same locations, and records warnings and the variables used (`config --variables`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from compose.errors import ConfigError, Problem
from compose.loader.parse import Loc, YMap, YSeq, format_path
from compose.loader.paths import PathTable

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# Two-character operators first: `:-` must not be read as `:` followed by `-`.
_OPERATORS = (":-", ":?", ":+", "-", "?", "+")

Lookup = Callable[[str], "str | None"]


class InterpolationSyntaxError(Exception):
    """A malformed `${...}`; `str()` says what is wrong."""


class MissingVariableError(Exception):
    """`${VAR:?message}` or `${VAR?message}` with VAR missing."""

    def __init__(self, name: str, message: str) -> None:
        self.name = name
        self.message = message
        detail = f": {message}" if message else ""
        super().__init__(f"required variable {name} is missing a value{detail}")


@dataclass(frozen=True, slots=True)
class Variable:
    """One variable a Compose file uses, for `config --variables`.

    `required` is true when some use is `${V:?e}`/`${V?e}`; `default` is the raw operand of
    the first `${V:-d}`/`${V-d}`, `alternate` that of the first `${V:+a}`/`${V+a}`; `loc` is
    where it is first used.
    """

    name: str
    required: bool = False
    default: str | None = None
    alternate: str | None = None
    loc: Loc | None = None


class _Hooks:
    """What `expand` reports to its caller; the defaults ignore everything."""

    __slots__ = ("on_unset", "on_variable")

    def __init__(self, on_unset: Callable[[str], None] | None = None,
                 on_variable: Callable[[str, str | None, str | None], None] | None = None
                 ) -> None:
        self.on_unset = on_unset
        self.on_variable = on_variable


_QUIET = _Hooks()


def expand(text: str, lookup: Lookup, hooks: _Hooks = _QUIET, *, dry: bool = False) -> str:
    """`text` with its substitutions done, looking variables up with `lookup` (None = unset).

    With `dry`, nothing is looked up and "" is returned for each substitution, but the syntax
    is checked and `hooks.on_variable` still sees every variable (used for operands that are
    not evaluated, and for `--no-interpolate`). Raises `InterpolationSyntaxError` and
    `MissingVariableError`.
    """
    if "$" not in text:
        return text
    out: list[str] = []
    i = 0
    n = len(text)
    while True:
        j = text.find("$", i)
        if j < 0:
            out.append(text[i:])
            break
        out.append(text[i:j])
        if j + 1 == n:
            out.append("$")
            break
        nxt = text[j + 1]
        if nxt == "$":
            out.append("$")
            i = j + 2
        elif nxt == "{":
            value, i = _braced(text, j + 2, lookup, hooks, dry)
            out.append(value)
        else:
            match = _NAME.match(text, j + 1)
            if match is None:
                out.append("$")
                i = j + 1
            else:
                out.append(_plain(match.group(), lookup, hooks, dry))
                i = match.end()
    return "".join(out)


def _plain(name: str, lookup: Lookup, hooks: _Hooks, dry: bool) -> str:
    if hooks.on_variable is not None:
        hooks.on_variable(name, None, None)
    if dry:
        return ""
    value = lookup(name)
    if value is None:
        if hooks.on_unset is not None:
            hooks.on_unset(name)
        return ""
    return value


def _braced(text: str, start: int, lookup: Lookup, hooks: _Hooks, dry: bool
            ) -> tuple[str, int]:
    """Evaluates `${...}` whose body starts at `start`; returns (value, index after `}`)."""
    match = _NAME.match(text, start)
    if match is None:
        raise InterpolationSyntaxError("expected a variable name after ${")
    name = match.group()
    k = match.end()
    if k == len(text):
        raise InterpolationSyntaxError("missing closing }")
    if text[k] == "}":
        return _plain(name, lookup, hooks, dry), k + 1
    op = next((o for o in _OPERATORS if text.startswith(o, k)), None)
    if op is None:
        raise InterpolationSyntaxError(
            f"unsupported ${{{name}{text[k]}...}} (expected one of "
            ":- - :? ? :+ + or })")
    arg_start = k + len(op)
    end = _closing_brace(text, arg_start)
    operand = text[arg_start:end]
    kind = op[-1]  # "-" default, "?" required, "+" alternate; a ":" also rejects ""
    if hooks.on_variable is not None:
        hooks.on_variable(name, kind, operand)
    if dry:
        expand(operand, lookup, hooks, dry=True)
        return "", end + 1
    value = lookup(name)
    present = value is not None and (value != "" or ":" not in op)
    if kind == "?" and not present:
        raise MissingVariableError(name, expand(operand, lookup, hooks))
    if (kind == "-" and not present) or (kind == "+" and present):
        return expand(operand, lookup, hooks), end + 1
    # The operand is not used, but a malformed one is still an error.
    expand(operand, lookup, hooks, dry=True)
    return (value or "") if kind != "+" else "", end + 1


def _closing_brace(text: str, start: int) -> int:
    """Index of the `}` closing an operand that starts at `start`, skipping nested `${..}`."""
    depth = 0
    i = start
    n = len(text)
    while i < n:
        c = text[i]
        if c == "$" and i + 1 < n:
            if text[i + 1] == "$":
                i += 2
                continue
            if text[i + 1] == "{":
                depth += 1
                i += 2
                continue
        elif c == "}":
            if depth == 0:
                return i
            depth -= 1
        i += 1
    raise InterpolationSyntaxError("missing closing }")


# --- typed fields -------------------------------------------------------------------------

_TRUE = frozenset({"true", "yes", "y", "on"})
_FALSE = frozenset({"false", "no", "n", "off"})
_INT = re.compile(r"^[-+]?[0-9]+$")
_FLOAT = re.compile(r"^[-+]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?$")


def _to_int(text: str) -> Any:
    return int(text) if _INT.match(text) else text


def _to_float(text: str) -> Any:
    return float(text) if _FLOAT.match(text) else text


def _to_bool(text: str) -> Any:
    lowered = text.lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    return text


# Fields the schema types as integer, number or boolean only. A substituted value there is a
# string (`replicas: ${N}`); it takes the field's type when it reads as one, as the reference
# loader does, and is otherwise left for schema validation to report with its location.
_S = "services.*."
CASTS: PathTable[Callable[[str], Any]] = PathTable({
    **{_S + f: _to_int for f in (
        "cpu_count", "cpu_percent", "cpu_shares", "cpu_period", "cpu_quota", "cpu_rt_period",
        "cpu_rt_runtime", "mem_swappiness", "oom_score_adj", "pids_limit", "scale",
        "deploy.replicas", "deploy.update_config.parallelism",
        "deploy.rollback_config.parallelism", "deploy.restart_policy.max_attempts",
        "deploy.placement.max_replicas_per_node", "healthcheck.retries", "ports.*.target",
        "secrets.*.mode", "configs.*.mode", "ulimits.*", "ulimits.*.soft", "ulimits.*.hard",
        "blkio_config.weight", "blkio_config.weight_device.*.weight", "volumes.*.tmpfs.mode")},
    **{_S + f: _to_float for f in (
        "deploy.update_config.max_failure_ratio", "deploy.rollback_config.max_failure_ratio")},
    **{_S + f: _to_bool for f in (
        "init", "privileged", "read_only", "stdin_open", "tty", "oom_kill_disable",
        "healthcheck.disable", "volumes.*.read_only", "volumes.*.volume.nocopy",
        "volumes.*.bind.create_host_path", "build.no_cache", "build.pull", "build.privileged",
        "depends_on.*.required", "depends_on.*.restart", "attach")},
    **{f"{section}.*.{f}": _to_bool
       for section, fields in (("networks", ("external", "internal", "attachable",
                                             "enable_ipv6", "enable_ipv4")),
                               ("volumes", ("external",)), ("secrets", ("external",)),
                               ("configs", ("external",)))
       for f in fields},
})


# --- trees --------------------------------------------------------------------------------

@dataclass(slots=True)
class InterpolationLog:
    """What interpolation noticed across one load: warnings (in order, once each) and the
    variables used, by name in order of first use."""

    warnings: list[str] = field(default_factory=list)
    variables: dict[str, Variable] = field(default_factory=dict)
    _unset: set[str] = field(default_factory=set)

    def unset(self, name: str) -> None:
        if name not in self._unset:
            self._unset.add(name)
            self.warnings.append(
                f'The "{name}" variable is not set. Defaulting to a blank string.')

    def warn(self, message: str) -> None:
        if message not in self.warnings:
            self.warnings.append(message)

    def used(self, name: str, kind: str | None, operand: str | None, loc: Loc | None) -> None:
        old = self.variables.get(name)
        if old is None:
            old = Variable(name, loc=loc)
        required = old.required or kind == "?"
        default = old.default if old.default is not None or kind != "-" else operand
        alternate = old.alternate if old.alternate is not None or kind != "+" else operand
        if (required, default, alternate) != (old.required, old.default, old.alternate) \
                or name not in self.variables:
            self.variables[name] = Variable(name, required, default, alternate, old.loc)


@dataclass(frozen=True, slots=True)
class Interpolated:
    """A tree after interpolation; `tagged` tells whether any mapping in it carries
    `!reset`/`!override` tags (so merging knows whether it must look for them)."""

    tree: Any
    tagged: bool


class Interpolator:
    """Substitutes variables from one environment into trees and strings.

    With `substitute=False` (`config --no-interpolate`) strings are kept as written and
    malformed expressions are let through, but variables are still recorded.
    """

    __slots__ = ("_hooks", "_loc", "_tagged", "env", "log", "substitute")

    def __init__(self, env: Mapping[str, str], log: InterpolationLog,
                 substitute: bool = True) -> None:
        self.env = env
        self.log = log
        self.substitute = substitute
        self._loc: Loc | None = None
        self._tagged = False
        self._hooks = _Hooks(log.unset, self._used)

    def _used(self, name: str, kind: str | None, operand: str | None) -> None:
        self.log.used(name, kind, operand, self._loc)

    def with_env(self, env: Mapping[str, str]) -> Interpolator:
        """An interpolator for another environment that reports to the same log."""
        return Interpolator(env, self.log, self.substitute)

    def text(self, value: str, loc: Loc | None, path: tuple[Any, ...] = ()) -> str:
        """One string substituted; errors carry `loc` and `path`."""
        if "$" not in value:
            return value
        self._loc = loc
        try:
            if not self.substitute:
                expand(value, self.env.get, self._hooks, dry=True)
                return value
            return expand(value, self.env.get, self._hooks)
        except InterpolationSyntaxError as exc:
            if not self.substitute:
                return value
            raise ConfigError(Problem(
                f'invalid interpolation format in "{value}": {exc} (write a literal $ as $$)',
                loc.file if loc else None, loc.line if loc else None,
                format_path(path) or None)) from None
        except MissingVariableError as exc:
            raise ConfigError(Problem(str(exc), loc.file if loc else None,
                                      loc.line if loc else None,
                                      format_path(path) or None)) from None

    def tree(self, node: Any) -> Interpolated:
        """A fresh copy of `node` with every string value substituted (keys are not)."""
        self._tagged = False
        return Interpolated(self._walk(node, [], getattr(node, "loc", None)), self._tagged)

    def _walk(self, node: Any, path: list[Any], loc: Loc | None) -> Any:
        if isinstance(node, str):
            return self._string(node, path, loc) if "$" in node else node
        if isinstance(node, YMap):
            out = YMap(loc=node.loc)
            key_locs = node.key_locs
            out.key_locs = dict(key_locs)
            if node.tags:
                out.tags = dict(node.tags)
                self._tagged = True
            for key, value in node.items():
                if isinstance(value, YMap | YSeq) or (isinstance(value, str) and "$" in value):
                    path.append(key)
                    out[key] = self._walk(value, path, key_locs.get(key) or loc)
                    path.pop()
                else:
                    out[key] = value
            return out
        if isinstance(node, YSeq):
            items = []
            item_locs = node.item_locs
            for index, value in enumerate(node):
                if isinstance(value, YMap | YSeq) or (isinstance(value, str) and "$" in value):
                    path.append(index)
                    value = self._walk(value, path, node.item_loc(index) or loc)
                    path.pop()
                items.append(value)
            return YSeq(items, loc=node.loc, item_locs=item_locs)
        return node

    def _string(self, value: str, path: list[Any], loc: Loc | None) -> Any:
        result = self.text(value, loc, tuple(path))
        if result is value or result == value:
            return result
        cast = CASTS.get(path)
        return cast(result) if cast is not None else result
