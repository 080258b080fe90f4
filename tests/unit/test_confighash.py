"""The config hash changes exactly when a container must be recreated."""

from __future__ import annotations

import copy

from compose.confighash import project_hashes, service_hash
from compose.loader.bind import bind_project

BASE = {"image": "nginx", "environment": {"A": "1"}, "ports": [
    {"mode": "ingress", "target": 80, "published": "8080", "protocol": "tcp"}],
    "deploy": {"replicas": 2, "resources": {"limits": {"memory": 1024}}},
    "depends_on": {"db": {"condition": "service_started", "required": True, "restart": False}},
    "build": {"context": "/src", "dockerfile": "Dockerfile"}, "scale": 2,
    "profiles": ["web"], "pull_policy": "always", "develop": {"watch": []}}


def changed(path: tuple, value) -> dict:
    out = copy.deepcopy(BASE)
    node = out
    for part in path[:-1]:
        node = node[part]
    node[path[-1]] = value
    return out


def test_hash_is_hex_sha256_and_independent_of_key_order() -> None:
    digest = service_hash(BASE)
    assert len(digest) == 64 and int(digest, 16) >= 0
    assert service_hash(dict(reversed(list(BASE.items())))) == digest


def test_fields_that_do_not_recreate_are_excluded() -> None:
    digest = service_hash(BASE)
    for path, value in [(("scale",), 5), (("deploy", "replicas"), 9), (("depends_on",), {}),
                        (("build",), {"context": "/other"}), (("profiles",), []),
                        (("pull_policy",), "never"), (("develop",), {"watch": [{"x": 1}]})]:
        assert service_hash(changed(path, value)) == digest, path


def test_fields_that_recreate_change_the_hash() -> None:
    digest = service_hash(BASE)
    for path, value in [(("image",), "nginx:2"), (("environment", "A"), "2"),
                        (("ports", 0, "published"), "9090"),
                        (("deploy", "resources", "limits", "memory"), 2048)]:
        assert service_hash(changed(path, value)) != digest, path


def test_project_hashes() -> None:
    project = bind_project({"name": "p", "services": {"b": {"image": "x"}, "a": BASE}},
                           working_dir="/w")
    hashes = project_hashes(project)
    assert list(hashes) == ["a", "b"] and hashes["a"] == service_hash(BASE)
