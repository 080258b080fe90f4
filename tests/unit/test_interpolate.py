"""Interpolation: every operator, nesting, `$$`, warnings, typed fields, errors with file:line."""

from __future__ import annotations

import pytest

from compose.errors import ConfigError
from compose.loader.interpolate import (
    InterpolationLog,
    InterpolationSyntaxError,
    Interpolator,
    MissingVariableError,
    Variable,
    expand,
)
from compose.loader.parse import YMap, parse_yaml

ENV = {"SET": "value", "EMPTY": "", "FALLBACK": "fb", "N": "3"}


@pytest.mark.parametrize(("text", "expected"), [
    ("plain", "plain"),
    ("$SET", "value"),
    ("${SET}", "value"),
    ("a${SET}b$SET.c", "avalueb" + "value.c"),
    ("${UNSET}", ""),
    ("${SET:-d}", "value"),
    ("${EMPTY:-d}", "d"),
    ("${UNSET:-d}", "d"),
    ("${SET-d}", "value"),
    ("${EMPTY-d}", ""),
    ("${UNSET-d}", "d"),
    ("${SET:+alt}", "alt"),
    ("${EMPTY:+alt}", ""),
    ("${UNSET:+alt}", ""),
    ("${SET+alt}", "alt"),
    ("${EMPTY+alt}", "alt"),
    ("${UNSET+alt}", ""),
    ("${SET:?e}", "value"),
    ("${EMPTY?e}", ""),
    ("${UNSET:-${FALLBACK}}", "fb"),
    ("${UNSET:-${ALSO_UNSET:-deep}}", "deep"),
    ("${SET?$FALLBACK}x", "valuex"),
    ("${UNSET:-a}}", "a}"),
    ("${UNSET:-{x}}", "{x}"),
    ("$$SET", "$SET"),
    ("$${SET}", "${SET}"),
    ("cost: 5$", "cost: 5$"),
    ("$1 and $-", "$1 and $-"),
    ("${UNSET:-$$}", "$"),
    ("${UNSET:-a:b-c}", "a:b-c"),
    ("$SET_MORE", ""),
])
def test_expand(text: str, expected: str) -> None:
    assert expand(text, ENV.get) == expected


@pytest.mark.parametrize("text", [
    "${", "${SET", "${}", "${ SET}", "${1A}", "${SET/a/b}", "${SET:-x", "${SET:=x}",
    "${SET:-${A}", "${UNSET:+${}}",
])
def test_malformed_expressions_are_errors(text: str) -> None:
    with pytest.raises(InterpolationSyntaxError):
        expand(text, ENV.get)


def test_required_variable_message_is_interpolated() -> None:
    with pytest.raises(MissingVariableError) as caught:
        expand("${EMPTY:?set EMPTY to $SET}", ENV.get)
    assert str(caught.value) == "required variable EMPTY is missing a value: set EMPTY to value"
    with pytest.raises(MissingVariableError, match=r"^required variable UNSET is missing a "
                                                   r"value$"):
        expand("${UNSET?}", ENV.get)


def interpolate(text: str, env: dict[str, str] | None = None,
                substitute: bool = True) -> tuple[object, InterpolationLog]:
    log = InterpolationLog()
    tree = parse_yaml(text, "compose.yaml")
    return Interpolator(env if env is not None else ENV, log, substitute).tree(tree).tree, log


def test_tree_values_are_substituted_but_keys_are_not() -> None:
    tree, _ = interpolate(
        "services:\n  web:\n    image: busybox:${SET}\n    labels:\n      $SET: x\n"
        "    environment:\n      - ${SET}=${N}\n    x-note: ${SET}\nx-top: [\"${N}\"]\n")
    web = tree["services"]["web"]
    assert web["image"] == "busybox:value"
    assert web["labels"] == {"$SET": "x"}
    assert web["environment"] == ["value=3"]
    assert web["x-note"] == "value"
    assert tree["x-top"] == ["3"]


def test_unset_variables_warn_once_each() -> None:
    _, log = interpolate("a: ${U1}\nb: $U1\nc: ${U2}\nd: ${U3:-x}\ne: ${U4-}\nf: ${U5:+y}\n")
    assert log.warnings == [
        'The "U1" variable is not set. Defaulting to a blank string.',
        'The "U2" variable is not set. Defaulting to a blank string.',
    ]


def test_locations_survive_and_aliases_are_unshared() -> None:
    tree, _ = interpolate("x: &anchor {e: '${SET}'}\na: *anchor\nb: *anchor\n")
    assert isinstance(tree, YMap)
    assert tree["a"] == tree["b"] == {"e": "value"}
    assert tree["a"] is not tree["b"]
    assert tree["a"].loc is not None and tree.key_locs["b"].line == 3


def test_typed_fields_take_their_type_only_when_substituted() -> None:
    tree, _ = interpolate(
        "services:\n  web:\n    deploy: {replicas: '${N}'}\n    tty: ${T}\n"
        "    ports: [{target: '${P}'}]\n    init: 'true'\n    read_only: ${BAD}\n"
        "    ulimits: {nofile: {soft: '${N}'}}\nnetworks:\n  n: {external: '${T}'}\n",
        {"N": "3", "T": "true", "P": "80", "BAD": "maybe"})
    web = tree["services"]["web"]
    assert web["deploy"]["replicas"] == 3
    assert web["tty"] is True
    assert web["ports"][0]["target"] == 80
    assert web["init"] == "true"          # written as a string: left for validation
    assert web["read_only"] == "maybe"    # not a boolean: left for validation to report
    assert web["ulimits"]["nofile"]["soft"] == 3
    assert tree["networks"]["n"]["external"] is True


def test_variables_are_recorded_with_their_defaults() -> None:
    _, log = interpolate("a: ${A:-1}\nb: ${B:?need B}\nc: ${C:+on} $D\nd: ${E:-${F-2}}\n",
                         {"B": "x"})
    assert log.variables == {
        "A": Variable("A", default="1", loc=log.variables["A"].loc),
        "B": Variable("B", required=True, loc=log.variables["B"].loc),
        "C": Variable("C", alternate="on", loc=log.variables["C"].loc),
        "D": Variable("D", loc=log.variables["D"].loc),
        "E": Variable("E", default="${F-2}", loc=log.variables["E"].loc),
        "F": Variable("F", default="2", loc=log.variables["F"].loc),
    }
    assert log.variables["B"].loc.line == 2


def test_no_interpolate_keeps_text_and_still_lists_variables() -> None:
    tree, log = interpolate("a: ${A:-1} $$x\nb: ${broken\n", {}, substitute=False)
    assert tree == {"a": "${A:-1} $$x", "b": "${broken"}
    assert list(log.variables) == ["A"]
    assert log.warnings == []


@pytest.mark.parametrize(("text", "prefix", "fragment"), [
    ("services:\n  web:\n    image: ${TAG\n", "compose.yaml:3: services.web.image: ",
     'invalid interpolation format in "${TAG"'),
    ("services:\n  web:\n    command: [sh, '${A/b/c}']\n",
     "compose.yaml:3: services.web.command[1]: ", "invalid interpolation format"),
    ("x-a:\n  b: ${}\n", "compose.yaml:2: x-a.b: ", "expected a variable name"),
    ("services:\n  db:\n    environment:\n      PASSWORD: ${PW:?set PW first}\n",
     "compose.yaml:4: services.db.environment.PASSWORD: ",
     "required variable PW is missing a value: set PW first"),
    ("services:\n  db:\n    environment:\n      - PW=${EMPTY:?}\n",
     "compose.yaml:4: services.db.environment[0]: ", "required variable EMPTY is missing"),
    ("services:\n  db:\n    image: x${MISSING?no image}\n",
     "compose.yaml:3: services.db.image: ", "required variable MISSING is missing a value"),
])
def test_errors_name_file_line_and_path(text: str, prefix: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as caught:
        interpolate(text)
    message = str(caught.value)
    assert message.startswith(prefix), message
    assert fragment in message
