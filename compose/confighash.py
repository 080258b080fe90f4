"""The config hash of a service: it changes exactly when the service's container must be
recreated. Stored in the `com.docker.compose.config-hash` label; compared by reconcile.

sha256 (hex) over the canonical JSON (sorted keys, no spaces) of the service's canonical
form, without the fields that change how many containers run, how the image is obtained or
what starts first, none of which alters a container already made; docker compose leaves out
the same ones: `build`, `pull_policy`, `scale`, `deploy.replicas`, `depends_on`,
`profiles`, plus `develop` (watch rules act on running containers, not on their config).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from engine import sha256

if TYPE_CHECKING:
    from compose.model import Project

EXCLUDED = ("build", "pull_policy", "scale", "depends_on", "profiles", "develop")


def hashable_config(service: Mapping[str, Any]) -> dict[str, Any]:
    """The part of a canonical service dict that the hash covers."""
    config = {k: v for k, v in service.items() if k not in EXCLUDED}
    deploy = config.get("deploy")
    if isinstance(deploy, Mapping) and "replicas" in deploy:
        config["deploy"] = {k: v for k, v in deploy.items() if k != "replicas"}
    return config


def service_hash(service: Mapping[str, Any]) -> str:
    """The config hash of one canonical service dict."""
    text = json.dumps(hashable_config(service), sort_keys=True, separators=(",", ":"),
                      ensure_ascii=False, default=_plain)
    return sha256.hexdigest(text)


def project_hashes(project: Project) -> dict[str, str]:
    """Service name -> config hash, for every service of `project`."""
    services = project.canonical.get("services") or {}
    return {name: service_hash(config) for name, config in sorted(services.items())}


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return dict(value)
    raise TypeError(f"not JSON-able: {type(value).__name__}")
