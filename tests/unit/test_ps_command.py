"""`ps`'s effective command (compose/commands/ps.py) agrees with the engine's own merge
(engine.spec.command), which `ps` cannot afford to import."""

from __future__ import annotations

import pytest

from compose.commands.ps import effective_command, truncated
from engine.spec import ContainerConfig, command

IMAGE = {"Entrypoint": ["docker-entrypoint.sh"], "Cmd": ["mysqld"]}

CASES = [
    (None, None, IMAGE, ["docker-entrypoint.sh", "mysqld"]),
    (None, ["mysqld", "--verbose"], IMAGE, ["docker-entrypoint.sh", "mysqld", "--verbose"]),
    (["/bin/sh", "-c"], None, IMAGE, ["/bin/sh", "-c"]),          # drops the image's Cmd
    (["/bin/sh", "-c"], ["echo hi"], IMAGE, ["/bin/sh", "-c", "echo hi"]),
    ([""], ["echo", "hi"], IMAGE, ["echo", "hi"]),                 # cleared entrypoint
    ([], None, IMAGE, ["mysqld"]),
    (None, [], IMAGE, ["docker-entrypoint.sh", "mysqld"]),
    (None, None, {"Cmd": ["sh"]}, ["sh"]),
    (None, ["top"], {}, ["top"]),
]


@pytest.mark.parametrize(("entrypoint", "cmd", "image", "expected"), CASES)
def test_effective_command_is_the_engines(entrypoint, cmd, image, expected) -> None:
    assert effective_command(entrypoint, cmd, image) == expected
    config = ContainerConfig(id="c" * 64,
                             entrypoint=None if entrypoint is None else tuple(entrypoint),
                             cmd=None if cmd is None else tuple(cmd))
    assert command(config, image) == expected


def test_truncated_like_docker() -> None:
    assert truncated("docker-entrypoint.sh mysqld") == "docker-entrypoint.s…"
    assert truncated("x" * 20) == "x" * 20
    assert truncated("") == ""
