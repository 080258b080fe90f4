"""Suite-wide rules: integration tests need root and are skipped, with the reason, without it."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

RUN_BASE = Path("/run/shipyard")

INTEGRATION = Path(__file__).parent / "integration"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    is_root = os.geteuid() == 0
    for item in items:
        if INTEGRATION in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.root)
        if not is_root and item.get_closest_marker("root"):
            item.add_marker(pytest.mark.skip(
                reason="needs root: namespaces, mounts, cgroups and netlink are privileged"))


def _mounted_under(path: Path) -> bool:
    with open("/proc/self/mountinfo") as f:
        return any(line.split()[4].startswith(f"{path}/") for line in f)


@pytest.fixture(autouse=True)
def _own_run_dirs(request: pytest.FixtureRequest) -> Iterator[None]:
    """Each test's engine root lives in its tmp_path; its per-root run directory in /run
    (locks, the resolver's records and log) goes with it once nothing is mounted there.
    A directory still holding a mount is left for the test's leak check to report."""
    if os.geteuid() != 0 or INTEGRATION not in Path(str(request.node.fspath)).parents:
        yield
        return
    before = set(os.listdir(RUN_BASE)) if RUN_BASE.is_dir() else set()
    yield
    after = set(os.listdir(RUN_BASE)) if RUN_BASE.is_dir() else set()
    for name in after - before:
        if not _mounted_under(RUN_BASE / name):
            shutil.rmtree(RUN_BASE / name, ignore_errors=True)


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory):  # -> Iterator[LocalRegistry]
    """A docker-registry on 127.0.0.1 for the test module (tests/support/registry.py)."""
    from tests.support.registry import LocalRegistry

    local = LocalRegistry(tmp_path_factory.mktemp("registry"))
    try:
        yield local
    finally:
        local.stop()
