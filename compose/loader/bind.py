"""Canonical project dict -> `compose.model.Project`. Raw dicts end here.

The input is what canonical.py produced (long syntax, casts done, durations as Go-style
strings, sizes as ints), so binding only converts types; it does not re-validate.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from compose import model
from compose.loader import units


def _map(value: Mapping[str, Any] | None) -> Mapping[str, Any]:
    return model.FrozenMap(value) if value else model.EMPTY


def _tuple(value: Any) -> tuple[Any, ...]:
    if value is None:
        return ()
    return (value,) if isinstance(value, str) else tuple(value)


def _seconds(value: Any) -> float | None:
    return None if value is None else units.parse_duration(value)


def _text_map(value: Mapping[str, Any] | None) -> Mapping[str, Any]:
    return _map({k: (None if v is None else str(v)) for k, v in (value or {}).items()})


def _file_ref(ref: Mapping[str, Any]) -> model.FileRef:
    mode = ref.get("mode")
    if isinstance(mode, str):
        mode = int(mode, 8)
    return model.FileRef(source=ref["source"], target=ref.get("target"),
                         uid=None if ref.get("uid") is None else str(ref["uid"]),
                         gid=None if ref.get("gid") is None else str(ref["gid"]), mode=mode)


def _build(value: Mapping[str, Any] | None) -> model.Build | None:
    if value is None:
        return None
    return model.Build(
        context=value["context"], dockerfile=value.get("dockerfile"),
        dockerfile_inline=value.get("dockerfile_inline"), args=_text_map(value.get("args")),
        target=value.get("target"), labels=_text_map(value.get("labels")),
        cache_from=_tuple(value.get("cache_from")), cache_to=_tuple(value.get("cache_to")),
        no_cache=bool(value.get("no_cache")), pull=bool(value.get("pull")),
        network=value.get("network"), shm_size=value.get("shm_size"),
        extra_hosts=_map({h: tuple(a) for h, a in (value.get("extra_hosts") or {}).items()}),
        tags=_tuple(value.get("tags")), platforms=_tuple(value.get("platforms")),
        additional_contexts=_text_map(value.get("additional_contexts")),
        secrets=tuple(_file_ref(r) for r in value.get("secrets") or ()),
        ssh=_text_map(value.get("ssh")), privileged=bool(value.get("privileged")))


def _mount(value: Mapping[str, Any]) -> model.Mount:
    bind = value.get("bind") or {}
    volume = value.get("volume") or {}
    tmpfs = value.get("tmpfs") or {}
    image = value.get("image") or {}
    mode = tmpfs.get("mode")
    if isinstance(mode, str):
        mode = int(mode, 8)
    return model.Mount(
        type=value["type"], target=value["target"], source=value.get("source"),
        read_only=bool(value.get("read_only")), consistency=value.get("consistency"),
        propagation=bind.get("propagation"),
        create_host_path=bind.get("create_host_path", True) is not False,
        selinux=bind.get("selinux"), nocopy=bool(volume.get("nocopy")),
        subpath=volume.get("subpath") or image.get("subpath"),
        tmpfs_size=tmpfs.get("size"), tmpfs_mode=mode)


def _port(value: Mapping[str, Any]) -> model.Port:
    return model.Port(target=int(value["target"]), published=value.get("published"),
                      host_ip=value.get("host_ip"), protocol=value.get("protocol", "tcp"),
                      mode=value.get("mode", "ingress"), name=value.get("name"),
                      app_protocol=value.get("app_protocol"))


def _network(name: str, value: Mapping[str, Any] | None) -> model.ServiceNetwork:
    value = value or {}
    return model.ServiceNetwork(
        name=name, aliases=_tuple(value.get("aliases")),
        ipv4_address=value.get("ipv4_address"), ipv6_address=value.get("ipv6_address"),
        mac_address=value.get("mac_address"), priority=int(value.get("priority") or 0),
        gw_priority=int(value.get("gw_priority") or 0),
        link_local_ips=_tuple(value.get("link_local_ips")),
        interface_name=value.get("interface_name"),
        driver_opts=_text_map(value.get("driver_opts")))


def _healthcheck(value: Mapping[str, Any] | None) -> model.Healthcheck | None:
    if value is None:
        return None
    return model.Healthcheck(
        test=_tuple(value.get("test")), interval=_seconds(value.get("interval")),
        timeout=_seconds(value.get("timeout")), start_period=_seconds(value.get("start_period")),
        start_interval=_seconds(value.get("start_interval")), retries=value.get("retries"),
        disable=bool(value.get("disable")))


def _resources(value: Mapping[str, Any] | None) -> model.Resources:
    value = value or {}
    cpus = value.get("cpus")
    return model.Resources(cpus=None if cpus is None else float(cpus),
                           memory=value.get("memory"), pids=value.get("pids"))


def _deploy(value: Mapping[str, Any] | None) -> model.Deploy | None:
    if value is None:
        return None
    resources = value.get("resources") or {}
    policy = value.get("restart_policy")
    return model.Deploy(
        mode=value.get("mode", "replicated"), replicas=value.get("replicas"),
        limits=_resources(resources.get("limits")),
        reservations=_resources(resources.get("reservations")),
        restart_policy=None if policy is None else model.RestartPolicy(
            condition=policy.get("condition", "any"), delay=_seconds(policy.get("delay")),
            max_attempts=policy.get("max_attempts"), window=_seconds(policy.get("window"))),
        labels=_text_map(value.get("labels")))


def _restart(value: Mapping[str, Any], deploy: model.Deploy | None) -> str:
    """`restart`, or the one `deploy.restart_policy` implies, as docker compose derives it."""
    if value.get("restart"):
        return value["restart"]
    policy = deploy.restart_policy if deploy else None
    if policy is None:
        return "no"
    if policy.condition == "on-failure":
        return f"on-failure:{policy.max_attempts}" if policy.max_attempts else "on-failure"
    return "no" if policy.condition == "none" else "always"


def _hook(value: Mapping[str, Any]) -> model.Hook:
    return model.Hook(command=_tuple(value.get("command")), user=value.get("user"),
                      privileged=bool(value.get("privileged")),
                      working_dir=value.get("working_dir"),
                      environment=_text_map(value.get("environment")))


def _device(value: Any) -> str:
    if isinstance(value, str):
        return value
    parts = [value["source"], value.get("target") or value["source"]]
    if value.get("permissions"):
        parts.append(value["permissions"])
    return ":".join(parts)


def bind_service(name: str, s: Mapping[str, Any]) -> model.Service:
    deploy = _deploy(s.get("deploy"))
    scale = s.get("scale")
    if scale is None:
        scale = deploy.replicas if deploy and deploy.replicas is not None else 1
    command, entrypoint = s.get("command"), s.get("entrypoint")
    logging = s.get("logging")
    return model.Service(
        name=name, image=s.get("image"), build=_build(s.get("build")),
        command=None if command is None else tuple(command),
        entrypoint=None if entrypoint is None else tuple(entrypoint),
        environment=_text_map(s.get("environment")),
        ports=tuple(_port(p) for p in s.get("ports") or ()), expose=_tuple(s.get("expose")),
        volumes=tuple(_mount(v) for v in s.get("volumes") or ()), tmpfs=_tuple(s.get("tmpfs")),
        networks=_map({n: _network(n, v) for n, v in (s.get("networks") or {}).items()}),
        network_mode=s.get("network_mode"),
        depends_on=_map({n: model.DependsOn(condition=d["condition"],
                                            required=bool(d.get("required", True)),
                                            restart=bool(d.get("restart", False)))
                         for n, d in (s.get("depends_on") or {}).items()}),
        links=_tuple(s.get("links")), external_links=_tuple(s.get("external_links")),
        volumes_from=_tuple(s.get("volumes_from")), healthcheck=_healthcheck(s.get("healthcheck")),
        restart=_restart(s, deploy), deploy=deploy, scale=int(scale), user=s.get("user"),
        working_dir=s.get("working_dir"), hostname=s.get("hostname"),
        domainname=s.get("domainname"), dns=_tuple(s.get("dns")), dns_opt=_tuple(s.get("dns_opt")),
        dns_search=_tuple(s.get("dns_search")),
        extra_hosts=_map({h: tuple(a) for h, a in (s.get("extra_hosts") or {}).items()}),
        cap_add=_tuple(s.get("cap_add")), cap_drop=_tuple(s.get("cap_drop")),
        privileged=bool(s.get("privileged")), read_only=bool(s.get("read_only")),
        init=bool(s.get("init")), stop_signal=s.get("stop_signal"),
        stop_grace_period=_seconds(s.get("stop_grace_period")),
        ulimits=_map({k: model.Ulimit(int(v["soft"]), int(v["hard"]))
                      for k, v in (s.get("ulimits") or {}).items()}),
        sysctls=_text_map(s.get("sysctls")), shm_size=s.get("shm_size"),
        mem_limit=s.get("mem_limit"), mem_reservation=s.get("mem_reservation"),
        memswap_limit=s.get("memswap_limit"),
        cpus=None if s.get("cpus") is None else float(s["cpus"]),
        cpu_shares=s.get("cpu_shares"), cpuset=s.get("cpuset"), pids_limit=s.get("pids_limit"),
        oom_score_adj=s.get("oom_score_adj"), labels=_text_map(s.get("labels")),
        annotations=_text_map(s.get("annotations")), container_name=s.get("container_name"),
        ipc=s.get("ipc"), pid=s.get("pid"), uts=s.get("uts"), userns_mode=s.get("userns_mode"),
        cgroup=s.get("cgroup"), cgroup_parent=s.get("cgroup_parent"),
        devices=tuple(_device(d) for d in s.get("devices") or ()),
        group_add=_tuple(s.get("group_add")), security_opt=_tuple(s.get("security_opt")),
        secrets=tuple(_file_ref(r) for r in s.get("secrets") or ()),
        configs=tuple(_file_ref(r) for r in s.get("configs") or ()),
        profiles=_tuple(s.get("profiles")), pull_policy=s.get("pull_policy") or "missing",
        platform=s.get("platform"), tty=bool(s.get("tty")), stdin_open=bool(s.get("stdin_open")),
        logging=None if logging is None else model.Logging(
            driver=logging.get("driver"), options=_text_map(logging.get("options"))),
        post_start=tuple(_hook(h) for h in s.get("post_start") or ()),
        pre_stop=tuple(_hook(h) for h in s.get("pre_stop") or ()),
        runtime=s.get("runtime"), mac_address=s.get("mac_address"),
        extensions=_map({k: v for k, v in s.items() if k.startswith("x-")}))


def _ipam(value: Mapping[str, Any]) -> model.IpamConfig:
    return model.IpamConfig(subnet=value.get("subnet"), ip_range=value.get("ip_range"),
                            gateway=value.get("gateway"),
                            aux_addresses=_text_map(value.get("aux_addresses")))


def bind_network(key: str, n: Mapping[str, Any]) -> model.Network:
    ipam = n.get("ipam") or {}
    return model.Network(
        key=key, name=n["name"], driver=n.get("driver"),
        driver_opts=_text_map(n.get("driver_opts")),
        ipam_driver=ipam.get("driver"), ipam=tuple(_ipam(c) for c in ipam.get("config") or ()),
        external=bool(n.get("external")), internal=bool(n.get("internal")),
        enable_ipv4=n.get("enable_ipv4", True) is not False,
        enable_ipv6=bool(n.get("enable_ipv6")), attachable=bool(n.get("attachable")),
        labels=_text_map(n.get("labels")))


def bind_project(canonical: Mapping[str, Any], *, working_dir: str,
                 config_files: tuple[str, ...] = (), environment: Mapping[str, str] | None = None,
                 profiles: tuple[str, ...] = (), warnings: tuple[str, ...] = ()) -> model.Project:
    """The frozen `Project` for a canonical project dict (which it keeps as `canonical`)."""
    def section(kind: str) -> Any:
        return (canonical.get(kind) or {}).items()

    def files(kind: str) -> Mapping[str, model.Secret]:
        return _map({key: model.Secret(key=key, name=v["name"], file=v.get("file"),
                                       environment=v.get("environment"), content=v.get("content"),
                                       external=bool(v.get("external")),
                                       labels=_text_map(v.get("labels")))
                     for key, v in (canonical.get(kind) or {}).items()})

    return model.Project(
        name=canonical["name"], working_dir=working_dir, config_files=tuple(config_files),
        services=_map({n: bind_service(n, s) for n, s in section("services")}),
        networks=_map({k: bind_network(k, v) for k, v in section("networks")}),
        volumes=_map({k: model.Volume(key=k, name=v["name"], driver=v.get("driver"),
                                      driver_opts=_text_map(v.get("driver_opts")),
                                      external=bool(v.get("external")),
                                      labels=_text_map(v.get("labels")))
                      for k, v in section("volumes")}),
        secrets=files("secrets"), configs=files("configs"),
        environment=_map(environment), profiles=tuple(profiles),
        extensions=_map({k: v for k, v in canonical.items() if k.startswith("x-")}),
        warnings=tuple(warnings), canonical=canonical)
