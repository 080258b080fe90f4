"""The native runtime on the real kernel: busybox containers through launch (shim + init).

Each test runs containers under its own cgroup parent and ends with a leak check: no
mount, cgroup, process (shim or container) left behind.
"""

from __future__ import annotations

import os
import re
import signal
import time
import uuid
from pathlib import Path

import pytest

from engine.errors import InvalidArgument
from engine.runtime import caps, cgroups, launch, logs
from engine.spec import (
    ContainerConfig,
    Healthcheck,
    Resources,
    RestartPolicy,
    build_spec,
    shim_options,
)
from tests.support import busybox, leaks

pytestmark = pytest.mark.skipif(not busybox.available(), reason="busybox-static is missing")


@pytest.fixture(scope="module")
def rootfs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return busybox.make_rootfs(tmp_path_factory.mktemp("busybox") / "rootfs")


class Runtime:
    def __init__(self, base: Path, rootfs: Path) -> None:
        self.base = base
        self.rootfs = rootfs
        self.parent = f"/shipyard-test-{uuid.uuid4().hex[:8]}"
        self.dirs: list[Path] = []

    def create(self, *cmd: str, **kw: object) -> Path:
        cid = uuid.uuid4().hex + uuid.uuid4().hex
        config = ContainerConfig(id=cid, cmd=cmd, cgroup_parent=self.parent, **kw)  # type: ignore[arg-type]
        spec = build_spec(config, {}, str(self.rootfs), (self.rootfs / "etc/passwd").read_text(),
                          (self.rootfs / "etc/group").read_text())
        d = self.base / cid
        launch.create(d, spec, shim_options(config))
        self.dirs.append(d)
        return d

    def run(self, *cmd: str, **kw: object) -> tuple[int, str]:
        """Starts, waits, returns (exit code, stdout+stderr text from the log)."""
        d = self.create(*cmd, **kw)
        launch.start(d)
        code = launch.wait(d, timeout=30)
        return code, "".join(e.text for e in logs.read(d))

    def cleanup(self) -> None:
        for d in self.dirs:
            launch.stop(d, timeout=0)
            launch.delete(d)


def own_leaks(before: leaks.Snapshot, runtime: Runtime) -> dict[str, list]:
    """The leak diff narrowed to this test's own things: other engineers' tests run on the
    same machine at the same time, so unrelated new processes and cgroups are theirs."""
    marks = [str(runtime.base), runtime.parent, *(d.name for d in runtime.dirs)]
    found = {}
    for kind, items in leaks.diff(before, leaks.snapshot()).items():
        if kind in ("links", "netns"):
            continue  # this runtime makes no links or named netns; others' tests do
        mine = [i for i in items if any(m in str(i) for m in marks)]
        if mine:
            found[kind] = mine
    return found


@pytest.fixture
def rt(tmp_path: Path, rootfs: Path):
    before = leaks.snapshot()
    runtime = Runtime(tmp_path, rootfs)
    try:
        yield runtime
    finally:
        runtime.cleanup()
    assert own_leaks(before, runtime) == {}


def wait_for(predicate, timeout: float = 10.0, step: float = 0.02):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(step)
    raise AssertionError("condition not met in time")


def test_echo_exit_code_and_json_file_log(rt: Runtime) -> None:
    code, _ = rt.run("sh", "-c", "echo out; echo err >&2; exit 3")
    assert code == 3
    d = rt.dirs[0]
    entries = logs.read(d)
    assert sorted((e.stream, e.text) for e in entries) == [("stderr", "err\n"),
                                                           ("stdout", "out\n")]
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z", e.time) for e in entries)
    final = launch.state(d)
    assert (final.status, final.exit_code) == ("exited", 3)
    assert final.started_at <= final.finished_at


def test_exec_failure_is_one_clear_message(rt: Runtime) -> None:
    d = rt.create("/nope")
    with pytest.raises(launch.StartError, match=r'^exec "/nope": no such file in the image$'):
        launch.start(d)
    assert launch.state(d).exit_code == 127
    d = rt.create("nope")
    with pytest.raises(launch.StartError, match=r'executable file not found in \$PATH'):
        launch.start(d)


def test_bad_user_is_a_clear_error(rt: Runtime) -> None:
    with pytest.raises(InvalidArgument, match="unable to find user nosuchuser"):
        rt.create("true", user="nosuchuser")


def test_namespaces_pid1_own_session_hostname(rt: Runtime) -> None:
    code, out = rt.run("sh", "-c", "hostname; echo pid=$$; ps -o pid,sid,pgid,comm; true",
                       hostname="box")
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == "box"
    assert lines[1] == "pid=1"
    sh = next(ln.split() for ln in lines[2:] if ln.split()[-1] == "sh")
    assert sh[:3] == ["1", "1", "1"]


def test_user_groups_and_env(rt: Runtime) -> None:
    code, out = rt.run("sh", "-c", "id; echo $HOME $FOO; pwd", user="www-data",
                       env={"FOO": "bar"}, working_dir="/var/www")
    assert code == 0
    assert out.splitlines() == ["uid=33(www-data) gid=33(www-data) groups=33(www-data)",
                                "/var/www bar", "/var/www"]


def test_capabilities_no_new_privs_seccomp(rt: Runtime) -> None:
    code, out = rt.run("sh", "-c", "grep -E '^(CapEff|CapBnd|NoNewPrivs|Seccomp):' "
                       "/proc/self/status", cap_drop=("NET_RAW",), cap_add=("SYS_TIME",),
                       security_opt=("no-new-privileges:true",))
    assert code == 0
    fields = dict(ln.split(":\t") for ln in out.splitlines())
    expected = (set(caps.DEFAULT) - {"CAP_NET_RAW"}) | {"CAP_SYS_TIME"}
    assert int(fields["CapEff"], 16) == caps.mask(sorted(expected))
    assert fields["CapBnd"] == fields["CapEff"]
    assert fields["NoNewPrivs"] == "1"
    assert fields["Seccomp"] == "2"
    # a non-root user keeps no capabilities, like Docker
    code, out = rt.run("grep", "CapEff", "/proc/self/status", user="nobody")
    assert out.split() == ["CapEff:", "0000000000000000"]


def test_seccomp_denies_and_unconfined_allows(rt: Runtime) -> None:
    _, out = rt.run("sh", "-c", "grep Seccomp: /proc/1/status",
                    security_opt=("seccomp=unconfined",))
    assert out.split()[:2] == ["Seccomp:", "0"]
    # CAP_SYS_ADMIN lifts the filter's ban on mount(2); without it the filter says EPERM
    _, out = rt.run("sh", "-c", "mount -t tmpfs none /tmp 2>&1; echo rc=$?",
                       cap_add=("SYS_ADMIN",))
    assert "rc=0" in out


def test_seccomp_filter_denies_what_caps_would_allow() -> None:
    """In a forked child that is root with every capability, the default profile (for
    Docker's default caps) still refuses unshare(2), mount(2) and namespace clone flags."""
    from engine.runtime import seccomp, syscalls

    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            seccomp.load(seccomp.profile(list(caps.DEFAULT)), set_no_new_privs=True)
            for call in (lambda: syscalls.unshare(syscalls.CLONE_NEWUTS),
                         lambda: syscalls.mount("none", "/nonexistent", "tmpfs")):
                try:
                    call()
                    code |= 1
                except PermissionError:
                    pass
            os.getpid()  # ordinary syscalls still work
        except BaseException:
            code |= 2
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


def test_memory_limit_in_cgroup(rt: Runtime) -> None:
    d = rt.create("sh", "-c", "cat /sys/fs/cgroup/memory/memory.limit_in_bytes "
                  "/sys/fs/cgroup/memory.max 2>/dev/null; sleep 30",
                  resources=Resources(memory=64 * 1024 * 1024, pids_limit=50))
    launch.start(d)
    cg = cgroups.Cgroup(f"{rt.parent}/{d.name}")
    assert cg.memory_limit() == 64 * 1024 * 1024
    wait_for(lambda: logs.read(d))
    assert logs.read(d)[0].text.strip() == str(64 * 1024 * 1024)
    assert launch.state(d).pid in cg.pids()
    launch.stop(d, timeout=0)
    assert not any(os.path.exists(p) for p in cg.dirs())


def test_stop_within_grace_period_then_sigkill(rt: Runtime) -> None:
    graceful = rt.create("sh", "-c", "trap 'echo bye; exit 0' TERM; echo ready; "
                         "while true; do sleep 0.1; done")
    stubborn = rt.create("sh", "-c", "trap '' TERM; while true; do sleep 0.1; done")
    launch.start(graceful)
    launch.start(stubborn)
    wait_for(lambda: logs.read(graceful))  # its trap is set (a TERM before would be lost)
    t = time.monotonic()
    final = launch.stop(graceful, timeout=10)
    assert time.monotonic() - t < 3
    assert (final.status, final.exit_code) == ("exited", 0)
    assert [e.text for e in logs.read(graceful)] == ["ready\n", "bye\n"]
    t = time.monotonic()
    final = launch.stop(stubborn, timeout=1)
    assert 1 <= time.monotonic() - t < 4
    assert final.exit_code == 137


def test_a_stop_asked_ahead_signals_once_and_the_sooner_deadline_holds(rt: Runtime) -> None:
    # `down` asks every container to stop before its steps run (request_stop), then each
    # step asks again (stop): the stop signal goes once, the kill at the sooner deadline.
    counting = rt.create("sh", "-c", "trap 'echo term' TERM; echo ready; "
                         "while true; do sleep 0.1; done")
    launch.start(counting)
    # (a TERM before the trap is set would be lost: PID 1 has no default action)
    wait_for(lambda: [e.text for e in logs.read(counting)] == ["ready\n"])
    launch.request_stop(counting, timeout=30)
    wait_for(lambda: [e.text for e in logs.read(counting)] == ["ready\n", "term\n"])
    t = time.monotonic()
    final = launch.stop(counting, timeout=1)
    assert 1 <= time.monotonic() - t < 4  # killed after 1 s, not 30
    assert final.exit_code == 137
    assert [e.text for e in logs.read(counting)] == ["ready\n", "term\n"]  # signalled once
    launch.request_stop(counting)  # no shim any more: nothing happens, no error


def test_restart_on_failure_twice(rt: Runtime) -> None:
    code, out = rt.run("sh", "-c", "echo run; exit 1",
                       restart=RestartPolicy("on-failure", 2))
    assert code == 1
    assert out == "run\n" * 3
    assert launch.state(rt.dirs[0]).restart_count == 2


def test_restart_always_until_stopped(rt: Runtime) -> None:
    d = rt.create("sh", "-c", "echo run; exit 0", restart=RestartPolicy("always"))
    launch.start(d)
    wait_for(lambda: launch.state(d).restart_count >= 2)
    final = launch.stop(d, timeout=1)
    assert final.status == "exited"


def test_healthcheck_healthy_then_unhealthy_and_exec(rt: Runtime) -> None:
    d = rt.create("sh", "-c", "touch /tmp/ok; exec sleep 60",
                  healthcheck=Healthcheck(("CMD", "test", "-f", "/tmp/ok"), interval=0.2,
                                          timeout=2, retries=2))
    launch.start(d)
    assert launch.state(d).health.status == "starting"
    health = wait_for(lambda: (h := launch.state(d).health) and h.status == "healthy" and h)
    assert health.log[-1].exit_code == 0
    assert launch.exec(d, ["rm", "/tmp/ok"]) == 0
    health = wait_for(lambda: (h := launch.state(d).health) and h.status == "unhealthy" and h)
    assert health.failing_streak >= 2
    assert health.log[-1].exit_code == 1


def test_healthcheck_timeout(rt: Runtime) -> None:
    d = rt.create("sleep", "60", healthcheck=Healthcheck(("CMD-SHELL", "sleep 5"),
                                                         interval=0.1, timeout=0.3, retries=1))
    launch.start(d)
    health = wait_for(lambda: (h := launch.state(d).health) and h.status == "unhealthy" and h)
    assert "exceeded timeout" in health.log[-1].output


def test_exec_env_user_workdir_and_failure(rt: Runtime) -> None:
    d = rt.create("sleep", "60", env={"A": "1"})
    launch.start(d)
    code, out = launch.exec_output(d, ["sh", "-c", "echo $A $B; id -u; pwd; ps -o pid,comm"],
                                   env=["B=2"], user="www-data", workdir="/tmp")
    assert code == 0
    lines = out.splitlines()
    assert lines[:3] == ["1 2", "33", "/tmp"]
    assert any(ln.split() == ["1", "sleep"] for ln in lines[3:])  # same PID namespace
    assert launch.exec_output(d, ["sh", "-c", "exit 7"]) == (7, "")
    with pytest.raises(launch.ExecError, match='exec "/nope": no such file in the image'):
        launch.exec(d, ["/nope"])
    assert [p["cmd"] for p in launch.top(d)] == ["sleep 60"]


def test_pause_unpause(rt: Runtime) -> None:
    d = rt.create("sleep", "60")
    launch.start(d)
    cg = cgroups.Cgroup(f"{rt.parent}/{d.name}")
    launch.pause(d)
    assert launch.state(d).status == "paused"
    assert cg.frozen()
    launch.unpause(d)
    assert launch.state(d).status == "running"
    assert not cg.frozen()
    launch.pause(d)
    final = launch.stop(d, timeout=1)  # a paused container still stops
    assert final.status == "exited"


def test_a_stop_without_grace_kills_every_process_of_the_namespace(rt: Runtime) -> None:
    # PID 1 of its own namespace: killing it takes the rest (no cgroup freeze needed),
    # even those that ignore TERM and left its session.
    d = rt.create("sh", "-c", "trap '' TERM; (trap '' TERM; setsid sleep 300 &); "
                  "sleep 300 & sleep 300")
    launch.start(d)
    cg = cgroups.Cgroup(f"{rt.parent}/{d.name}")
    wait_for(lambda: len(cg.pids()) == 3)  # (sh execs the last sleep)
    t = time.monotonic()
    final = launch.stop(d, timeout=0)
    assert time.monotonic() - t < 3
    assert final.exit_code == 137
    assert not any(os.path.exists(p) for p in cg.dirs())  # emptied, so removed


def test_a_stop_without_grace_in_a_shared_pid_namespace_kills_only_its_own(
        rt: Runtime) -> None:
    # Not PID 1: its init's death takes nothing with it, the cgroup-wide kill does.
    host = rt.create("sleep", "300")
    launch.start(host)
    pid_ns = f"/proc/{launch.state(host).pid}/ns/pid"
    guest = rt.create("sh", "-c", "trap '' TERM; sleep 300 & sleep 300",
                      namespaces={"pid": pid_ns})
    launch.start(guest)
    cg = cgroups.Cgroup(f"{rt.parent}/{guest.name}")
    wait_for(lambda: len(cg.pids()) == 2)
    assert launch.stop(guest, timeout=0).exit_code == 137
    assert not any(os.path.exists(p) for p in cg.dirs())
    assert launch.state(host).status == "running"


def test_a_paused_container_stops_without_grace(rt: Runtime) -> None:
    d = rt.create("sh", "-c", "sleep 300 & sleep 300")
    launch.start(d)
    launch.pause(d)
    t = time.monotonic()
    final = launch.stop(d, timeout=0)
    assert time.monotonic() - t < 3
    assert (final.status, final.exit_code) == ("exited", 137)


def test_init_reaper_forwards_signals(rt: Runtime) -> None:
    d = rt.create("sh", "-c", "echo pid=$$; exec sleep 60", init=True)
    launch.start(d)
    wait_for(lambda: logs.read(d))
    assert logs.read(d)[0].text != "pid=1\n"
    t = time.monotonic()
    final = launch.stop(d, timeout=10)
    assert time.monotonic() - t < 3  # sleep (not PID 1) dies of the forwarded SIGTERM
    assert final.exit_code == 128 + signal.SIGTERM


def test_dead_shim_is_reported_and_cleaned(rt: Runtime) -> None:
    d = rt.create("sleep", "60")
    started = launch.start(d)
    os.kill(started.shim_pid, signal.SIGKILL)
    wait_for(lambda: launch.state(d).status == "dead")
    assert launch.wait(d) == 255
    launch.stop(d)  # kills what is left in the cgroup and removes it
    launch.delete(d)
    assert not any(os.path.exists(p) for p in cgroups.Cgroup(f"{rt.parent}/{d.name}").dirs())


def test_tty_output_is_logged(rt: Runtime) -> None:
    code, out = rt.run("sh", "-c", "tty; echo hi", tty=True)
    assert code == 0
    lines = out.replace("\r", "").splitlines()
    assert lines[-1] == "hi"
    assert "not a tty" not in lines[0]


def test_exec_with_a_terminal_gets_a_container_pty(rt: Runtime) -> None:
    d = rt.create("sleep", "60")
    launch.start(d)
    master, slave = os.openpty()  # stands in for the user's terminal
    try:
        code = launch.exec(d, ["sh", "-c", "tty; exit 5"], tty=True, stdin=slave,
                           stdout=slave, stderr=slave)
        os.set_blocking(master, False)
        out = os.read(master, 4096).decode()
    finally:
        os.close(master)
        os.close(slave)
    assert code == 5
    assert "/dev/pts/0" in out
    with pytest.raises(Exception, match="paused"):
        launch.pause(d)
        launch.exec(d, ["true"])


def test_cgroup_v2_code_on_the_hosts_unified_hierarchy() -> None:
    """This host is hybrid; its cgroup2 mount still exercises the v2 paths: create with
    controller delegation, add, pids, freeze/thaw (cgroup.freeze), kill (cgroup.kill),
    remove with parent pruning."""
    unified = cgroups.hierarchies()
    with open("/proc/self/mountinfo") as f:
        v2 = next((ln.split()[4] for ln in f if " - cgroup2 " in ln), None)
    if v2 is None or unified.get("unified") == v2:
        pytest.skip("no separate cgroup2 mount")
    parent = f"/shipyard-test-{uuid.uuid4().hex[:8]}"
    cg = cgroups.Cgroup(f"{parent}/c", {"unified": v2})
    cg.create()
    pid = os.fork()
    if pid == 0:
        time.sleep(30)
        os._exit(0)
    try:
        cg.add(pid)
        assert cg.pids() == [pid]
        cg.freeze()
        assert cg.frozen()
        cg.thaw()
        assert not cg.frozen()
        cg.kill()
        _, status = os.waitpid(pid, 0)
        assert os.WTERMSIG(status) == signal.SIGKILL
    finally:
        cg.remove()
    assert not os.path.exists(v2 + parent)


def test_follow_logs_until_exit(rt: Runtime) -> None:
    d = rt.create("sh", "-c", "for i in 1 2 3; do echo line $i; sleep 0.1; done")
    launch.start(d)
    assert [e.text for e in logs.follow(d)] == ["line 1\n", "line 2\n", "line 3\n"]
    assert launch.state(d).status == "exited"


def _ns(pid: int, name: str) -> str:
    return os.readlink(f"/proc/{pid}/ns/{name}")


def test_first_process_is_the_shims_child_in_fresh_namespaces(rt: Runtime) -> None:
    """The shim forks the container's PID 1 itself (no intermediate process) and gets its
    own PID namespace back for later children; the cgroup namespace is rooted at the
    container's cgroup, which the process is in by the time it runs."""
    d = rt.create("sh", "-c", "cat /proc/self/cgroup; echo pid=$$; sleep 30")
    state = launch.start(d)
    stat = Path(f"/proc/{state.pid}/stat").read_text().rsplit(")", 1)[1].split()
    assert int(stat[1]) == state.shim_pid
    assert _ns(state.shim_pid, "pid_for_children") == _ns(state.shim_pid, "pid")
    assert _ns(state.pid, "pid") != _ns(state.shim_pid, "pid")
    assert _ns(state.pid, "cgroup") != _ns(state.shim_pid, "cgroup")
    lines = wait_for(lambda: [e.text for e in logs.read(d) if "pid=" in e.text] and
                     [e.text.strip() for e in logs.read(d)])
    assert "pid=1" in lines
    groups = [ln for ln in lines if ln[:1].isdigit()]
    assert groups and all(ln.rsplit(":", 1)[1] == "/" for ln in groups), groups
    cg = cgroups.Cgroup(f"{rt.parent}/{d.name}")
    assert state.pid in cg.pids()


def test_failure_before_the_cgroup_move_is_reported(rt: Runtime) -> None:
    """A container that fails while the shim moves it into the cgroup says why, and leaves
    no cgroup or process behind."""
    d = rt.create("true")
    spec_path = d / "config.json"
    spec = spec_path.read_text()
    assert f'"{d / "hosts"}"' in spec  # the default /etc/hosts bind
    spec_path.write_text(spec.replace(f'"{d / "hosts"}"', f'"{d / "missing-hosts"}"'))
    with pytest.raises(launch.StartError, match=r"bind source .*missing-hosts does not exist"):
        launch.start(d)
    assert not any(os.path.exists(p) for p in cgroups.Cgroup(f"{rt.parent}/{d.name}").dirs())


def test_a_restart_that_cannot_join_the_pid_namespace_is_an_error_not_a_dead_shim(
        rt: Runtime) -> None:
    """A container in another container's PID namespace dies with it; its restarts then
    cannot join that namespace: each is recorded as an error (the shim lives on, applying
    its back-off) and a stop still ends it cleanly."""
    a = rt.create("sleep", "30")
    first = launch.start(a)
    b = rt.create("sleep", "30", restart=RestartPolicy("always"),
                  namespaces={"pid": f"/proc/{first.pid}/ns/pid"})
    joined = launch.start(b)
    assert _ns(joined.pid, "pid") == _ns(first.pid, "pid")
    launch.stop(a, timeout=0)
    failed = wait_for(lambda: (s := launch.state(b)).restart_count >= 1 and s.error and s)
    assert re.fullmatch(rf"join pid namespace /proc/{first.pid}/ns/pid: [A-Z][\w ]+",
                        failed.error), failed.error
    assert failed.status == "restarting"  # a live shim, still applying the policy
    assert launch.stop(b, timeout=0).status == "exited"


def test_a_start_given_up_on_does_not_run_later(rt: Runtime) -> None:
    # `start` stops waiting (timeout) before the shim reports: the start failed as far as
    # the engine knows, so the shim must not run the container once it is ready.
    d = rt.create("sleep", "60")
    with pytest.raises(launch.StartError, match="did not report within"):
        launch.start(d, timeout=0.0)
    final = wait_for(lambda: (s := launch.state(d)).error and s)
    assert (final.status, final.pid) == ("created", 0)
    assert "stopped waiting" in final.error
    cgroup = cgroups.Cgroup(f"{rt.parent}/{d.name}")
    wait_for(lambda: not any(os.path.exists(p) for p in cgroup.dirs()))
    launch.start(d)  # a later start works
    assert launch.state(d).status == "running"
