"""Suite-wide rules: integration tests need root and are skipped, with the reason, without it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

INTEGRATION = Path(__file__).parent / "integration"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    is_root = os.geteuid() == 0
    for item in items:
        if INTEGRATION in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.root)
        if not is_root and item.get_closest_marker("root"):
            item.add_marker(pytest.mark.skip(
                reason="needs root: namespaces, mounts, cgroups and netlink are privileged"))
