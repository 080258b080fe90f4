"""A minimal busybox root filesystem built from Debian's `busybox-static`.

This stands in for Docker Hub's busybox image: one static binary, a link per applet, and the
few files in /etc that a userland expects. Tests import the tarball through the engine.
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import tarfile
from pathlib import Path

BUSYBOX = Path("/bin/busybox")

PASSWD = (
    "root:x:0:0:root:/root:/bin/sh\n"
    "daemon:x:1:1:daemon:/usr/sbin:/bin/false\n"
    "www-data:x:33:33:www-data:/var/www:/bin/false\n"
    "nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"
)
GROUP = "root:x:0:\ndaemon:x:1:\nwww-data:x:33:\nusers:x:100:nobody\nnogroup:x:65534:\n"
DIRS = ("bin", "sbin", "usr/bin", "usr/sbin", "etc", "root", "tmp", "var/www", "proc", "sys",
        "dev", "run", "home")


def available() -> bool:
    """True when busybox-static is installed (the test command installs it)."""
    return BUSYBOX.is_file()


def applets() -> list[str]:
    out = subprocess.run([str(BUSYBOX), "--list-full"], capture_output=True, text=True,
                         check=True).stdout
    return [line.strip() for line in out.splitlines() if line.strip()]


def make_rootfs(dest: Path) -> Path:
    """Writes the root filesystem into `dest` (created) and returns it."""
    for d in DIRS:
        (dest / d).mkdir(parents=True, exist_ok=True)
    os.chmod(dest / "tmp", 0o1777)
    shutil.copy2(BUSYBOX, dest / "bin" / "busybox")
    for applet in applets():
        link = dest / applet
        if applet == "bin/busybox" or link.exists() or link.is_symlink():
            continue
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to("/bin/busybox")
    (dest / "etc" / "passwd").write_text(PASSWD)
    (dest / "etc" / "group").write_text(GROUP)
    return dest


def make_rootfs_tar(dest: Path) -> Path:
    """Writes the root filesystem as an uncompressed tarball at `dest` and returns it."""
    members: list[tuple[tarfile.TarInfo, bytes | None]] = []

    def add_dir(name: str, mode: int = 0o755) -> None:
        info = tarfile.TarInfo(name)
        info.type = tarfile.DIRTYPE
        info.mode = mode
        members.append((info, None))

    for d in DIRS:
        parts = d.split("/")
        for i in range(1, len(parts) + 1):
            add_dir("/".join(parts[:i]), 0o1777 if d == "tmp" else 0o755)
    data = BUSYBOX.read_bytes()
    info = tarfile.TarInfo("bin/busybox")
    info.mode = 0o755
    info.size = len(data)
    members.append((info, data))
    for applet in applets():
        if applet == "bin/busybox":
            continue
        info = tarfile.TarInfo(applet)
        info.type = tarfile.SYMTYPE
        info.linkname = "/bin/busybox"
        members.append((info, None))
    for name, text in (("etc/passwd", PASSWD), ("etc/group", GROUP)):
        blob = text.encode()
        info = tarfile.TarInfo(name)
        info.mode = 0o644
        info.size = len(blob)
        members.append((info, blob))
    seen: set[str] = set()
    with tarfile.open(dest, "w", format=tarfile.PAX_FORMAT) as tar:
        for info, blob in members:
            if info.name in seen:
                continue
            seen.add(info.name)
            tar.addfile(info, io.BytesIO(blob) if blob is not None else None)
    return dest
