"""`shipyard config` through compose.cli.main: output formats, listing flags, errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from compose.cli import main
from compose.commands.config import dump_yaml
from compose.loader.parse import parse_yaml

ROOT = Path(__file__).resolve().parents[2]
WORDPRESS = ROOT / "examples" / "wordpress" / "compose.yaml"

STACK = """\
name: shop
services:
  web:
    image: nginx:1.25
    ports: ["8080:80"]
    depends_on: [api]
    environment:
      PASSWORD: ${PASSWORD:-p$$w}
  api:
    build: ./api
    profiles: [backend]
    volumes: [data:/data]
  tools:
    image: busybox
    profiles: [debug]
    networks: [back]
volumes:
  data:
networks:
  back:
"""


@pytest.fixture
def stack(tmp_path, monkeypatch) -> Path:
    (tmp_path / "compose.yaml").write_text(STACK)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("PASSWORD", raising=False)
    monkeypatch.delenv("COMPOSE_PROFILES", raising=False)
    monkeypatch.delenv("COMPOSE_PROJECT_NAME", raising=False)
    return tmp_path


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_wordpress_example_prints_its_canonical_form(capsys, monkeypatch) -> None:
    monkeypatch.delenv("MYSQL_ROOT_PASSWORD", raising=False)
    monkeypatch.delenv("WORDPRESS_DB_PASSWORD", raising=False)
    code, out, err = run(capsys, "-f", str(WORDPRESS), "config")
    assert code == 0, err
    assert out.startswith("name: wordpress\nservices:\n  db:\n")
    data = parse_yaml(out, "out.yaml")
    assert list(data) == ["name", "services", "networks", "volumes"]
    db, wp = data["services"]["db"], data["services"]["wordpress"]
    assert db["environment"]["MYSQL_ROOT_PASSWORD"] == "somewordpress"
    assert db["healthcheck"]["test"][1].endswith("-p$$MYSQL_ROOT_PASSWORD --silent")
    assert db["healthcheck"]["interval"] == "2s"
    assert wp["ports"] == [{"mode": "ingress", "target": 80, "published": "8080",
                            "protocol": "tcp"}]
    assert wp["depends_on"] == {"db": {"condition": "service_healthy", "required": True,
                                       "restart": False}}
    assert data["volumes"] == {"db_data": {"name": "wordpress_db_data"},
                               "wp_content": {"name": "wordpress_wp_content"}}
    assert "      - type: volume\n        source: db_data\n" in out


def test_profile_flag_dollar_escaping_and_json(stack, capsys) -> None:
    code, out, _ = run(capsys, "--profile", "backend", "config", "--format", "json")
    assert code == 0
    data = json.loads(out)
    assert list(data["services"]) == ["api", "web"]
    assert data["services"]["web"]["environment"]["PASSWORD"] == "p$$w"
    assert data["services"]["api"]["build"]["context"] == str(stack / "api")


def test_listing_flags(stack, capsys) -> None:
    assert run(capsys, "--profile", "backend", "config", "--services")[1] == "api\nweb\n"
    assert run(capsys, "--profile", "backend", "config", "--volumes")[1] == "data\n"
    assert run(capsys, "--profile", "debug", "--profile", "backend", "config",
               "--networks")[1] == "back\ndefault\n"
    assert run(capsys, "config", "--profiles")[1] == "backend\ndebug\n"
    assert run(capsys, "--profile", "backend", "config", "--images")[1] == \
        "shop-api\nnginx:1.25\n"


def test_named_service_enables_it_and_limits_output(stack, capsys) -> None:
    code, out, _ = run(capsys, "config", "--services", "web")
    assert (code, out) == (0, "api\nweb\n")


def test_hash(stack, capsys) -> None:
    code, out, _ = run(capsys, "--profile", "backend", "config", "--hash", "*")
    lines = out.splitlines()
    assert code == 0 and [line.split()[0] for line in lines] == ["api", "web"]
    assert all(len(line.split()[1]) == 64 for line in lines)
    assert run(capsys, "--profile", "backend", "config", "--hash", "web")[1] == lines[1] + "\n"
    code, _, err = run(capsys, "--profile", "backend", "config", "--hash", "nope")
    assert code == 1 and 'no such service: "nope"' in err


def test_quiet_output_file_environment_variables(stack, capsys) -> None:
    code, _, err = run(capsys, "config", "-q")
    assert code == 1 and 'needs "api", which is disabled by profiles' in err
    assert run(capsys, "--profile", "backend", "config", "-q") == (0, "", "")
    assert run(capsys, "--profile", "backend", "config", "-o", "out.yaml")[1] == ""
    assert (stack / "out.yaml").read_text().startswith("name: shop\n")
    env = run(capsys, "config", "--environment")[1]
    assert "COMPOSE_PROJECT_NAME=shop\n" in env
    table = run(capsys, "config", "--variables")[1].splitlines()
    assert table[0].split() == ["NAME", "REQUIRED", "DEFAULT", "VALUE", "ALTERNATE", "VALUE"]
    assert table[1].split() == ["PASSWORD", "false", "p$$w"]


def test_no_interpolate_keeps_references(stack, capsys) -> None:
    code, out, _ = run(capsys, "--profile", "backend", "config", "--no-interpolate")
    assert code == 0
    assert "PASSWORD: ${PASSWORD:-p$$w}" in out


def test_resolve_image_digests_is_not_supported_yet(stack, capsys) -> None:
    code, _, err = run(capsys, "config", "--resolve-image-digests")
    assert code == 1 and "not supported yet" in err


def test_errors_go_to_stderr_without_traceback(stack, capsys) -> None:
    (stack / "compose.yaml").write_text("services:\n  web:\n    image: x\n    ports: [abc]\n")
    code, out, err = run(capsys, "config")
    assert code == 1 and out == ""
    assert err.startswith("compose.yaml:4: services.web.ports[0]: ")


def test_warnings_go_to_stderr(stack, capsys) -> None:
    (stack / "compose.yaml").write_text("version: '3'\nservices:\n  web:\n    image: x\n")
    code, out, err = run(capsys, "config", "--services")
    assert (code, out) == (0, "web\n")
    assert "obsolete" in err


@pytest.mark.parametrize("value", [
    "plain", "8080", "0o17", "yes", "No", "null", "~", "1.5", "1e3", "127.0.0.1", "-f",
    "--port=1", "a: b", "x #y", "ends:", "", " lead", "trail ", "multi\nline\n", "tab\tbed",
    "two\n\n", "no-final\nnewline", "${VAR}", "*star", "&amp", "!bang", "'q'", '"dq"', "[x]",
    "{y}", "@at", "`tick`", "%p", "|bar", ">gt", "?q", ",c", "ünï", "10s", "1_000", "0x1F",
    ".inf", "12:30", "=", "- dash", "#hash", 42, 1.5, True, None, -3, [], {}])
def test_yaml_writer_round_trips_every_scalar(value) -> None:
    text = dump_yaml({"k": value, "l": [value, {"m": value}]})
    assert parse_yaml(text, "t.yaml") == {"k": value, "l": [value, {"m": value}]}
    import yaml

    assert yaml.safe_load(text) == {"k": value, "l": [value, {"m": value}]}


def test_version_matches_the_package_metadata() -> None:
    from importlib.metadata import version

    from compose import __version__

    assert __version__ == version("shipyard")
