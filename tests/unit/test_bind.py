"""Binding: canonical dicts -> frozen model; types, defaults, derived values."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from compose import model
from compose.loader import load
from compose.loader.bind import bind_project
from compose.loader.options import LoadOptions


def project_of(tmp_path: Path, text: str) -> model.Project:
    (tmp_path / "compose.yaml").write_text(text)
    return load(LoadOptions(environment={"HOME": "/h"}, cwd=str(tmp_path),
                            files=("compose.yaml",)))


def test_typed_service(tmp_path) -> None:
    p = project_of(tmp_path, """
name: demo
services:
  web:
    image: nginx
    command: nginx -g 'daemon off;'
    ports: ["127.0.0.1:8080:80"]
    volumes: ["./html:/usr/share/nginx/html:ro", "cache:/cache"]
    networks:
      front:
        aliases: [www]
        ipv4_address: 172.30.0.10
        priority: 5
    depends_on:
      api: {condition: service_healthy, restart: true}
    healthcheck: {test: [CMD, curl, -f, localhost], interval: 1m30s, retries: 3}
    stop_grace_period: 500ms
    shm_size: 1g
    ulimits: {nofile: {soft: 100, hard: 200}}
    secrets: [{source: tls, target: /tls, mode: 0o400}]
    logging: {driver: json-file, options: {max-size: 10m}}
    post_start: [{command: echo started, user: root}]
    x-note: hello
  api:
    image: api
    networks: [front]
networks:
  front:
    ipam:
      config: [{subnet: 172.30.0.0/24}]
volumes:
  cache:
secrets:
  tls: {file: ./tls.pem}
""")
    web = p.service("web")
    assert web.command == ("nginx", "-g", "daemon off;")
    assert web.ports == (model.Port(target=80, published="8080", host_ip="127.0.0.1"),)
    assert web.volumes[0] == model.Mount(type="bind", target="/usr/share/nginx/html",
                                         source=str(tmp_path / "html"), read_only=True)
    assert web.volumes[1].source == "cache" and web.volumes[1].type == "volume"
    assert web.networks["front"] == model.ServiceNetwork(
        name="front", aliases=("www",), ipv4_address="172.30.0.10", priority=5)
    assert web.depends_on["api"] == model.DependsOn("service_healthy", True, True)
    assert web.healthcheck.test == ("CMD", "curl", "-f", "localhost")
    assert web.healthcheck.interval == 90.0 and web.healthcheck.retries == 3
    assert web.stop_grace_period == 0.5 and web.shm_size == 1 << 30
    assert web.ulimits["nofile"] == model.Ulimit(100, 200)
    assert web.secrets == (model.FileRef("tls", "/tls", mode=0o400),)
    assert web.logging.options == {"max-size": "10m"}
    assert web.post_start[0].command == ("echo", "started")
    assert web.extensions == {"x-note": "hello"}
    assert web.restart == "no" and web.scale == 1 and web.pull_policy == "missing"
    assert p.networks["front"].name == "demo_front"
    assert p.networks["front"].ipam[0].subnet == "172.30.0.0/24"
    assert p.volumes["cache"].name == "demo_cache"
    assert p.secrets["tls"].file == str(tmp_path / "tls.pem")


def test_model_is_frozen_and_hashable(tmp_path) -> None:
    p = project_of(tmp_path, "services:\n  a:\n    image: x\n    environment: {A: b}\n")
    a = p.services["a"]
    with pytest.raises(dataclasses.FrozenInstanceError):
        a.image = "y"  # type: ignore[misc]
    with pytest.raises(TypeError):
        a.environment["A"] = "c"  # type: ignore[index]
    assert hash(a) == hash(dataclasses.replace(a))


def test_restart_from_deploy_policy_and_replicas() -> None:
    data = {"name": "p", "services": {
        "a": {"image": "x", "deploy": {"replicas": 3, "restart_policy": {
            "condition": "on-failure", "max_attempts": 2}}},
        "b": {"image": "x", "deploy": {"restart_policy": {"condition": "any"}}},
        "c": {"image": "x", "restart": "always", "scale": 2}}}
    p = bind_project(data, working_dir="/w")
    assert (p.services["a"].restart, p.services["a"].scale) == ("on-failure:2", 3)
    assert p.services["b"].restart == "always"
    assert (p.services["c"].restart, p.services["c"].scale) == ("always", 2)
    assert p.canonical is data


def test_unknown_service_lookup_names_the_known_ones() -> None:
    from engine.errors import NotFound

    p = bind_project({"name": "p", "services": {"a": {"image": "x"}}}, working_dir="/w")
    with pytest.raises(NotFound, match=r'no such service: "b" \(services: a\)'):
        p.service("b")
