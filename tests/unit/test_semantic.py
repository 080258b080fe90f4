"""Checks beyond the schema: short syntaxes, units, references, conflicts, cycles."""

from __future__ import annotations

import pytest

from compose.errors import ConfigError
from compose.loader import syntax, units
from compose.loader.parse import parse_yaml
from compose.loader.semantic import check


def errors(text: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        check(parse_yaml(text, "c.yaml"))
    return [str(p) for p in caught.value.problems]


@pytest.mark.parametrize(("text", "seconds"), [
    ("10s", 10.0), ("1m30s", 90.0), ("1h", 3600.0), ("100ms", 0.1), ("2us", 2e-6),
    ("1.5s", 1.5), ("1h2m3s", 3723.0), (30, 30.0), ("0", 0.0), ("500ns", 5e-7), (2.5, 2.5),
])
def test_durations(text, seconds) -> None:
    assert units.parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["1d", "s", "10 s", "-1s", "1s1", "", True, "1m 30s"])
def test_bad_durations(text) -> None:
    with pytest.raises(ValueError, match="not a valid duration"):
        units.parse_duration(text)


@pytest.mark.parametrize(("seconds", "text"), [
    (90.0, "1m30s"), (0.5, "500ms"), (3600.0, "1h"), (0.0, "0s"), (2e-6, "2us"), (10.0, "10s")])
def test_duration_format_round_trips(seconds, text) -> None:
    assert units.format_duration(seconds) == text
    assert units.parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize(("text", "size"), [
    ("512m", 512 << 20), ("1g", 1 << 30), ("1.5gb", int(1.5 * (1 << 30))), ("100k", 102400),
    ("1024", 1024), (2048, 2048), ("64M", 64 << 20), ("1GiB", 1 << 30), ("10b", 10),
    ("256mb", 256 << 20)])
def test_byte_sizes(text, size) -> None:
    assert units.parse_bytes(text) == size


@pytest.mark.parametrize("text", ["lots", "1x", "-1", "1.5 gigs", True, "g"])
def test_bad_byte_sizes(text) -> None:
    with pytest.raises(ValueError, match="not a valid byte size"):
        units.parse_bytes(text)


def test_port_short_syntax() -> None:
    assert syntax.parse_port("80") == [
        {"mode": "ingress", "target": 80, "protocol": "tcp"}]
    assert syntax.parse_port(8080) == [{"mode": "ingress", "target": 8080, "protocol": "tcp"}]
    assert syntax.parse_port("127.0.0.1:8080:80/udp") == [
        {"mode": "ingress", "host_ip": "127.0.0.1", "target": 80, "published": "8080",
         "protocol": "udp"}]
    assert syntax.parse_port("[::1]:53:53/udp")[0]["host_ip"] == "::1"
    assert [(p["published"], p["target"]) for p in syntax.parse_port("9090-9091:8080-8081")] \
        == [("9090", 8080), ("9091", 8081)]
    assert syntax.parse_port("8000-8010:80")[0]["published"] == "8000-8010"
    assert [p["target"] for p in syntax.parse_port("3000-3002")] == [3000, 3001, 3002]
    assert syntax.parse_port("127.0.0.1::80")[0].get("published") is None


@pytest.mark.parametrize("spec", ["80:80:80:80", "0:0", "70000", "a:80", "80-70:80",
                                  "80/icmp", "8080-8090:80-81", "1.2.3:80:80", "[::1:80"])
def test_bad_ports(spec) -> None:
    with pytest.raises(ValueError, match="not a valid port mapping"):
        syntax.parse_port(spec)


def test_volume_short_syntax() -> None:
    assert syntax.parse_volume("/data") == {"type": "volume", "target": "/data"}
    assert syntax.parse_volume("db:/var/lib/db:nocopy") == {
        "type": "volume", "source": "db", "target": "/var/lib/db", "volume": {"nocopy": True}}
    assert syntax.parse_volume("./src:/app:ro,z,rslave") == {
        "type": "bind", "source": "./src", "target": "/app", "read_only": True,
        "bind": {"create_host_path": True, "propagation": "rslave", "selinux": "z"}}
    assert syntax.parse_volume("~/x:/x")["type"] == "bind"
    assert syntax.parse_volume("/host:/ctr")["source"] == "/host"


def test_extra_hosts_and_expose() -> None:
    assert syntax.parse_extra_host("db:10.0.0.5") == ("db", "10.0.0.5")
    assert syntax.parse_extra_host("v6=::1") == ("v6", "::1")
    assert syntax.parse_extra_host("v6:[::1]") == ("v6", "::1")
    assert syntax.parse_expose("3000-3005/udp") == "3000-3005/udp"


def test_tmpfs_short_syntax() -> None:
    assert syntax.parse_tmpfs("/run:size=1m,mode=1777,noexec") == ("/run", 1 << 20, 0o1777)
    assert syntax.parse_tmpfs("/run") == ("/run", None, None)
    found = errors('services:\n  a:\n    image: x\n    tmpfs: ["/ok", "/x:mode=zz"]\n'
                   '  b:\n    image: x\n    tmpfs: "/y:size=lots"\n')
    assert found == [
        'c.yaml:4: services.a.tmpfs[1]: "/x:mode=zz": mode "zz" is not an octal number '
        "(expected e.g. mode=1777)",
        'c.yaml:7: services.b.tmpfs: "lots" is not a valid byte size '
        "(expected e.g. 512m, 1g, 1.5gb, 100k or a number of bytes)"]


def test_all_problems_at_once_with_locations() -> None:
    found = errors(
        "services:\n"
        "  web:\n"
        "    image: nginx\n"
        "    depends_on: [db, cache]\n"
        "    ports: ['80:80:80:80']\n"
        "    volumes: ['data:/x', './a:rel']\n"
        "    networks: [front]\n"
        "    secrets: [s]\n"
        "    stop_grace_period: 1d\n"
        "    shm_size: big\n"
        "  db:\n"
        "    image: postgres\n"
        "    container_name: box\n"
        "    scale: 2\n")
    assert found == [
        'c.yaml:4: services.web.depends_on[1]: service "web" depends on "cache", which is not '
        "defined",
        'c.yaml:5: services.web.ports[0]: "80:80:80:80" is not a valid port mapping (expected '
        "[HOST_IP:][HOST_PORT:]CONTAINER_PORT[/PROTOCOL], ports and ranges 1-65535)",
        'c.yaml:6: services.web.volumes[0]: volume "data" is not defined (add it under the '
        "top-level volumes key, or write ./data for a host directory)",
        'c.yaml:6: services.web.volumes[1]: "./a:rel" is not a valid volume: the container path '
        '"rel" is not absolute (expected [SOURCE:]CONTAINER_PATH[:MODE], MODE one of ro, rw, z, '
        "Z, nocopy, ...)",
        'c.yaml:7: services.web.networks[0]: network "front" is not defined (add it under the '
        "top-level networks key)",
        'c.yaml:8: services.web.secrets[0]: secret "s" is not defined (add it under the '
        "top-level secrets key)",
        'c.yaml:9: services.web.stop_grace_period: "1d" is not a valid duration (expected e.g. '
        "10s, 1m30s, 500ms, 2h; units us, ms, s, m, h)",
        'c.yaml:10: services.web.shm_size: "big" is not a valid byte size (expected e.g. 512m, '
        "1g, 1.5gb, 100k or a number of bytes)",
        "c.yaml:13: services.db.container_name: container_name cannot be used with 2 replicas "
        "(container names are unique; remove container_name or scale to 1)",
    ]


def test_deploy_replicas_count_like_scale() -> None:
    assert "cannot be used with 4 replicas" in errors(
        "services:\n  a:\n    image: x\n    container_name: c\n    deploy: {replicas: 4}\n")[0]


def test_cycle_is_named_in_order() -> None:
    assert errors("services:\n  a: {image: x, depends_on: {b: {condition: service_started}}}\n"
                  "  b: {image: x, pid: 'service:c'}\n  c: {image: x, ipc: 'service:a'}\n") == [
        "c.yaml:2: services.a.depends_on.b: dependency cycle: a -> b -> c -> a"]


def test_valid_references_pass() -> None:
    check(parse_yaml(
        "services:\n  a:\n    image: x\n    network_mode: service:b\n"
        "    volumes_from: [b, 'container:other:ro']\n    links: ['b:bee']\n"
        "  b:\n    image: x\n    volumes: [data:/d]\n    secrets: [s]\n"
        "    networks: [default]\n"
        "volumes: {data: }\nsecrets: {s: {file: ./s.txt}}\n", "c.yaml"))


def test_lenient_mode_ignores_uninterpolated_values() -> None:
    tree = parse_yaml("services:\n  a:\n    image: x\n    ports: ['${P}:80']\n"
                      "    stop_grace_period: ${T}\n", "c.yaml")
    with pytest.raises(ConfigError):
        check(tree)
    check(tree, lenient=True)
