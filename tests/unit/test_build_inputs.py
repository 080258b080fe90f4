"""Build inputs a user can get wrong (no root: the errors come before any sandbox)."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine import Engine
from engine.build import build
from engine.errors import InvalidArgument, NotFound


@pytest.fixture
def engine(tmp_path: Path) -> Engine:
    return Engine(tmp_path / "root")


@pytest.fixture
def context(tmp_path: Path) -> Path:
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    return ctx


def test_missing_dockerfile_is_not_found(engine: Engine, context: Path) -> None:
    with pytest.raises(NotFound, match=r"no Dockerfile at .*/ctx/Dockerfile$"):
        build(engine, context)


def test_dockerfile_that_is_a_directory_is_refused(engine: Engine, context: Path) -> None:
    (context / "Dockerfile").mkdir()
    with pytest.raises(InvalidArgument, match=r"cannot read the Dockerfile .*/ctx/Dockerfile "
                                              r"\(Is a directory\)"):
        build(engine, context)


def test_dockerfile_that_is_not_text_is_refused(engine: Engine, context: Path) -> None:
    (context / "Dockerfile").write_bytes(b"\xff\xfeFROM scratch\n")
    with pytest.raises(InvalidArgument, match=r"cannot read the Dockerfile .*'utf-8' codec"):
        build(engine, context)


def test_dockerignore_that_is_a_directory_is_refused(engine: Engine, context: Path) -> None:
    (context / "Dockerfile").write_text("FROM scratch\n")
    (context / ".dockerignore").mkdir()
    with pytest.raises(InvalidArgument, match=r"cannot read .*/ctx/\.dockerignore "
                                              r"\(Is a directory\)"):
        build(engine, context)
