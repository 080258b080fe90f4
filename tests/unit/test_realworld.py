"""Real-world style Compose files (tests/unit/data/realworld) load, and `shipyard config`
output loads back to the same project. Files starting with "_" are helpers they refer to."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from compose.cli import main
from compose.loader import load
from compose.loader.options import LoadOptions

DATA = Path(__file__).parent / "data" / "realworld"
FILES = sorted(p for p in DATA.glob("*.yaml") if not p.name.startswith("_"))
ENV = {"HOME": "/home/dev", "GITLAB_HOME": "/srv/gitlab", "DB_PASSWORD": "pw",
       "PATH": "/usr/bin:/bin"}
PROFILES = ("debug",)


def _load(path: Path, env: dict[str, str], **kw) -> object:
    return load(LoadOptions(environment=env, cwd=str(DATA), files=(str(path),),
                            profiles=PROFILES, **kw))


@pytest.fixture
def env(monkeypatch) -> dict[str, str]:
    import os

    for key in list(os.environ):
        if key not in ("PYTHONPATH",):
            monkeypatch.delenv(key, raising=False)
    for key, value in ENV.items():
        monkeypatch.setenv(key, value)
    monkeypatch.chdir(DATA)
    return dict(os.environ)


def test_there_are_at_least_fifteen_files() -> None:
    assert len(FILES) >= 15


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_loads_and_round_trips(path: Path, env, tmp_path, capsys) -> None:
    project = _load(path, env)
    assert project.services
    for output_format in ("yaml", "json"):
        assert main(["-f", str(path), "--profile", "debug", "config",
                     "--format", output_format]) == 0
        out = capsys.readouterr().out
        if output_format == "json":
            json.loads(out)
        again_file = tmp_path / f"out.{output_format}"
        again_file.write_text(out)
        again = _load(again_file, env, project_directory=str(DATA))
        assert again.canonical == project.canonical
        assert replace(again, config_files=project.config_files) == project


def _service(name: str, file: str, env: dict[str, str]):
    return _load(DATA / file, env).services[name]


def test_django_env_file_folds_in_and_environment_wins(env) -> None:
    web = _service("web", "django-celery.yaml", env)
    assert web.environment["DJANGO_SETTINGS_MODULE"] == "shop.settings"
    assert web.environment["SECRET_KEY"] == "dev-secret-key"
    assert web.environment["DATABASE_URL"] == "postgres://shop:shop@db:5432/shop"
    assert web.command == ("python", "manage.py", "runserver", "0.0.0.0:8000")
    assert web.build.context == str(DATA)
    assert web.build.dockerfile == "docker/Dockerfile"
    assert web.build.args == {"DEBUG": None, "PYTHON_VERSION": "3.12"}
    assert web.depends_on["db"].condition == "service_healthy"
    assert web.volumes[0].type == "bind" and web.volumes[0].source == str(DATA)


def test_traefik_labels_and_replicas(env) -> None:
    project = _load(DATA / "traefik.yaml", env)
    whoami = project.services["whoami"]
    assert whoami.labels["traefik.enable"] == "true"
    assert whoami.scale == 2
    assert project.networks["proxy"].name == "traefik_proxy"
    ports = project.services["traefik"].ports
    assert [(p.host_ip, p.published, p.target) for p in ports] == [
        (None, "80", 80), (None, "443", 443), ("127.0.0.1", "8080", 8080)]


def test_deploy_resources(env) -> None:
    project = _load(DATA / "deploy-resources.yaml", env)
    api, worker = project.services["api"], project.services["worker"]
    assert api.deploy.limits.cpus == 0.5 and api.deploy.limits.memory == 512 << 20
    assert api.deploy.reservations.memory == 128 << 20 and api.deploy.limits.pids == 200
    assert api.scale == 3 and api.restart == "on-failure:3"
    assert api.deploy.restart_policy.window == 120.0
    assert [(p.published, p.target) for p in api.ports] == [("8080-8082", 80)]
    assert api.tmpfs == ("/run",) and api.sysctls == {"net.core.somaxconn": "1024"}
    assert worker.mem_limit == int(1.5 * (1 << 30)) and worker.memswap_limit == -1
    assert worker.cpus == 1.5 and worker.scale == 2
    assert worker.ulimits["nproc"].soft == 65535 and worker.ulimits["nofile"].hard == 20000
    assert worker.extra_hosts == {"db.internal": ("10.0.0.5",)}
    assert worker.healthcheck.disable


def test_profiles_and_optional_dependencies(env) -> None:
    project = _load(DATA / "profiles.yaml", env)
    assert sorted(project.services) == ["adminer", "app", "db", "mailhog"]
    ops = load(LoadOptions(environment=env, cwd=str(DATA), files=("profiles.yaml",),
                           profiles=("ops",)))
    assert sorted(ops.services) == ["app", "backup", "db"]
    assert list(ops.services["backup"].depends_on) == ["db"]
    assert any("s3mock" in w for w in ops.warnings)


def test_extends_and_include(env) -> None:
    project = _load(DATA / "extends.yaml", env)
    scheduler = project.services["scheduler"]
    assert scheduler.image == "example/app:2.3"
    assert scheduler.environment["ROLE"] == "worker"
    assert scheduler.command == ("rq-scheduler",)
    assert scheduler.volumes[0].source == str(DATA / "src") and scheduler.volumes[0].read_only
    included = _load(DATA / "include.yaml", env)
    assert sorted(included.services) == ["api", "postgres"]
    assert included.volumes["pg"].name == "realworld_pg"


def test_secrets_and_configs(env) -> None:
    project = _load(DATA / "secrets-configs.yaml", env)
    db = project.services["db"]
    assert db.secrets[1].target == "/run/secrets/db_pw" and db.secrets[1].mode == 0o440
    assert project.secrets["api_token"].external
    assert project.secrets["api_token"].name == "prod_api_token"
    assert project.secrets["db_root_password"].file == str(DATA / "_db_password.txt")
    assert project.configs["nginx_snippet"].content.startswith("location /health")
