"""The global `--parallel N` flag (as `docker compose --parallel N`) and
COMPOSE_PARALLEL_LIMIT: how many engine calls a plan may make at once."""

from __future__ import annotations

import pytest

from compose.cli import Context, build_parser, chosen_command, main, parallel_limit
from engine.errors import InvalidArgument


def _limit(argv: list[str], environ: dict[str, str] | None = None) -> int:
    args = build_parser(chosen_command(argv)).parse_args(argv)
    return parallel_limit(args, Context(environ=environ or {}, cwd="/"))


def test_global_flag_before_the_command() -> None:
    assert chosen_command(["--parallel", "3", "up", "-d"]) == "up"
    assert _limit(["--parallel", "3", "up", "-d"]) == 3
    assert _limit(["--parallel", "3", "down"]) == 3


def test_no_limit_by_default_and_with_minus_one() -> None:
    assert _limit(["up"]) == 0
    assert _limit(["--parallel", "-1", "up"]) == 0


def test_the_commands_own_flag_wins() -> None:
    assert _limit(["--parallel", "3", "up", "--parallel", "2"]) == 2


def test_environment_variable() -> None:
    assert _limit(["up"], {"COMPOSE_PARALLEL_LIMIT": "5"}) == 5
    assert _limit(["--parallel", "4", "up"], {"COMPOSE_PARALLEL_LIMIT": "5"}) == 4
    with pytest.raises(InvalidArgument, match="COMPOSE_PARALLEL_LIMIT='many'"):
        _limit(["up"], {"COMPOSE_PARALLEL_LIMIT": "many"})


def test_dry_run_with_the_flag(tmp_path, monkeypatch, capsys) -> None:
    (tmp_path / "compose.yaml").write_text("services:\n  web:\n    image: busybox\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SHIPYARD_ROOT", str(tmp_path / "root"))
    monkeypatch.delenv("COMPOSE_PROJECT_NAME", raising=False)
    assert main(["--parallel", "1", "up", "-d", "--dry-run"]) == 0
    assert "web" in capsys.readouterr().out
