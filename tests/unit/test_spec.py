"""engine.spec: container config + image config -> OCI runtime spec, Docker's semantics."""

from __future__ import annotations

import pytest

from engine.errors import InvalidArgument
from engine.runtime import caps
from engine.spec import (
    DEFAULT_PATH,
    ContainerConfig,
    Healthcheck,
    Mount,
    Resources,
    RestartPolicy,
    Ulimit,
    build_spec,
    command,
    resolve_user,
    shim_options,
    signal_number,
)

PASSWD = ("root:x:0:0:root:/root:/bin/sh\n"
          "www-data:x:33:33:www-data:/var/www:/bin/false\n"
          "app:x:1000:1000::/home/app:/bin/sh\n")
GROUP = "root:x:0:\nwww-data:x:33:\nusers:x:100:app,nobody\nstaff:x:50:app\napp:x:1000:\n"
LIMITS = {"nofile": (1024, 20000), "nproc": (96364, 96364)}


def spec(image: dict | None = None, **kw: object) -> dict:
    config = ContainerConfig(id="0123456789abcdef" * 4, **kw)  # type: ignore[arg-type]
    return build_spec(config, image or {}, "/rootfs", PASSWD, GROUP, host_limits=LIMITS,
                      machine="x86_64")


@pytest.mark.parametrize(("image", "entrypoint", "cmd", "expected"), [
    ({"Entrypoint": ["/ep"], "Cmd": ["a"]}, None, None, ["/ep", "a"]),
    ({"Entrypoint": ["/ep"], "Cmd": ["a"]}, None, ("b",), ["/ep", "b"]),
    # a given entrypoint replaces the image's and drops the image's Cmd
    ({"Entrypoint": ["/ep"], "Cmd": ["a"]}, ("/x",), None, ["/x"]),
    ({"Entrypoint": ["/ep"], "Cmd": ["a"]}, ("/x",), ("c",), ["/x", "c"]),
    # an empty entrypoint list keeps the image's Cmd (Docker's merge), ("",) clears both
    ({"Entrypoint": ["/ep"], "Cmd": ["a"]}, (), None, ["a"]),
    ({"Entrypoint": ["/ep"], "Cmd": ["a"]}, ("",), ("c",), ["c"]),
    ({"Cmd": ["sh"]}, None, None, ["sh"]),
])
def test_entrypoint_and_cmd_merge_like_docker(image, entrypoint, cmd, expected) -> None:
    config = ContainerConfig(id="x", entrypoint=entrypoint, cmd=cmd)
    assert command(config, image) == expected


def test_no_command_is_a_clear_error() -> None:
    with pytest.raises(InvalidArgument, match="no command specified"):
        spec({"Entrypoint": ["/ep"]}, entrypoint=("",))


def test_env_overlay_path_default_and_home() -> None:
    s = spec({"Env": ["A=1", "B=2"], "Cmd": ["sh"]}, env={"B": "3", "C": "4"}, hostname="h")
    env = s["process"]["env"]
    assert env[:2] == [f"PATH={DEFAULT_PATH}", "HOSTNAME=h"]
    assert env[2:] == ["A=1", "B=3", "C=4", "HOME=/root"]
    s = spec({"Env": ["PATH=/opt/bin"], "Cmd": ["sh"]}, user="www-data")
    assert "PATH=/opt/bin" in s["process"]["env"]
    assert "HOME=/var/www" in s["process"]["env"]


@pytest.mark.parametrize(("user", "expected"), [
    ("", (0, 0, [0], "/root")),
    ("www-data", (33, 33, [33], "/var/www")),
    ("33", (33, 33, [33], "/var/www")),
    ("app", (1000, 1000, [1000, 50, 100], "/home/app")),
    ("app:users", (1000, 100, [100], "/home/app")),
    ("4242", (4242, 0, [0], "/")),
    ("4242:77", (4242, 77, [77], "/")),
])
def test_user_resolution(user, expected) -> None:
    assert resolve_user(user, PASSWD, GROUP) == expected


def test_unknown_user_and_group_are_clear_errors() -> None:
    with pytest.raises(InvalidArgument, match="unable to find user nosuch: no matching "
                                              "entries in passwd file"):
        spec({"Cmd": ["sh"]}, user="nosuch")
    with pytest.raises(InvalidArgument, match="unable to find group nogroup"):
        spec({"Cmd": ["sh"]}, user="app:nogroup")


def test_image_user_is_the_default() -> None:
    s = spec({"Cmd": ["sh"], "User": "www-data"})
    assert s["process"]["user"] == {"uid": 33, "gid": 33, "additionalGids": [33]}


def test_capabilities_default_add_drop_all() -> None:
    s = spec({"Cmd": ["sh"]})
    assert set(s["process"]["capabilities"]["bounding"]) == set(caps.DEFAULT)
    s = spec({"Cmd": ["sh"]}, cap_add=("net_admin",), cap_drop=("CAP_CHOWN", "KILL"))
    bounding = set(s["process"]["capabilities"]["effective"])
    assert bounding == (set(caps.DEFAULT) | {"CAP_NET_ADMIN"}) - {"CAP_CHOWN", "CAP_KILL"}
    s = spec({"Cmd": ["sh"]}, cap_drop=("ALL",), cap_add=("NET_BIND_SERVICE",))
    assert s["process"]["capabilities"]["permitted"] == ["CAP_NET_BIND_SERVICE"]
    s = spec({"Cmd": ["sh"]}, cap_add=("ALL",))
    assert len(s["process"]["capabilities"]["bounding"]) == len(caps.NUMBERS)
    with pytest.raises(InvalidArgument, match="unknown capability: 'CAP_FLY'"):
        spec({"Cmd": ["sh"]}, cap_add=("CAP_FLY",))


def test_rlimits_stay_within_the_callers_hard_limits() -> None:
    s = spec({"Cmd": ["sh"]}, ulimits=(Ulimit("nproc", 500, 100000),))
    limits = {r["type"]: (r["soft"], r["hard"]) for r in s["process"]["rlimits"]}
    assert limits == {"RLIMIT_NOFILE": (20000, 20000), "RLIMIT_NPROC": (500, 96364)}
    with pytest.raises(InvalidArgument, match="unknown resource"):
        spec({"Cmd": ["sh"]}, ulimits=(Ulimit("bogus", 1, 1),))


def test_default_mounts_shm_size_and_overrides() -> None:
    s = spec({"Cmd": ["sh"]}, resources=Resources(shm_size=1 << 20),
             mounts=(Mount("/data", "bind", "/srv/data", ("rbind", "ro")),
                     Mount("/dev/shm", "tmpfs", "tmpfs", ("size=2m",))),
             hosts_file="/c/hosts")
    by_dest = {m["destination"]: m for m in s["mounts"]}
    assert [m["destination"] for m in s["mounts"]][:6] == [
        "/proc", "/dev", "/dev/pts", "/sys", "/sys/fs/cgroup", "/dev/mqueue"]
    assert "newinstance" in by_dest["/dev/pts"]["options"]
    assert "ptmxmode=0666" in by_dest["/dev/pts"]["options"]
    assert by_dest["/dev/shm"]["options"] == ["size=2m"]  # the given mount wins
    assert by_dest["/data"]["source"] == "/srv/data"
    assert by_dest["/etc/hosts"] == {"destination": "/etc/hosts", "type": "bind",
                                     "source": "/c/hosts", "options": ["rbind", "rprivate"]}
    s = spec({"Cmd": ["sh"]}, resources=Resources(shm_size=1 << 20))
    shm = next(m for m in s["mounts"] if m["destination"] == "/dev/shm")
    assert f"size={1 << 20}" in shm["options"]


def test_namespaces_network_path_and_host() -> None:
    s = spec({"Cmd": ["sh"]}, network="/run/netns/x")
    assert s["linux"]["namespaces"] == [
        {"type": "pid"}, {"type": "network", "path": "/run/netns/x"}, {"type": "ipc"},
        {"type": "uts"}, {"type": "mount"}, {"type": "cgroup"}]
    s = spec({"Cmd": ["sh"]}, network="host", namespaces={"pid": "host"})
    assert [n["type"] for n in s["linux"]["namespaces"]] == ["ipc", "uts", "mount", "cgroup"]
    assert [n for n in spec({"Cmd": ["sh"]})["linux"]["namespaces"]
            if n["type"] == "network"] == [{"type": "network"}]


def test_resources_docker_semantics() -> None:
    r = spec({"Cmd": ["sh"]}, resources=Resources(memory=100, cpus=1.5, cpu_shares=512,
                                                   pids_limit=10))["linux"]["resources"]
    assert r["memory"] == {"limit": 100, "swap": 200}  # unset swap: twice the memory
    assert r["cpu"] == {"period": 100000, "quota": 150000, "shares": 512}
    assert r["pids"] == {"limit": 10}
    assert r["devices"][0] == {"allow": False, "access": "rwm"}
    r = spec({"Cmd": ["sh"]}, resources=Resources(memory=100, memory_swap=-1))
    assert r["linux"]["resources"]["memory"]["swap"] == -1
    with pytest.raises(InvalidArgument, match="memory_swap must be at least memory"):
        spec({"Cmd": ["sh"]}, resources=Resources(memory=100, memory_swap=50))


def test_security_options_seccomp_and_masking() -> None:
    s = spec({"Cmd": ["sh"]})
    assert s["process"]["noNewPrivileges"] is False
    assert "/proc/kcore" in s["linux"]["maskedPaths"]
    assert "/proc/sys" in s["linux"]["readonlyPaths"]
    denied = {n for r in s["linux"]["seccomp"]["syscalls"] for n in r["names"]}
    assert {"mount", "kexec_load", "bpf", "unshare"} <= denied
    s = spec({"Cmd": ["sh"]}, security_opt=("no-new-privileges", "seccomp=unconfined"))
    assert s["process"]["noNewPrivileges"] is True
    assert "seccomp" not in s["linux"]
    s = spec({"Cmd": ["sh"]}, cap_add=("SYS_ADMIN",))
    denied = {n for r in s["linux"]["seccomp"]["syscalls"] for n in r["names"]}
    assert "mount" not in denied and "kexec_load" in denied
    with pytest.raises(InvalidArgument, match="unknown option"):
        spec({"Cmd": ["sh"]}, security_opt=("bogus",))


def test_privileged_has_everything_and_no_masks() -> None:
    s = spec({"Cmd": ["sh"]}, privileged=True)
    assert "maskedPaths" not in s["linux"] and "seccomp" not in s["linux"]
    assert len(s["process"]["capabilities"]["bounding"]) == len(caps.NUMBERS)
    sysfs = next(m for m in s["mounts"] if m["type"] == "sysfs")
    assert "ro" not in sysfs["options"]


def test_spec_top_level_fields() -> None:
    s = spec({"Cmd": ["sh"], "WorkingDir": "/w"}, read_only=True, tty=True,
             domainname="example.org", sysctls={"net.core.somaxconn": "1024"})
    assert s["ociVersion"].startswith("1.")
    assert s["root"] == {"path": "/rootfs", "readonly": True}
    assert s["hostname"] == "0123456789ab"
    assert s["domainname"] == "example.org"
    assert s["process"]["terminal"] is True
    assert "TERM=xterm" in s["process"]["env"]
    assert s["process"]["cwd"] == "/w"
    assert s["linux"]["sysctl"] == {"net.core.somaxconn": "1024"}
    assert s["linux"]["cgroupsPath"] == "/shipyard/" + "0123456789abcdef" * 4


def test_shim_options() -> None:
    config = ContainerConfig(
        id="x", stop_signal="SIGQUIT", stop_timeout=3, restart=RestartPolicy("on-failure", 2),
        healthcheck=Healthcheck(("CMD-SHELL", "curl -f localhost"), interval=1, retries=5))
    opts = shim_options(config)
    assert opts["stop_signal"] == 3 and opts["stop_timeout"] == 3
    assert opts["restart"] == {"name": "on-failure", "max_retries": 2}
    assert opts["healthcheck"]["test"] == ["/bin/sh", "-c", "curl -f localhost"]
    assert opts["healthcheck"]["retries"] == 5
    assert shim_options(ContainerConfig(id="x", healthcheck=Healthcheck(("NONE",))))[
        "healthcheck"] is None
    with pytest.raises(InvalidArgument, match="unknown policy"):
        shim_options(ContainerConfig(id="x", restart=RestartPolicy("sometimes")))
    with pytest.raises(InvalidArgument, match="CMD, CMD-SHELL or NONE"):
        shim_options(ContainerConfig(id="x", healthcheck=Healthcheck(("RUN", "x"))))


@pytest.mark.parametrize(("name", "number"), [("SIGTERM", 15), ("term", 15), ("9", 9),
                                              ("SIGWINCH", 28), (2, 2)])
def test_signal_numbers(name, number) -> None:
    assert signal_number(name) == number


def test_bad_signal() -> None:
    with pytest.raises(InvalidArgument, match="invalid signal: SIGNOPE"):
        signal_number("SIGNOPE")
