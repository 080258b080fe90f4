"""Schema validation: the schema file, both backends agreeing, and the messages."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from compose.errors import ConfigError
from compose.loader.parse import parse_yaml
from compose.loader.validate import (
    SCHEMA_PATH,
    load_schema,
    schema_problems,
    validate,
    violations,
)

REALWORLD = sorted((Path(__file__).parent / "data" / "realworld").glob("[a-z]*.yaml"))


def problems(text: str, **kw) -> list[str]:
    return [str(p) for p in schema_problems(parse_yaml(text, "c.yaml"), **kw)]


def test_schema_is_valid_draft_2020_12() -> None:
    import jsonschema

    schema = json.loads(Path(SCHEMA_PATH).read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    service = schema["$defs"]["service"]
    assert service["additionalProperties"] is False
    assert "^x-" in service["patternProperties"]
    for key in ("image", "build", "ports", "volumes", "develop", "deploy", "healthcheck",
                "post_start", "pre_stop", "gpus", "models", "provider", "use_api_socket"):
        assert key in service["properties"]


@pytest.mark.parametrize("path", REALWORLD, ids=[p.stem for p in REALWORLD])
def test_real_world_files_are_valid(path: Path) -> None:
    tree = parse_yaml(path.read_text(), path.name)
    assert violations(tree, "fast") == []
    assert violations(tree, "jsonschema") == []


BROKEN = """
version: 3
services:
  web:
    imagee: nginx
    image: [nginx]
    ports: [[1], {published: 80}, {target: 80, protocol: icmp}]
    environment: {A: [1]}
    restart: sometimes
    depends_on: {db: {condition: bad}}
    privileged: "yes"
    cap_add: [A, A]
    build: 3
    oom_score_adj: -5000
    scale: -1
    ulimits: {nofile: {soft: 1}, BAD: 1}
    x-anything: {goes: here}
  'bad name': {}
networks:
  n: [1]
x-top: 1
foo: 2
"""


def test_both_backends_find_the_same_problems() -> None:
    tree = parse_yaml(BROKEN, "c.yaml")
    fast = sorted(map(str, schema_problems(tree, "fast")))
    reference = sorted(map(str, schema_problems(tree, "jsonschema")))
    assert fast == reference
    assert len(fast) >= 15


def test_messages_name_the_key_the_type_and_a_suggestion() -> None:
    found = problems(BROKEN)
    expected = [
        "c.yaml:2: version: expected a string (obsolete, ignored), got the integer 3",
        'c.yaml:5: services.web.imagee: unknown key "imagee" (did you mean "image"?)',
        "c.yaml:6: services.web.image: expected a string, got a list",
        'c.yaml:7: services.web.ports[1]: missing required key "target"',
        'c.yaml:7: services.web.ports[2].protocol: "icmp" is not one of: tcp, udp, sctp',
        "c.yaml:8: services.web.environment.A: expected a string, number, boolean or null, "
        "got a list",
        'c.yaml:11: services.web.privileged: "yes" is not valid (expected true or false)',
        'c.yaml:12: services.web.cap_add: "A" is listed twice',
        "c.yaml:14: services.web.oom_score_adj: -5000 is too small (expected an integer "
        "from -1000 to 1000)",
        "c.yaml:15: services.web.scale: -1 is too small (expected a non-negative integer)",
        'c.yaml:16: services.web.ulimits.BAD: "BAD" is not a valid ulimit name '
        "(lowercase letters, e.g. nofile)",
        "c.yaml:18: services.bad name: \"bad name\" is not a valid service name "
        "(letters, digits, '.', '_', '-')",
        'c.yaml:22: foo: unknown key "foo"',
    ]
    for line in expected:
        assert line in found
    assert not any("x-anything" in line or "x-top" in line for line in found)


def test_problems_are_sorted_and_deduplicated() -> None:
    found = problems("services:\n  b:\n    image: [x]\n  a:\n    image: [y]\n")
    assert found == ["c.yaml:3: services.b.image: expected a string, got a list",
                     "c.yaml:5: services.a.image: expected a string, got a list"]


def test_validate_raises_one_error_with_every_problem() -> None:
    with pytest.raises(ConfigError) as caught:
        validate(parse_yaml(BROKEN, "c.yaml"))
    assert len(caught.value.problems) == len(problems(BROKEN))


def test_interpolated_strings_pass_where_numbers_and_booleans_go() -> None:
    assert problems("services:\n  web:\n    image: x\n    scale: '3'\n    init: 'true'\n"
                    "    cpus: '0.5'\n") == []


def test_lenient_mode_skips_uninterpolated_values() -> None:
    text = "services:\n  web:\n    image: x\n    scale: ${N}\n    privileged: ${P:-false}\n"
    assert len(problems(text)) == 2
    assert problems(text, lenient=True) == []


def test_valid_minimal_and_empty_sections() -> None:
    assert problems("services:\n  web:\n    image: nginx\nnetworks:\nvolumes:\n  v:\n") == []


def test_schema_loads_once() -> None:
    assert load_schema() is load_schema()
