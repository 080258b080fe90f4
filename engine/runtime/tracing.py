"""Start-up timestamps for profiling the runtime (stdlib only; imported by path too).

With SHIPYARD_RUNTIME_TRACE=<file> in the environment, `mark(label)` appends one line
"<pid> <label> <monotonic ns> <process CPU ns> <minor faults>" to that file (opened once,
close-on-exec, so it works after pivot_root too). Labels are "<role>:<step>" (server,
shim, init); `benchmarks/runtime_bench.py --batch N --trace` reads them. Without the
variable, `mark` does nothing and costs a call.
"""

from __future__ import annotations

import os
import resource as _resource
import time

_fd = -1
_path = os.environ.get("SHIPYARD_RUNTIME_TRACE", "")
if _path:
    import fcntl

    _low = os.open(_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
    _fd = fcntl.fcntl(_low, fcntl.F_DUPFD_CLOEXEC, 900)  # clear of the fds others dup2 to
    os.close(_low)


_pid = 0


def rebind() -> None:
    """In a new PID namespace, before /proc is replaced: log under the host's pid."""
    global _pid
    if _fd >= 0:
        _pid = int(os.readlink("/proc/self"))


def mark(label: str) -> None:
    if _fd >= 0:
        os.write(_fd, (f"{_pid or os.getpid()} {label} {time.monotonic_ns()} "
                       f"{time.clock_gettime_ns(time.CLOCK_PROCESS_CPUTIME_ID)} "
                       f"{_resource.getrusage(_resource.RUSAGE_SELF).ru_minflt}\n").encode())
