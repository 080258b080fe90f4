"""Runtime pieces that need no root: cgroup layouts and knobs (on a fake tree), mount option
parsing, symlink-safe joins, the state file format, capabilities, seccomp data, log reading."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from engine.runtime import caps, cgroups, init, logs, rootpath, seccomp, syscalls
from engine.runtime import state as st

HYBRID = """\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
"""
PURE_V2 = "30 23 0:26 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n"


def test_hierarchies_hybrid_and_v2() -> None:
    assert cgroups.hierarchies(HYBRID) == {
        "cpu": "/sys/fs/cgroup/cpu,cpuacct", "cpuacct": "/sys/fs/cgroup/cpu,cpuacct",
        "memory": "/sys/fs/cgroup/memory", "name=systemd": "/sys/fs/cgroup/systemd"}
    assert cgroups.hierarchies(PURE_V2) == {"unified": "/sys/fs/cgroup"}
    cg = cgroups.Cgroup("shipyard/abc", cgroups.hierarchies(HYBRID))
    assert cg.dirs() == ["/sys/fs/cgroup/cpu,cpuacct/shipyard/abc",
                         "/sys/fs/cgroup/memory/shipyard/abc",
                         "/sys/fs/cgroup/systemd/shipyard/abc"]


def _fake_v1(tmp_path: Path) -> dict[str, str]:
    mounts = {}
    for ctrl in ("memory", "cpu", "pids", "devices", "freezer"):
        root = tmp_path / ctrl
        root.mkdir()
        mounts[ctrl] = str(root)
    return mounts


def _knobs(root: Path, files: dict[str, list[str]], leaf: str) -> None:
    """cgroupfs has every knob already; the fake tree needs them made."""
    for ctrl, names in files.items():
        for name in names:
            (root / ctrl / leaf / name).write_text("")


def test_v1_limits_are_written_to_the_right_knobs(tmp_path: Path) -> None:
    cg = cgroups.Cgroup("/parent/c1", _fake_v1(tmp_path))
    cg.create()
    _knobs(tmp_path, {"memory": ["memory.limit_in_bytes", "memory.memsw.limit_in_bytes"],
                      "cpu": ["cpu.cfs_quota_us", "cpu.cfs_period_us", "cpu.shares"],
                      "pids": ["pids.max"], "devices": ["devices.allow", "devices.deny"]},
           "parent/c1")
    cg.apply({"memory": {"limit": 1000, "swap": 2000},
              "cpu": {"quota": 50000, "period": 100000, "shares": 256},
              "pids": {"limit": 7},
              "devices": [{"allow": False, "access": "rwm"},
                          {"allow": True, "type": "c", "major": 1, "minor": 3,
                           "access": "rwm"},
                          {"allow": True, "type": "c", "major": 136, "access": "rwm"}]})
    d = tmp_path / "memory/parent/c1"
    assert (d / "memory.limit_in_bytes").read_text() == "1000"
    assert (d / "memory.memsw.limit_in_bytes").read_text() == "2000"
    assert (tmp_path / "cpu/parent/c1/cpu.cfs_quota_us").read_text() == "50000"
    assert (tmp_path / "cpu/parent/c1/cpu.shares").read_text() == "256"
    assert (tmp_path / "pids/parent/c1/pids.max").read_text() == "7"
    # each write replaces the fake file: the last allow rule is what remains
    assert (tmp_path / "devices/parent/c1/devices.allow").read_text() == "c 136:* rwm"
    assert (tmp_path / "devices/parent/c1/devices.deny").read_text() == "a"
    assert cg.memory_limit() == 1000


def test_v2_limits(tmp_path: Path) -> None:
    (tmp_path / "cgroup.controllers").write_text("cpu memory pids")
    (tmp_path / "cgroup.subtree_control").write_text("")
    cg = cgroups.Cgroup("/c2", {"unified": str(tmp_path)})
    cg.create()
    _knobs(tmp_path, {".": ["memory.max", "memory.swap.max", "cpu.max", "cpu.weight",
                            "pids.max"]}, "c2")
    cg.apply({"memory": {"limit": 1000, "swap": 3000}, "cpu": {"quota": 20000, "shares": 1024},
              "pids": {"limit": 5}})
    d = tmp_path / "c2"
    assert (d / "memory.max").read_text() == "1000"
    assert (d / "memory.swap.max").read_text() == "2000"
    assert (d / "cpu.max").read_text() == "20000 100000"
    assert (d / "cpu.weight").read_text() == "39"
    assert (d / "pids.max").read_text() == "5"
    assert (tmp_path / "cgroup.subtree_control").read_text() == "+cpu +memory +pids"


def test_remove_prunes_empty_parents_but_not_the_root(tmp_path: Path) -> None:
    mounts = _fake_v1(tmp_path)
    cg = cgroups.Cgroup("/a/b/c", mounts)
    cg.create()
    other = cgroups.Cgroup("/a/other", mounts)
    other.create()
    cg.remove()
    assert not (tmp_path / "memory/a/b").exists()
    assert (tmp_path / "memory/a/other").is_dir()  # a neighbour keeps the shared parent
    other.remove()
    assert not (tmp_path / "memory/a").exists()
    assert (tmp_path / "memory").is_dir()


def test_mount_options() -> None:
    S = syscalls
    flags, prop, data = init.parse_options(["ro", "nosuid", "rbind", "rprivate", "mode=755",
                                            "size=1m", "z"])
    assert flags == S.MS_RDONLY | S.MS_NOSUID | S.MS_BIND | S.MS_REC
    assert prop == S.MS_PRIVATE | S.MS_REC
    assert data == "mode=755,size=1m"
    assert init.parse_options(["ro", "rw"])[0] == 0


def test_secure_join_keeps_symlinks_inside_the_root(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    (root / "etc/evil").symlink_to("/etc/passwd")
    (root / "up").symlink_to("../../../..")
    (root / "rel").symlink_to("etc")
    assert rootpath.secure_join(str(root), "/etc/evil") == f"{root}/etc/passwd"
    assert rootpath.secure_join(str(root), "/up/etc/x") == f"{root}/etc/x"
    assert rootpath.secure_join(str(root), "/rel/hosts") == f"{root}/etc/hosts"
    (root / "loop").symlink_to("loop")
    with pytest.raises(OSError, match="too many levels"):
        rootpath.secure_join(str(root), "/loop")


def test_find_executable(tmp_path: Path) -> None:
    exe = tmp_path / "tool"
    exe.write_text("#!/bin/sh\n")
    exe.chmod(0o755)
    assert init.find_executable("tool", [f"PATH=/nonexistent:{tmp_path}"]) == str(exe)
    assert init.find_executable("/abs", []) == "/abs"
    with pytest.raises(init.InitError, match=r'exec "nope": executable file not found in \$PATH'):
        init.find_executable("nope", [f"PATH={tmp_path}"])


def test_state_json_roundtrip_and_atomic_write(tmp_path: Path) -> None:
    value = {"a": [1, 2.5, None, True, "é\n"], "b": {"c": ""}}
    assert st.loads(st.dumps(value)) == value
    st.write(str(tmp_path), value)
    assert st.read(str(tmp_path)) == value
    assert os.listdir(tmp_path) == ["state.json"]
    assert st.read(str(tmp_path / "missing")) is None
    with pytest.raises(ValueError):
        st.loads('{"a": 1} x')
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z", st.now())


def test_liveness_uses_start_time() -> None:
    me = os.getpid()
    started = st.start_time(me)
    assert st.alive(me, started)
    assert not st.alive(me, started + 1)  # same pid, another process
    assert not st.alive(0, None)


def test_caps() -> None:
    assert caps.normalize("net_admin") == "CAP_NET_ADMIN"
    with pytest.raises(caps.UnknownCapability):
        caps.normalize("nope")
    assert caps.mask(["CAP_CHOWN", "CAP_KILL"]) == 0b100001
    assert caps.names(0b100001) == ["CAP_CHOWN", "CAP_KILL"]
    assert caps.mask(["CAP_CHECKPOINT_RESTORE"], last_cap=39) == 0


def test_seccomp_profile_shape() -> None:
    p = seccomp.profile(list(caps.DEFAULT))
    assert p["defaultAction"] == "SCMP_ACT_ALLOW"
    assert p["architectures"][0] == "SCMP_ARCH_X86_64"
    clone = [r for r in p["syscalls"] if r["names"] == ["clone"]]
    assert len(clone) == len(seccomp.CLONE_NS_FLAGS)
    assert all(r["args"][0]["op"] == "SCMP_CMP_MASKED_EQ" for r in clone)
    clone3 = next(r for r in p["syscalls"] if r["names"] == ["clone3"])
    assert clone3["errnoRet"] == 38  # ENOSYS: libc falls back to clone


def test_syscall_errors_carry_errno_and_context() -> None:
    with pytest.raises(OSError) as info:
        syscalls.unshare(0x1)  # not a namespace flag
    assert info.value.errno == 22
    assert "unshare(0x1)" in str(info.value)


def test_logs_read_tail_since(tmp_path: Path) -> None:
    (tmp_path / "shim.json").write_text('{"id": "c1"}')
    lines = [st.dumps({"log": f"line {i}\n", "stream": "stdout" if i % 2 else "stderr",
                       "time": f"2024-01-01T00:00:0{i}.000000000Z"}) for i in range(6)]
    (tmp_path / "c1-json.log").write_text("\n".join(lines) + "\n" + '{"log": "torn')
    assert [e.text for e in logs.read(tmp_path)] == [f"line {i}\n" for i in range(6)]
    # the torn line (being written) is not a line yet: the tail counts complete ones
    assert [e.text for e in logs.read(tmp_path, tail=2)] == ["line 4\n", "line 5\n"]
    assert [e.text for e in logs.read(tmp_path, tail=1)] == ["line 5\n"]
    assert [e.text for e in logs.read(tmp_path, tail=0)] == []
    assert [e.text for e in logs.read(tmp_path, since="2024-01-01T00:00:04Z")] == [
        "line 4\n", "line 5\n"]
    assert [e.stream for e in logs.read(tmp_path, streams=("stderr",))] == ["stderr"] * 3
    follow = list(logs.follow(tmp_path, tail=1, running=lambda: False))
    assert [e.text for e in follow] == ["line 5\n"]  # and not the torn one


def test_logs_follow_joins_a_line_torn_when_it_began(tmp_path: Path) -> None:
    # The line being written when `follow` opened the file is finished afterwards: it is
    # one entry (the follower goes on from the exact end of what it read first).
    (tmp_path / "shim.json").write_text('{"id": "c1"}')
    log = tmp_path / "c1-json.log"
    whole = st.dumps({"log": "second\n", "stream": "stdout", "time": "t"})
    log.write_text(st.dumps({"log": "first\n", "stream": "stdout", "time": "t"}) + "\n"
                   + whole[:10])
    ended = []
    entries = logs.follow(tmp_path, running=lambda: not ended, poll=0.01)
    assert next(entries).text == "first\n"
    with log.open("a") as f:
        f.write(whole[10:] + "\n")
    ended.append(True)
    assert [e.text for e in entries] == ["second\n"]
