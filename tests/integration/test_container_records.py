"""engine/containers.py: the record `create` hands back is the one the store keeps."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from compose.cli import main
from engine import Engine
from tests.support import busybox
from tests.unit.test_serde import full_request

pytestmark = pytest.mark.skipif(not busybox.available(), reason="busybox-static is missing")


def test_create_returns_what_get_reads_back(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    # `create` builds its answer from memory instead of reading the row back: it must be
    # the same record, down to the volume it made and the image's id.
    monkeypatch.setenv("SHIPYARD_ROOT", str(tmp_path / "root"))
    assert main(["image", "import", str(busybox.make_rootfs_tar(tmp_path / "busybox.tar")),
                 "busybox"]) == 0
    engine = Engine(tmp_path / "root")
    request = full_request()
    config = dataclasses.replace(request.config, network="none", namespaces={})
    request = dataclasses.replace(request, config=config, networks=(), ports=(),
                                  name="records-1")
    created = engine.containers.create(request)
    try:
        assert created == engine.containers.get(created.id)
        assert created.volumes == ("v",) and created.directory.is_dir()
    finally:
        engine.containers.remove(created, volumes=True)
        engine.volumes.remove("v")  # (a named volume outlives its container)
    assert engine.volumes.list() == []
