"""Suite-wide rules: integration tests need root and are skipped, with the reason, without it."""

from __future__ import annotations

import os
import shutil
import signal
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


# No single test takes near this long: one that does is hung (a blocked read, a lost
# child). pytest's faulthandler_timeout (pyproject.toml, shorter) prints every thread's
# stack; this ends the run then, rather than CI's wall-clock limit ending it silently.
HUNG_AFTER = 660


@pytest.fixture(autouse=True)
def _hang_watchdog() -> Iterator[None]:
    signal.alarm(HUNG_AFTER)  # SIGALRM's default action ends the process
    try:
        yield
    finally:
        signal.alarm(0)


@pytest.fixture(autouse=True)
def _own_run_dirs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Each test's engine root lives in its tmp_path; its per-root run directory in /run
    (locks, the resolver's records and log; unit tests' `up --dry-run` takes the project
    lock there too) goes with it once nothing is mounted there.
    A directory still holding a mount is left for the test's leak check to report."""
    if os.geteuid() != 0:
        yield
        return
    before = set(os.listdir(RUN_BASE)) if RUN_BASE.is_dir() else set()
    yield
    after = set(os.listdir(RUN_BASE)) if RUN_BASE.is_dir() else set()
    new = after - before
    if not new:
        return
    # Only those of this session's roots (all under its base temporary directory): a test
    # session running alongside (another engineer's) makes run directories of its own
    # meanwhile, and uses them.
    ours = _run_dirs_of_roots_under(tmp_path_factory.getbasetemp())
    for name in new & ours:
        if not _mounted_under(RUN_BASE / name):
            shutil.rmtree(RUN_BASE / name, ignore_errors=True)


def _run_dirs_of_roots_under(top: Path, depth: int = 3) -> set[str]:
    """The run directory names (engine.layout.Layout.run) of the engine roots (directories
    holding a shipyard.db) in `top`, down to `depth` levels."""
    from engine.layout import Layout

    found, level = set(), [Path(top)]
    for _ in range(depth + 1):
        below = []
        for directory in level:
            if (directory / "shipyard.db").exists():
                found.add(Layout.at(directory).run.name)
            try:
                below += [p for p in directory.iterdir() if p.is_dir() and not p.is_symlink()]
            except OSError:
                pass
        level = below
    return found


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory):  # -> Iterator[LocalRegistry]
    """A docker-registry on 127.0.0.1 for the test module (tests/support/registry.py)."""
    from tests.support.registry import LocalRegistry

    local = LocalRegistry(tmp_path_factory.mktemp("registry"))
    try:
        yield local
    finally:
        local.stop()
