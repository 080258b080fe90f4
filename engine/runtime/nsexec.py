"""Runs a process inside a running container (stdlib only; imports its siblings by path).

`python -I -S nsexec.py <container dir> <request json> <error fd>`, started by
`launch.exec` in a fresh single-threaded process: it joins the container's cgroup and
namespaces (`init.run_in`), forks into the PID namespace, applies the container's security
settings with the requested user/env/cwd, and execs. It exits with the process's exit code;
a failure before execve is one line on the error fd and exit code 127. With "detach" it
forks away first and the caller only learns whether the exec worked. With "tty" (and a
terminal on stdin) it puts the process on a new pty and relays the caller's terminal to it.
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import cgroups
import init
import state as st


def _relay(master: int, child: int) -> int:
    """Copies the caller's terminal <-> the pty until the child exits; returns its code."""
    import select
    import signal
    import termios
    import tty

    saved = termios.tcgetattr(0)

    def resize(*_: object) -> None:
        import fcntl
        try:
            size = fcntl.ioctl(0, termios.TIOCGWINSZ, b"\0" * 8)
            fcntl.ioctl(master, termios.TIOCSWINSZ, size)
        except OSError:
            pass

    resize()
    signal.signal(signal.SIGWINCH, resize)
    tty.setraw(0)
    try:
        fds = [0, master]
        while True:
            try:
                ready, _, _ = select.select(fds, [], [])
            except InterruptedError:
                continue
            if 0 in ready:
                data = os.read(0, 4096)
                if data:
                    os.write(master, data)
                else:
                    fds.remove(0)
            if master in ready:
                try:
                    data = os.read(master, 4096)
                except OSError:
                    data = b""
                if not data:
                    break
                os.write(1, data)
    finally:
        termios.tcsetattr(0, termios.TCSADRAIN, saved)
    _, status = os.waitpid(child, 0)
    code = os.waitstatus_to_exitcode(status)
    return code if code >= 0 else 128 - code


def container_pty(pid: int) -> tuple[int, int]:
    """A pty pair from the container's own devpts instance (through /proc/<pid>/root), so
    the process sees its terminal as /dev/pts/N like under Docker; the host's as fallback."""
    import fcntl
    import struct

    pts = f"/proc/{pid}/root/dev/pts"
    try:
        master = os.open(f"{pts}/ptmx", os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError:
        return os.openpty()
    fcntl.ioctl(master, 0x40045431, struct.pack("i", 0))  # TIOCSPTLCK: unlock
    number = struct.unpack("i", fcntl.ioctl(master, 0x80045430, b"\0" * 4))[0]  # TIOCGPTN
    return master, os.open(f"{pts}/{number}", os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC)


def main() -> None:
    container_dir, request, error_fd = sys.argv[1], st.loads(sys.argv[2]), int(sys.argv[3])
    os.set_inheritable(error_fd, False)
    spec = st.read_json(os.path.join(container_dir, "config.json"))
    current = st.read(container_dir) or {}
    pid = current.get("pid")
    if current.get("status") not in ("running", "paused") or not pid:
        os.write(error_fd, b"container is not running")
        os._exit(126)
    process = dict(spec["process"])  # type: ignore[index]
    env = {e.split("=", 1)[0]: e for e in process.get("env") or []}
    for item in request.get("env") or []:  # type: ignore[union-attr]
        env[item.split("=", 1)[0]] = item
    process.update(args=request["argv"], env=list(env.values()),  # type: ignore[index]
                   terminal=bool(request.get("tty")))  # type: ignore[union-attr]
    if request.get("user") is not None:  # type: ignore[union-attr]
        process["user"] = request["user"]  # type: ignore[index]
    if request.get("workdir"):  # type: ignore[union-attr]
        process["cwd"] = request["workdir"]  # type: ignore[index]
    cgroup = cgroups.Cgroup(spec["linux"]["cgroupsPath"])  # type: ignore[index]
    if request.get("detach") and os.fork():  # type: ignore[union-attr]
        os._exit(0)
    if request.get("tty") and os.isatty(0):  # type: ignore[union-attr]
        master, slave = container_pty(pid)  # type: ignore[arg-type]
        child = os.fork()
        if child == 0:
            os.close(master)
            init.run_in(pid, cgroup, spec, process, (slave, slave, slave),  # type: ignore[arg-type]
                        error_fd, tty=True)
        os.close(slave)
        os.close(error_fd)
        os._exit(_relay(master, child))
    init.run_in(pid, cgroup, spec, process, (0, 1, 2), error_fd)  # type: ignore[arg-type]


if __name__ == "__main__":
    main()
