"""The same bundle under `runc run` and under our runtime: the process must see the same
world (hostname, ids, capabilities, no_new_privs, seccomp, mounts, cgroup limit, env, /dev,
rlimits)."""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest

from engine.runtime import launch, logs
from engine.spec import ContainerConfig, Resources, build_spec, shim_options
from tests.support import busybox, leaks

pytestmark = [
    pytest.mark.skipif(shutil.which("runc") is None, reason="runc is not installed"),
    pytest.mark.skipif(not busybox.available(), reason="busybox-static is missing"),
]

PROBE = ("hostname; echo ids $(id -u) $(id -g) $(id -G); "
         "grep -E '^(Cap|NoNewPrivs|Seccomp:)' /proc/self/status; "
         "echo mounts; cat /proc/self/mounts; echo end-mounts; "
         "cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null || "
         "cat /sys/fs/cgroup/memory.max; "
         "env | sort; ls /dev | sort | tr '\\n' ' '; echo; ulimit -n; pwd")


def normalise(output: str) -> list[str]:
    """Mount lines as (mount point, type, options) sorted: sources and order differ by
    design (runc names the systemd hierarchy's source "systemd"; our /sys/fs/cgroup tmpfs is
    read-only as the spec asks, runc leaves it writable)."""
    lines = output.replace("\r", "").splitlines()
    start, end = lines.index("mounts"), lines.index("end-mounts")
    mounts = []
    for line in lines[start + 1:end]:
        _source, point, fstype, options, *_ = line.split()
        if point == "/sys/fs/cgroup":
            options = ",".join(o for o in options.split(",") if o not in ("ro", "rw"))
        mounts.append(f"{point} {fstype} {options}")
    return lines[:start] + sorted(mounts) + lines[end + 1:]


def _all_hierarchies() -> set[str]:
    with open("/proc/self/mountinfo") as f:
        return {line.split()[4] for line in f if " - cgroup" in line}


@pytest.mark.parametrize("user", ["", "www-data"])
def test_same_bundle_same_view(tmp_path: Path, user: str) -> None:
    before = leaks.snapshot()
    parent = f"/shipyard-test-{uuid.uuid4().hex[:8]}"
    rootfs = busybox.make_rootfs(tmp_path / "bundle" / "rootfs")
    cid = "cmp" + uuid.uuid4().hex[:12]
    config = ContainerConfig(id=cid, cmd=("sh", "-c", PROBE), user=user, hostname="probe",
                             cgroup_parent=parent, env={"X": "1"},
                             resources=Resources(memory=64 << 20, pids_limit=100),
                             security_opt=("no-new-privileges",) if user else ())
    spec = build_spec(config, {}, "rootfs", (rootfs / "etc/passwd").read_text(),
                      (rootfs / "etc/group").read_text())
    bundle = tmp_path / "bundle"
    launch.create(bundle, spec, shim_options(config))
    try:
        launch.start(bundle)
        assert launch.wait(bundle, timeout=30) == 0
        ours = "".join(e.text for e in logs.read(bundle))
    finally:
        launch.stop(bundle, timeout=0)
        launch.delete(bundle)
    try:
        result = subprocess.run(["runc", "run", "-b", str(bundle), cid], capture_output=True,
                                text=True, timeout=60)
    finally:
        subprocess.run(["runc", "delete", "-f", cid], capture_output=True)
        for d in _all_hierarchies():  # runc leaves the parent behind (also in unified)
            if os.path.isdir(d + parent):
                os.rmdir(d + parent)
    assert result.returncode == 0, result.stderr
    assert normalise(ours) == normalise(result.stdout)
    assert "memory.limit_in_bytes" not in ours and str(64 << 20) in ours
    leaked = leaks.diff(before, leaks.snapshot())
    mine = {k: [i for i in v if parent in str(i) or cid in str(i) or str(tmp_path) in str(i)]
            for k, v in leaked.items()}
    assert {k: v for k, v in mine.items() if v} == {}
