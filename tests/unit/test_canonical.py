"""Canonical forms: long syntax, defaults, absolute paths, env files, profiles."""

from __future__ import annotations

from pathlib import Path

import pytest

from compose.errors import ConfigError
from compose.loader import canonical_project, load_merged
from compose.loader.options import LoadOptions

ENV = {"HOME": "/home/u", "FROM_ENV": "env-value"}


def canon(tmp_path: Path, text: str, *, profiles: tuple[str, ...] = (), services=(),
          files: dict[str, str] | None = None, env: dict[str, str] | None = None) -> dict:
    (tmp_path / "compose.yaml").write_text(text)
    for name, content in (files or {}).items():
        (tmp_path / name).write_text(content)
    merged = load_merged(LoadOptions(environment=env or ENV, cwd=str(tmp_path),
                                     files=("compose.yaml",), project_name="p",
                                     profiles=profiles))
    data, _ = canonical_project(merged, services=services)
    return data


def service(tmp_path: Path, body: str, **kw) -> dict:
    return canon(tmp_path, "services:\n  s:\n" + body, **kw)["services"]["s"]


def test_ports_volumes_and_defaults(tmp_path) -> None:
    s = service(tmp_path, "    image: x\n    ports: ['8080:80', 53/udp]\n"
                "    volumes: ['./data:/data:ro', '~/cache:/c', 'named:/n', '/anon']\n"
                "volumes: {named: }\n")
    assert s["ports"] == [
        {"mode": "ingress", "target": 80, "published": "8080", "protocol": "tcp"},
        {"mode": "ingress", "target": 53, "protocol": "udp"}]
    assert s["volumes"] == [
        {"type": "bind", "source": str(tmp_path / "data"), "target": "/data", "read_only": True,
         "bind": {"create_host_path": True}},
        {"type": "bind", "source": "/home/u/cache", "target": "/c",
         "bind": {"create_host_path": True}},
        {"type": "volume", "source": "named", "target": "/n"},
        {"type": "volume", "target": "/anon"}]
    assert s["networks"] == {"default": None}


def test_project_resources_get_names_and_unused_ones_go(tmp_path) -> None:
    data = canon(tmp_path, "services:\n  s:\n    image: x\n    volumes: [used:/u]\n"
                 "    networks: [front]\nvolumes:\n  used:\n  unused:\n"
                 "networks:\n  front:\n  back:\n  ext: {external: true}\n")
    assert data["volumes"] == {"used": {"name": "p_used"}}
    assert data["networks"] == {"front": {"name": "p_front"}}
    assert list(data) == ["name", "services", "networks", "volumes"]


def test_default_network_added_only_when_used(tmp_path) -> None:
    assert "networks" not in canon(tmp_path, "services:\n  s:\n    image: x\n"
                                   "    network_mode: host\n")
    assert canon(tmp_path, "services:\n  s:\n    image: x\n")["networks"] == {
        "default": {"name": "p_default"}}


def test_environment_list_bare_keys_and_env_files(tmp_path) -> None:
    s = service(tmp_path, "    image: x\n    env_file: [a.env, {path: missing.env, "
                "required: false}]\n    environment: [A=1, FROM_ENV, NOT_SET, 'B=x=y']\n",
                files={"a.env": "A=from-file\nC=3\n"})
    assert s["environment"] == {"A": "1", "B": "x=y", "C": "3", "FROM_ENV": "env-value",
                                "NOT_SET": None}
    assert "env_file" not in s


def test_depends_on_networks_secrets_build_command(tmp_path) -> None:
    s = canon(tmp_path, "services:\n  s:\n    build: ./app\n    depends_on: [d]\n"
              "    networks: [n]\n    secrets: [k]\n"
              "    command: echo \"hello world\" 'a b'\n    entrypoint: [/bin/sh, -c]\n"
              "  d:\n    image: x\nnetworks: {n: }\nsecrets: {k: {file: k.txt}}\n")
    web = s["services"]["s"]
    assert web["build"] == {"context": str(tmp_path / "app"), "dockerfile": "Dockerfile"}
    assert web["depends_on"] == {"d": {"condition": "service_started", "required": True,
                                       "restart": False}}
    assert web["networks"] == {"n": None}
    assert web["secrets"] == [{"source": "k"}]
    assert web["command"] == ["echo", "hello world", "a b"]
    assert web["entrypoint"] == ["/bin/sh", "-c"]
    assert s["secrets"]["k"] == {"file": str(tmp_path / "k.txt"), "name": "p_k"}


def test_healthcheck_ulimits_labels_extra_hosts_sizes(tmp_path) -> None:
    s = service(tmp_path, "    image: x\n    healthcheck:\n      test: curl -f localhost\n"
                "      interval: 90s\n      timeout: 1500ms\n    ulimits: {nofile: 1024}\n"
                "    labels: [a=b, c]\n    extra_hosts: ['db:1.2.3.4', 'db=::1']\n"
                "    shm_size: 64m\n    stop_grace_period: 1m\n    pull_policy: if_not_present\n")
    assert s["healthcheck"] == {"test": ["CMD-SHELL", "curl -f localhost"], "interval": "1m30s",
                                "timeout": "1500ms"}
    assert s["ulimits"] == {"nofile": {"soft": 1024, "hard": 1024}}
    assert s["labels"] == {"a": "b", "c": None}
    assert s["extra_hosts"] == {"db": ["1.2.3.4", "::1"]}
    assert s["shm_size"] == 64 << 20 and s["stop_grace_period"] == "1m"
    assert s["pull_policy"] == "missing"


def test_keys_are_sorted_and_extensions_kept(tmp_path) -> None:
    data = canon(tmp_path, "x-top: {a: 1}\nservices:\n  s:\n    x-mine: 1\n    image: x\n"
                 "    restart: always\n")
    assert list(data["services"]["s"]) == ["image", "networks", "restart", "x-mine"]
    assert data["x-top"] == {"a": 1}


PROFILED = ("services:\n  app:\n    image: x\n  tool:\n    image: x\n    profiles: [debug]\n"
            "    depends_on: [helper]\n  helper:\n    image: x\n    profiles: [other]\n")


def test_profiles_select_services(tmp_path) -> None:
    assert list(canon(tmp_path, PROFILED)["services"]) == ["app"]
    assert list(canon(tmp_path, PROFILED, profiles=("*",))["services"]) == [
        "app", "helper", "tool"]


def test_named_services_enable_their_dependencies(tmp_path) -> None:
    assert list(canon(tmp_path, PROFILED, services=("tool",))["services"]) == [
        "app", "helper", "tool"]


def test_disabled_required_dependency_is_an_error(tmp_path) -> None:
    with pytest.raises(ConfigError, match=r'compose.yaml:7: services.tool.depends_on\[0\]: '
                       r'service "tool" needs "helper", which is disabled by profiles'):
        canon(tmp_path, PROFILED, profiles=("debug",))


def test_unknown_named_service(tmp_path) -> None:
    with pytest.raises(ConfigError, match='no such service: "nope"'):
        canon(tmp_path, PROFILED, services=("nope",))


def test_canonical_form_is_a_fixed_point(tmp_path) -> None:
    import json

    first = canon(tmp_path, "services:\n  s:\n    image: x\n    ports: ['1000-1001:80-81']\n"
                  "    volumes: ['./d:/d']\n    environment: [A=1]\n    build: .\n")
    again = canon(tmp_path, json.dumps(first))
    assert again == first
