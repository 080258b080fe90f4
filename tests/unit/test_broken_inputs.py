"""Broken Compose files through the whole `shipyard config -q` path.

Each case writes files into a temporary directory, runs `compose.cli.main` there and checks:
exit code 1, no traceback, the exact `FILE:LINE: key.path:` prefix of the first problem and a
fragment of its message.
"""

from __future__ import annotations

import textwrap

import pytest

from compose.cli import main

S = "services:\n  web:\n    image: nginx\n"  # a valid start that cases extend

# (id, compose.yaml, expected prefix, message fragment[, other files])
CASES: list[tuple] = [
    # --- YAML syntax ------------------------------------------------------------------------
    ("yaml-unclosed-flow", "services:\n  web:\n    image: [nginx\n",
     "compose.yaml:4:", "invalid YAML"),
    ("yaml-duplicate-key", "services:\n  web:\n    image: a\n    image: b\n",
     "compose.yaml:4:", "duplicate key"),
    ("yaml-tab-indent", "services:\n\tweb:\n", "compose.yaml:2:", "invalid YAML"),
    ("yaml-unknown-tag", "services:\n  web:\n    image: !foo nginx\n",
     "compose.yaml:3:", "!reset and !override"),
    ("yaml-top-level-list", "- web\n- db\n", "compose.yaml", "mapping"),
    # --- wrong types ------------------------------------------------------------------------
    ("services-list", "services:\n  - web\n", "compose.yaml:1: services:",
     "expected a mapping"),
    ("service-string", "services:\n  web: nginx\n", "compose.yaml:2: services.web:",
     "expected a service definition (a mapping), got the string \"nginx\""),
    ("image-list", "services:\n  web:\n    image: [nginx]\n", "compose.yaml:3: services.web.image:",
     "expected a string, got a list"),
    ("ports-string", S + "    ports: '80:80'\n", "compose.yaml:4: services.web.ports:",
     "expected a list, got the string"),
    ("environment-string", S + "    environment: A=b\n",
     "compose.yaml:4: services.web.environment:", "expected a mapping or a list"),
    ("command-number", S + "    command: 42\n", "compose.yaml:4: services.web.command:",
     "expected a string or a list of strings, got the integer 42"),
    ("privileged-yes", S + "    privileged: yes\n", "compose.yaml:4: services.web.privileged:",
     'expected true or false'),
    ("scale-word", S + "    scale: two\n", "compose.yaml:4: services.web.scale:",
     "expected a non-negative integer"),
    ("cap-add-duplicate", S + "    cap_add: [NET_ADMIN, NET_ADMIN]\n",
     "compose.yaml:4: services.web.cap_add:", '"NET_ADMIN" is listed twice'),
    ("retries-word", S + "    healthcheck:\n      test: [CMD, 'true']\n      retries: many\n",
     "compose.yaml:6: services.web.healthcheck.retries:", "expected a non-negative integer"),
    ("depends-on-string", S + "    depends_on: db\n", "compose.yaml:4: services.web.depends_on:",
     "expected a list of service names or a mapping"),
    ("network-entry-list", S + "networks:\n  front: [a]\n", "compose.yaml:5: networks.front:",
     "expected a network definition"),
    ("label-value-list", S + "    labels:\n      a: [1]\n",
     "compose.yaml:5: services.web.labels.a:",
     "expected a string, number, boolean or null, got a list"),
    ("ulimit-missing-hard", S + "    ulimits:\n      nofile: {soft: 1}\n",
     "compose.yaml:5: services.web.ulimits.nofile:", 'missing required key "hard"'),
    ("build-number", "services:\n  web:\n    build: 3\n", "compose.yaml:3: services.web.build:",
     "expected a context path or a mapping, got the integer 3"),
    ("volume-long-no-type", S + "    volumes:\n      - target: /data\n",
     "compose.yaml:5: services.web.volumes[0]:", 'missing required key "type"'),
    ("cpus-word", S + "    deploy:\n      resources:\n        limits:\n          cpus: lots\n",
     "compose.yaml:7: services.web.deploy.resources.limits.cpus:", "expected a number"),
    ("oom-score-range", S + "    oom_score_adj: 5000\n",
     "compose.yaml:4: services.web.oom_score_adj:", "too large"),
    ("bad-service-name", "services:\n  'my web':\n    image: nginx\n",
     "compose.yaml:2: services.my web:", "is not a valid service name"),
    # --- unknown keys -----------------------------------------------------------------------
    ("unknown-imagee", "services:\n  web:\n    imagee: nginx\n",
     "compose.yaml:3: services.web.imagee:", 'unknown key "imagee" (did you mean "image"?)'),
    ("unknown-top-level", "service:\n  web:\n    image: nginx\n", "compose.yaml:1: service:",
     'unknown key "service" (did you mean "services"?)'),
    ("unknown-healthcheck-key", S + "    healthcheck:\n      intervall: 5s\n",
     "compose.yaml:5: services.web.healthcheck.intervall:", 'did you mean "interval"?'),
    ("unknown-depends-key", S + "    depends_on:\n      db: {conditon: service_started}\n"
     "  db:\n    image: postgres\n", "compose.yaml:5: services.web.depends_on.db",
     "conditon"),
    ("unknown-network-key", S + "networks:\n  front:\n    drivr: bridge\n",
     "compose.yaml:6: networks.front.drivr:", 'did you mean "driver"?'),
    # --- bad enums --------------------------------------------------------------------------
    ("restart-sometimes", S + "    restart: sometimes\n", "compose.yaml:4: services.web.restart:",
     '"sometimes" is not valid (expected one of "no", always'),
    ("condition-ready", S + "    depends_on:\n      db: {condition: service_ready}\n"
     "  db:\n    image: postgres\n", "compose.yaml:5: services.web.depends_on.db.condition:",
     '"service_ready" is not one of'),
    ("volume-type-nfs", S + "    volumes:\n      - {type: nfs, target: /x}\n",
     "compose.yaml:5: services.web.volumes[0].type:", '"nfs" is not one of'),
    ("port-protocol-long", S + "    ports:\n      - {target: 80, protocol: icmp}\n",
     "compose.yaml:5: services.web.ports[0].protocol:", '"icmp" is not one of: tcp, udp'),
    ("pull-policy", S + "    pull_policy: sometimes\n", "compose.yaml:4: services.web.pull_policy:",
     "expected one of always, never"),
    ("watch-action", S + "    develop:\n      watch:\n        - {path: ., action: reload}\n",
     "compose.yaml:6: services.web.develop.watch[0].action:", '"reload" is not one of'),
    ("deploy-mode", S + "    deploy:\n      mode: everywhere\n",
     "compose.yaml:5: services.web.deploy.mode:", '"everywhere" is not one of'),
    ("cgroup-shared", S + "    cgroup: shared\n", "compose.yaml:4: services.web.cgroup:",
     '"shared" is not one of: host, private'),
    # --- ports ------------------------------------------------------------------------------
    ("port-too-many-colons", S + "    ports: ['80:80:80:80']\n",
     "compose.yaml:4: services.web.ports[0]:", '"80:80:80:80" is not a valid port mapping'),
    ("port-out-of-range", S + "    ports: ['99999:80']\n", "compose.yaml:4: services.web.ports[0]:",
     'host port "99999" is out of range'),
    ("port-range-mismatch", S + "    ports: ['8080-8090:80-81']\n",
     "compose.yaml:4: services.web.ports[0]:", "differ in size"),
    ("port-protocol-short", S + "    ports: ['80/icmp']\n",
     "compose.yaml:4: services.web.ports[0]:", 'unknown protocol "icmp"'),
    ("port-not-number", S + "    ports: ['abc:80']\n", "compose.yaml:4: services.web.ports[0]:",
     'host port "abc" is not a port or range'),
    ("port-published-word", S + "    ports:\n      - {target: 80, published: web}\n",
     "compose.yaml:5: services.web.ports[0]:", 'published port "web"'),
    ("port-bad-host-ip", S + "    ports: ['1.2.3:80:80']\n",
     "compose.yaml:4: services.web.ports[0]:", '"1.2.3" is not an IPv4 address'),
    # --- volumes ----------------------------------------------------------------------------
    ("volume-relative-target", S + "    volumes: ['./data:relative/path']\n",
     "compose.yaml:4: services.web.volumes[0]:", "is not absolute"),
    ("volume-bad-mode", S + "    volumes: ['./data:/x:rx']\n",
     "compose.yaml:4: services.web.volumes[0]:", 'unknown mode "rx"'),
    ("volume-too-many-parts", S + "    volumes: ['./a:/b:ro:z']\n",
     "compose.yaml:4: services.web.volumes[0]:", "is not a valid volume"),
    ("volume-undefined", S + "    volumes: ['data:/x']\n",
     "compose.yaml:4: services.web.volumes[0]:", 'volume "data" is not defined'),
    ("volume-empty-source", S + "    volumes: [':/x']\n",
     "compose.yaml:4: services.web.volumes[0]:", "the source is empty"),
    ("volume-ro-rw", S + "    volumes: ['./a:/x:ro,rw']\n",
     "compose.yaml:4: services.web.volumes[0]:", "both ro and rw"),
    # --- durations and sizes ----------------------------------------------------------------
    ("interval-words", S + "    healthcheck:\n      interval: 10 seconds\n",
     "compose.yaml:5: services.web.healthcheck.interval:", '"10 seconds" is not a valid duration'),
    ("grace-days", S + "    stop_grace_period: 1d\n",
     "compose.yaml:4: services.web.stop_grace_period:", '"1d" is not a valid duration'),
    ("timeout-negative", S + "    healthcheck:\n      timeout: -1s\n",
     "compose.yaml:5: services.web.healthcheck.timeout:", "is not a valid duration"),
    ("shm-size-words", S + "    shm_size: 1.5 gigs\n", "compose.yaml:4: services.web.shm_size:",
     '"1.5 gigs" is not a valid byte size'),
    ("mem-limit-word", S + "    mem_limit: lots\n", "compose.yaml:4: services.web.mem_limit:",
     "is not a valid byte size"),
    ("deploy-memory", S + "    deploy:\n      resources:\n        limits:\n          memory: 12x\n",
     "compose.yaml:7: services.web.deploy.resources.limits.memory:", '"12x" is not a valid byte'),
    # --- references -------------------------------------------------------------------------
    ("depends-undefined", S + "    depends_on: [db]\n",
     "compose.yaml:4: services.web.depends_on[0]:",
     'service "web" depends on "db", which is not defined'),
    ("link-undefined", S + "    links: ['db:database']\n", "compose.yaml:4: services.web.links[0]:",
     'links to "db", which is not defined'),
    ("network-mode-undefined", S + "    network_mode: service:vpn\n",
     "compose.yaml:4: services.web.network_mode:", '"vpn", which is not defined'),
    ("volumes-from-undefined", S + "    volumes_from: [data]\n",
     "compose.yaml:4: services.web.volumes_from[0]:", 'mounts volumes from "data"'),
    ("ipc-undefined", S + "    ipc: service:shm\n", "compose.yaml:4: services.web.ipc:",
     '"shm", which is not defined'),
    ("network-undefined", S + "    networks: [front]\n",
     "compose.yaml:4: services.web.networks[0]:",
     'network "front" is not defined'),
    ("secret-undefined", S + "    secrets: [token]\n", "compose.yaml:4: services.web.secrets[0]:",
     'secret "token" is not defined'),
    ("config-undefined", S + "    configs: [{source: nginx_conf}]\n",
     "compose.yaml:4: services.web.configs[0]:", 'config "nginx_conf" is not defined'),
    ("self-dependency", S + "    depends_on: [web]\n",
     "compose.yaml:4: services.web.depends_on[0]:",
     "cannot refer to itself"),
    # --- other semantics --------------------------------------------------------------------
    ("dependency-cycle", "services:\n  api:\n    image: a\n    depends_on: [web]\n"
     "  web:\n    image: w\n    depends_on: [api]\n",
     "compose.yaml:4: services.api.depends_on[0]:", "dependency cycle: api -> web -> api"),
    ("cycle-through-links", "services:\n  a:\n    image: a\n    links: [b]\n"
     "  b:\n    image: b\n    volumes_from: [c]\n  c:\n    image: c\n    network_mode: service:a\n",
     "compose.yaml:4: services.a.links[0]:", "dependency cycle: a -> b -> c -> a"),
    ("duplicate-container-name", "services:\n  a:\n    image: x\n    container_name: box\n"
     "  b:\n    image: x\n    container_name: box\n", "compose.yaml:7: services.b.container_name:",
     'container name "box" is already used by service "a"'),
    ("container-name-scale", S + "    container_name: box\n    scale: 3\n",
     "compose.yaml:4: services.web.container_name:", "cannot be used with 3 replicas"),
    ("network-mode-and-networks", S + "    network_mode: host\n    networks: [default]\n",
     "compose.yaml:4: services.web.network_mode:", "cannot be used together"),
    ("no-image-no-build", "services:\n  web:\n    command: [echo]\n",
     "compose.yaml:2: services.web:",
     "neither an image nor a build context"),
    ("healthcheck-test-kind", S + "    healthcheck:\n      test: [RUN, curl]\n",
     "compose.yaml:5: services.web.healthcheck.test[0]:", '"RUN" is not a healthcheck test kind'),
    ("extra-host-no-address", S + "    extra_hosts: [justahost]\n",
     "compose.yaml:4: services.web.extra_hosts[0]:", "is not a valid extra host"),
    ("expose-protocol", S + "    expose: ['80/icmp']\n", "compose.yaml:4: services.web.expose[0]:",
     'unknown protocol "icmp"'),
    ("ulimit-soft-above-hard", S + "    ulimits:\n      nofile: {soft: 10, hard: 5}\n",
     "compose.yaml:5: services.web.ulimits.nofile:", "soft limit 10 is above hard limit 5"),
    ("secret-without-source", S + "secrets:\n  token: {labels: {a: b}}\n",
     "compose.yaml:5: secrets.token:", "needs one of: file, environment, external"),
    ("external-volume-driver", S + "volumes:\n  data:\n    external: true\n    driver: local\n",
     "compose.yaml:7: volumes.data.driver:", "cannot also set driver"),
    ("command-unbalanced-quote", S + "    command: echo 'hello\n",
     "compose.yaml:4: services.web.command:", "No closing quotation"),
    ("profile-disabled-dependency", S + "    depends_on: [db]\n  db:\n    image: postgres\n"
     "    profiles: [debug]\n", "compose.yaml:4: services.web.depends_on[0]:",
     'needs "db", which is disabled by profiles (enable one of: debug)'),
    # --- front half: names, interpolation, env files, extends, include ---------------------
    ("invalid-project-name", "name: My App\n" + S, "compose.yaml:1: name:", "My App"),
    ("required-variable",
     S + "    environment:\n      A: ${SHIPYARD_TEST_UNSET_VAR:?must be set}\n",
     "compose.yaml:5: services.web.environment.A:", "must be set"),
    ("bad-interpolation", S + "    environment:\n      A: ${SHIPYARD_TEST_UNSET_VAR\n",
     "compose.yaml:5: services.web.environment.A:", "invalid interpolation format"),
    ("missing-env-file", S + "    env_file: ./missing.env\n",
     "compose.yaml:4: services.web.env_file:", "not found"),
    ("missing-extends-target", S + "  api:\n    extends: {service: nowhere}\n",
     "compose.yaml:5: services.api.extends", "nowhere"),
    ("include-cycle", "include: [other.yaml]\n" + S, "other.yaml:1: include", "cycle",
     {"other.yaml": "include: [compose.yaml]\n"}),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_broken_input_is_one_clear_error(case: tuple, tmp_path, monkeypatch, capsys) -> None:
    _, text, prefix, fragment, *rest = case
    files = {"compose.yaml": text, **(rest[0] if rest else {})}
    for name, content in files.items():
        (tmp_path / name).write_text(textwrap.dedent(content))
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SHIPYARD_TEST_UNSET_VAR", raising=False)
    code = main(["-f", "compose.yaml", "config", "-q"])
    err = capsys.readouterr().err
    assert code == 1, err
    assert "Traceback" not in err
    first = err.splitlines()[0] if err else ""
    assert first.startswith(prefix), err
    assert fragment in err, err


def test_there_are_at_least_sixty_cases() -> None:
    assert len({c[0] for c in CASES}) == len(CASES) >= 60


def test_every_problem_is_reported_at_once(tmp_path, monkeypatch, capsys) -> None:
    (tmp_path / "compose.yaml").write_text(
        "services:\n  web:\n    imagee: nginx\n    restart: sometimes\n"
        "  db:\n    image: [postgres]\n")
    monkeypatch.chdir(tmp_path)
    assert main(["-f", "compose.yaml", "config", "-q"]) == 1
    lines = capsys.readouterr().err.splitlines()
    assert lines == [
        'compose.yaml:3: services.web.imagee: unknown key "imagee" (did you mean "image"?)',
        'compose.yaml:4: services.web.restart: "sometimes" is not valid (expected one of '
        '"no", always, on-failure[:MAX_RETRIES], unless-stopped)',
        "compose.yaml:6: services.db.image: expected a string, got a list",
    ]
