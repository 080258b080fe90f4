"""YAML parsing: YAML 1.2 scalars, locations, merge keys, Compose tags, errors."""

from __future__ import annotations

import pytest

from compose.errors import ConfigError
from compose.loader.parse import Loc, YMap, format_path, locate, parse_yaml


def test_yaml_12_scalars_keep_compose_strings() -> None:
    tree = parse_yaml(
        "restart: no\nports: [80:80]\non: yes\nmode: 0755\noct: 0o755\nhex: 0x1f\n"
        "t: True\nn: ~\ne:\nf: 1.5\nx: off\n", "c.yaml")
    assert tree == {"restart": "no", "ports": ["80:80"], "on": "yes", "mode": 0o755,
                    "oct": 0o755, "hex": 31, "t": True, "n": None, "e": None, "f": 1.5,
                    "x": "off"}


def test_locations_of_keys_and_items() -> None:
    tree = parse_yaml("services:\n  web:\n    ports:\n      - 80\n      - 81\n", "c.yaml")
    assert locate(tree, ("services", "web", "ports", 1)) == Loc("c.yaml", 5, 9)
    assert locate(tree, ("services", "web", "missing", "deeper")) == Loc("c.yaml", 2, 3)
    assert format_path(("services", "web", "ports", 1)) == "services.web.ports[1]"


def test_anchors_and_merge_keys() -> None:
    tree = parse_yaml(
        "x-base: &base\n  image: busybox\n  environment: {A: '1'}\n"
        "services:\n  a:\n    <<: *base\n    image: alpine\n", "c.yaml")
    assert tree["services"]["a"] == {"image": "alpine", "environment": {"A": "1"}}


def test_reset_and_override_tags_are_recorded_on_the_parent() -> None:
    tree = parse_yaml("ports: !reset []\nenvironment: !override {A: b}\nimage: !reset null\n",
                      "c.yaml")
    assert isinstance(tree, YMap)
    assert tree == {"ports": [], "environment": {"A": "b"}, "image": None}
    assert tree.tags == {"ports": "!reset", "environment": "!override", "image": "!reset"}


@pytest.mark.parametrize(("text", "line", "fragment"), [
    ("a: 1\na: 2\n", 2, "duplicate key 'a'"),
    ("a: [1\n", 2, "expected ',' or ']'"),
    ("a: !foo 1\n", 1, "only !reset and !override"),
    ("a:\n\tb: 1\n", 2, "invalid YAML"),
    ("a: *nothing\n", 1, "undefined alias"),
])
def test_syntax_errors_name_file_and_line(text: str, line: int, fragment: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_yaml(text, "bad.yaml")
    message = str(caught.value)
    assert message.startswith(f"bad.yaml:{line}: ")
    assert fragment in message


def test_multiple_documents_are_refused() -> None:
    with pytest.raises(ConfigError, match="single document"):
        parse_yaml("a: 1\n---\nb: 2\n", "c.yaml")
