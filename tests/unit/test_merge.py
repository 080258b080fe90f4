"""Multi-file merge rules, keyed by tree path; !reset / !override; locations; path tables."""

from __future__ import annotations

from typing import Any

import pytest

from compose.loader.merge import copy_tree, merge_trees, strip_tags
from compose.loader.parse import Loc, YMap, parse_yaml
from compose.loader.paths import PathTable


def merged(*texts: str) -> Any:
    """Each text is a file (f0.yaml, f1.yaml, ...), merged in order as `load_merged` does."""
    result = strip_tags(parse_yaml(texts[0], "f0.yaml"))
    for index, text in enumerate(texts[1:], 1):
        result = merge_trees(result, parse_yaml(text, f"f{index}.yaml"), tagged=True)
    return result


def web(*texts: str) -> Any:
    return merged(*texts)["services"]["web"]


def test_mappings_merge_scalars_replace_sequences_append() -> None:
    tree = merged("services:\n  web:\n    image: a\n    dns: [1.1.1.1]\n    x-k: {a: 1, b: 2}\n",
                  "services:\n  web:\n    image: b\n    dns: [8.8.8.8]\n    x-k: {b: 3, c: 4}\n"
                  "  db:\n    image: pg\n")
    assert tree == {"services": {
        "web": {"image": "b", "dns": ["1.1.1.1", "8.8.8.8"], "x-k": {"a": 1, "b": 3, "c": 4}},
        "db": {"image": "pg"}}}


def test_shell_commands_are_replaced() -> None:
    result = web("services:\n  web:\n    command: [echo, foo]\n    entrypoint: [a]\n"
                 "    healthcheck: {test: [CMD, a], retries: 3}\n",
                 "services:\n  web:\n    command: [echo, bar]\n    entrypoint: b\n"
                 "    healthcheck: {test: [CMD, b]}\n")
    assert result == {"command": ["echo", "bar"], "entrypoint": "b",
                      "healthcheck": {"test": ["CMD", "b"], "retries": 3}}


def test_ports_merge_by_unique_key_across_short_and_long_syntax() -> None:
    result = web("services:\n  web:\n    ports: ['80:80', '127.0.0.1:53:53/udp', '9000']\n",
                 "services:\n  web:\n    ports:\n"
                 "      - {target: 80, published: '80', protocol: tcp, mode: host}\n"
                 "      - '127.0.0.1:53:53/tcp'\n      - '[::1]:6001:6001'\n      - 9000\n")
    assert result["ports"] == [
        {"target": 80, "published": "80", "protocol": "tcp", "mode": "host"},
        "127.0.0.1:53:53/udp", 9000, "127.0.0.1:53:53/tcp", "[::1]:6001:6001"]


def test_volumes_secrets_configs_devices_merge_by_target() -> None:
    result = web(
        "services:\n  web:\n    volumes: ['foo:/work', '/data', './a:/a:ro']\n"
        "    secrets: [token, {source: key, target: /etc/key}]\n    configs: [conf]\n"
        "    devices: ['/dev/a:/dev/x', 'vendor.com/gpu=all']\n",
        "services:\n  web:\n    volumes: ['bar:/work', {type: bind, source: ./b, target: /a}]\n"
        "    secrets: [{source: other, target: token}, {source: k2, target: /etc/key}]\n"
        "    configs: [{source: conf2, target: /conf}]\n"
        "    devices: ['/dev/b:/dev/x:r', 'vendor.com/gpu=all']\n")
    assert result["volumes"] == ["bar:/work", "/data", {"type": "bind", "source": "./b",
                                                        "target": "/a"}]
    assert result["secrets"] == [{"source": "other", "target": "token"},
                                 {"source": "k2", "target": "/etc/key"}]
    assert result["configs"] == [{"source": "conf2", "target": "/conf"}]
    assert result["devices"] == ["/dev/b:/dev/x:r", "vendor.com/gpu=all"]


def test_long_syntax_entries_with_the_same_key_merge_their_fields() -> None:
    result = web("services:\n  web:\n    volumes:\n      - {type: volume, source: v, "
                 "target: /d, volume: {nocopy: true}}\n",
                 "services:\n  web:\n    volumes:\n      - {target: /d, read_only: true}\n")
    assert result["volumes"] == [{"type": "volume", "source": "v", "target": "/d",
                                  "volume": {"nocopy": True}, "read_only": True}]


@pytest.mark.parametrize("field", ["environment", "labels"])
def test_key_value_fields_merge_by_name_in_list_or_map_form(field: str) -> None:
    result = web(f"services:\n  web:\n    {field}: [A=1, B=2, C]\n",
                 f"services:\n  web:\n    {field}:\n      B: '3'\n      D: x=y\n",
                 f"services:\n  web:\n    {field}: [E=5, A=0]\n")
    assert result[field] == {"A": "0", "B": "3", "C": None, "D": "x=y", "E": "5"}


def test_build_args_and_build_short_form() -> None:
    result = web("services:\n  web:\n    build: ./app\n",
                 "services:\n  web:\n    build:\n      args: [V=1]\n      target: prod\n",
                 "services:\n  web:\n    build:\n      args: {V: '2', W: '3'}\n")
    assert result["build"] == {"context": "./app", "args": {"V": "2", "W": "3"},
                               "target": "prod"}


def test_unique_sequences_drop_duplicates() -> None:
    result = web("services:\n  web:\n    cap_add: [NET_ADMIN]\n    profiles: [a]\n"
                 "    security_opt: ['label:role:ROLE']\n    dns: 1.1.1.1\n"
                 "    env_file: [a.env, {path: b.env}]\n    tmpfs: /run\n",
                 "services:\n  web:\n    cap_add: [NET_ADMIN, SYS_TIME]\n    profiles: [a, b]\n"
                 "    security_opt: ['label:user:USER']\n    dns: [1.1.1.1, 9.9.9.9]\n"
                 "    env_file: [{path: a.env, required: false}, c.env]\n    tmpfs: [/run, /tmp]\n")
    assert result["cap_add"] == ["NET_ADMIN", "SYS_TIME"]
    assert result["profiles"] == ["a", "b"]
    assert result["security_opt"] == ["label:role:ROLE", "label:user:USER"]
    assert result["dns"] == ["1.1.1.1", "9.9.9.9"]
    assert result["env_file"] == [{"path": "a.env", "required": False}, {"path": "b.env"},
                                  "c.env"]
    assert result["tmpfs"] == ["/run", "/tmp"]


def test_networks_list_and_map_forms() -> None:
    assert web("services:\n  web:\n    networks: [front, back]\n",
               "services:\n  web:\n    networks: [back, admin]\n")["networks"] == [
        "front", "back", "admin"]
    result = web("services:\n  web:\n    networks: [front, back]\n",
                 "services:\n  web:\n    networks:\n      back:\n        aliases: [db]\n"
                 "      admin: {}\n",
                 "services:\n  web:\n    networks:\n      back:\n        aliases: [db, sql]\n")
    assert result["networks"] == {"front": None, "back": {"aliases": ["db", "sql"]},
                                  "admin": {}}


def test_depends_on_list_and_map_forms() -> None:
    result = web("services:\n  web:\n    depends_on: [db, cache]\n",
                 "services:\n  web:\n    depends_on:\n      db: {condition: service_healthy}\n")
    assert result["depends_on"] == {"db": {"condition": "service_healthy"},
                                    "cache": {"condition": "service_started"}}


def test_extra_hosts_merge_by_host_name() -> None:
    result = web("services:\n  web:\n    extra_hosts: ['a=1.1.1.1', 'b:2.2.2.2']\n",
                 "services:\n  web:\n    extra_hosts: {b: 3.3.3.3}\n")
    assert result["extra_hosts"] == {"a": "1.1.1.1", "b": "3.3.3.3"}


def test_ulimits_and_logging() -> None:
    result = web("services:\n  web:\n    ulimits: {nproc: 10, nofile: {soft: 1, hard: 2}}\n"
                 "    logging: {driver: json-file, options: {max-size: 1m}}\n",
                 "services:\n  web:\n    ulimits: {nproc: {soft: 5, hard: 6}, nofile: {hard: 3}}\n"
                 "    logging: {options: {max-file: '3'}}\n")
    assert result["ulimits"] == {"nproc": {"soft": 5, "hard": 6}, "nofile": {"soft": 1, "hard": 3}}
    assert result["logging"] == {"driver": "json-file",
                                 "options": {"max-size": "1m", "max-file": "3"}}
    changed = web("services:\n  web:\n    logging: {driver: json-file, options: {a: b}}\n",
                  "services:\n  web:\n    logging: {driver: syslog}\n")
    assert changed["logging"] == {"driver": "syslog"}


def test_reset_removes_and_override_replaces() -> None:
    base = ("services:\n  app:\n    image: myapp\n    ports: ['8080:80']\n"
            "    environment: {FOO: BAR, KEEP: '1'}\n    labels: [a=b]\n")
    tree = merged(base, "services:\n  app:\n    ports: !reset []\n    environment:\n"
                        "      FOO: !reset null\n    labels: !override {c: d}\n")
    assert tree["services"]["app"] == {"image": "myapp", "environment": {"KEEP": "1"},
                                       "labels": {"c": "d"}}
    tree = merged(base, "services:\n  app:\n    ports: !override ['8443:443']\n")
    assert tree["services"]["app"]["ports"] == ["8443:443"]
    tree = merged(base, "services:\n  app: !reset\n  other: {image: x}\n")
    assert tree["services"] == {"other": {"image": "x"}}


def test_tags_in_the_first_file_and_in_new_subtrees_are_applied() -> None:
    tree = merged("services:\n  a:\n    image: x\n    ports: !reset ['1:1']\n",
                  "services:\n  b:\n    image: y\n    dns: !reset [x]\n")
    assert tree["services"] == {"a": {"image": "x"}, "b": {"image": "y"}}
    assert not tree["services"]["b"].tags
    # A reset in an earlier file does not block later files from setting the value again.
    tree = merged("services:\n  a:\n    ports: !reset ['1:1']\n",
                  "services:\n  a:\n    ports: ['2:2']\n")
    assert tree["services"]["a"] == {"ports": ["2:2"]}


def test_null_override_keeps_the_base() -> None:
    assert web("services:\n  web:\n    image: a\n    environment: {A: '1'}\n",
               "services:\n  web:\n    environment:\n    image:\n") == {
        "image": "a", "environment": {"A": "1"}}
    assert web("services:\n  web:\n", "services:\n  web:\n    image: a\n") == {"image": "a"}


def test_locations_point_at_the_file_each_value_came_from() -> None:
    result = web("services:\n  web:\n    image: a\n    dns: [x]\n    environment: [A=1]\n",
                 "services:\n  web:\n    image: b\n    dns: [y]\n    environment: [B=2]\n"
                 "    tty: true\n")
    assert result.key_locs["image"] == Loc("f1.yaml", 3, 5)
    assert result.key_locs["tty"] == Loc("f1.yaml", 6, 5)
    assert result["dns"].item_locs == [Loc("f0.yaml", 4, 11), Loc("f1.yaml", 4, 11)]
    assert result["environment"].key_locs == {"A": Loc("f0.yaml", 5, 19),
                                              "B": Loc("f1.yaml", 5, 19)}


def test_inputs_are_not_mutated() -> None:
    base = strip_tags(parse_yaml("services:\n  web:\n    dns: [a]\n    environment: {A: '1'}\n",
                                 "a.yaml"))
    before = copy_tree(base)
    over = parse_yaml("services:\n  web:\n    dns: [b]\n    environment: {A: !reset null}\n",
                      "b.yaml")
    merge_trees(base, over, tagged=True)
    assert base == before
    assert over["services"]["web"]["environment"].tags == {"A": "!reset"}


def test_path_table_matches_exact_before_wildcards() -> None:
    table = PathTable({"services.*.ports": "ports", "services.*.ports.*.target": "target",
                       "services.special.ports": "special", "*.x": "any-x"})
    assert table.get(("services", "web", "ports")) == "ports"
    assert table.get(("services", "special", "ports")) == "special"
    assert table.get(("services", "web", "ports", 3, "target")) == "target"
    assert table.get(("services", "web")) is None
    assert table.get(("volumes", "x")) == "any-x"
    assert table.get(("services", "x")) == "any-x"  # backtracks from the exact "services"
    assert ("services", "web", "ports") in table
    assert isinstance(copy_tree(parse_yaml("a: [1]\n", "c")), YMap)
