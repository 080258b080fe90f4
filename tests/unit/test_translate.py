"""translate: a Compose service -> the engine request, with Docker Compose's names/labels."""

from __future__ import annotations

import stat
import textwrap
from pathlib import Path

import pytest

from compose import translate as t
from compose.loader import load
from compose.loader.options import LoadOptions
from compose.model import Project
from engine.errors import InvalidArgument, Unavailable

STACK = """
services:
  db:
    image: postgres:16
    command: ["postgres", "-c", "fsync=off"]
    environment: {POSTGRES_PASSWORD: pw, EMPTY: ""}
    healthcheck:
      test: ["CMD-SHELL", "pg_isready"]
      interval: 2s
      retries: 7
    volumes: [data:/var/lib/postgresql/data, /scratch, ./conf:/etc/conf:ro]
    secrets: [pw, {source: pw, target: other, mode: 256, uid: "70"}]
    restart: on-failure:3
    stop_grace_period: 3s
    ulimits: {nofile: {soft: 100, hard: 200}}
    tmpfs: ["/run:size=1m"]
  web:
    image: nginx
    container_name: frontend
    depends_on:
      db: {condition: service_healthy, restart: true}
    ports: ["127.0.0.1:8080:80", "9000-9001:9000-9001/udp"]
    networks:
      front: {aliases: [www], priority: 10}
      default: {}
    links: ["db:database"]
    configs: [site]
    entrypoint: []
    deploy:
      resources: {limits: {memory: 64m, cpus: "0.5"}}
      restart_policy: {condition: any}
  side:
    image: busybox
    network_mode: "service:db"
    volumes_from: ["db:ro"]
networks:
  front: {}
volumes:
  data: {}
secrets:
  pw: {environment: PW}
configs:
  site: {content: "server {}"}
"""


def project(tmp_path: Path, text: str = STACK) -> Project:
    (tmp_path / "compose.yaml").write_text(textwrap.dedent(text))
    return load(LoadOptions(environment={"PW": "s3cret"}, cwd=str(tmp_path),
                            project_name="blog"))


def test_names_and_labels(tmp_path: Path) -> None:
    p = project(tmp_path)
    assert t.container_name(p, "db", 2) == "blog-db-2"
    assert t.container_name(p, "web", 1) == "frontend"
    request = t.service_request(p, "web", 1)
    labels = request.labels
    assert labels[t.PROJECT] == "blog" and labels[t.SERVICE] == "web"
    assert labels[t.NUMBER] == "1" and labels[t.ONEOFF] == "False"
    assert labels[t.CONFIG_HASH] == t.config_hash(p, "web") and len(labels[t.CONFIG_HASH]) == 64
    assert labels[t.DEPENDS_ON] == "db:service_healthy:true"
    assert labels[t.WORKING_DIR] == str(tmp_path)
    assert labels[t.CONFIG_FILES] == str(tmp_path / "compose.yaml")
    assert labels[t.IMAGE] == "nginx"
    assert request.config.labels == labels
    assert t.service_request(p, "web", 1, oneoff=True).labels[t.ONEOFF] == "True"


def test_runtime_configuration(tmp_path: Path) -> None:
    p = project(tmp_path)
    db = t.service_request(p, "db", 1)
    config = db.config
    assert config.cmd == ("postgres", "-c", "fsync=off") and config.entrypoint is None
    assert dict(config.env) == {"POSTGRES_PASSWORD": "pw", "EMPTY": ""}
    assert config.healthcheck is not None
    assert (config.healthcheck.test, config.healthcheck.interval,
            config.healthcheck.retries) == (("CMD-SHELL", "pg_isready"), 2.0, 7)
    assert (config.restart.name, config.restart.max_retries) == ("on-failure", 3)
    assert config.stop_timeout == 3.0
    assert [(u.name, u.soft, u.hard) for u in config.ulimits] == [("nofile", 100, 200)]
    web = t.service_request(p, "web", 1).config
    assert web.entrypoint == ("",)  # `entrypoint: []` clears the image's
    assert (web.resources.memory, web.resources.cpus) == (64 * 1024 * 1024, 0.5)
    assert web.restart.name == "always"


def test_networks_ports_links_and_namespaces(tmp_path: Path) -> None:
    p = project(tmp_path)
    web = t.service_request(p, "web", 1)
    assert web.network_mode == "bridge"
    assert [(a.network, a.aliases) for a in web.networks] == [
        ("blog_front", ("web", "www")), ("blog_default", ("web",))]
    assert web.networks[0].links == (("blog-db-1", "database"),)
    assert [(b.host_ip, b.host_port, b.container_port, b.protocol, b.host_port_end)
            for b in web.ports] == [("127.0.0.1", 8080, 80, "tcp", 0),
                                    ("", 9000, 9000, "udp", 0), ("", 9001, 9001, "udp", 0)]
    side = t.service_request(p, "side", 1)
    assert side.network_mode == "container:blog-db-1" and side.networks == ()
    assert side.volumes_from == ("blog-db-1:ro",)


def test_volumes_keep_anonymous_ones_and_mount_secrets(tmp_path: Path) -> None:
    p = project(tmp_path)
    anon = "a" * 64
    request = t.service_request(p, "db", 1, anonymous_volumes={"/scratch": anon,
                                                                "/image/vol": "b" * 64},
                                source_dir="/root/compose/blog")
    mounts = {m.target: m for m in request.mounts}
    assert mounts["/var/lib/postgresql/data"].source == "blog_data"
    assert dict(mounts["/var/lib/postgresql/data"].volume_labels)[t.VOLUME] == "data"
    assert mounts["/scratch"].source == anon
    assert mounts["/image/vol"].source == "b" * 64
    assert (mounts["/etc/conf"].type, mounts["/etc/conf"].source,
            mounts["/etc/conf"].read_only) == ("bind", str(tmp_path / "conf"), True)
    assert (mounts["/run"].type, mounts["/run"].tmpfs_size) == ("tmpfs", 1024 * 1024)
    assert mounts["/run/secrets/pw"].source == "/root/compose/blog/db/secrets/run/secrets/pw"
    assert mounts["/run/secrets/other"].read_only
    files = t.file_sources(p, "db", "/root/compose/blog")
    assert [(f.path, f.content, stat.S_IMODE(f.mode), f.uid) for f in files] == [
        ("/root/compose/blog/db/secrets/run/secrets/pw", "s3cret", 0o444, None),
        ("/root/compose/blog/db/secrets/run/secrets/other", "s3cret", 0o400, 70)]
    web_files = t.file_sources(p, "web", "/x")
    assert [(f.path, f.content) for f in web_files] == [("/x/web/configs/site", "server {}")]
    assert t.service_request(p, "web", 1, source_dir="/x").mounts[-1].target == "/site"
    assert t.anonymous_volumes_of(request, tuple(m.source for m in request.mounts)) == {
        "/scratch": anon, "/image/vol": "b" * 64}


def test_unsupported_and_wrong_input_are_clear(tmp_path: Path) -> None:
    p = project(tmp_path, """
        services:
          a: {image: busybox, ipc: "service:b"}
          b: {image: busybox}
        """)
    with pytest.raises(Unavailable, match='ipc: "service:b" is not supported'):
        t.service_request(p, "a", 1)
    p = project(tmp_path, """
        services:
          a: {image: busybox, secrets: [s]}
        secrets:
          s: {environment: MISSING}
        """)
    with pytest.raises(InvalidArgument, match='"MISSING" is not set'):
        t.file_sources(p, "a")
