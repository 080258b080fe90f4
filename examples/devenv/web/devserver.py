#!/usr/bin/python3
"""devserver COMMAND...: runs COMMAND and restarts it whenever a file under the current
directory changes (polling, so it works on any bind mount). SIGTERM/SIGINT stop both.

Polling mtimes twice a second costs little for a source tree of a few thousand files and
needs no inotify, which does not see changes made through some bind mounts and editors."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

IGNORED_DIRS = {".git", "__pycache__", "node_modules", ".venv"}


def snapshot(root: str) -> dict[str, float]:
    """Path -> mtime of every file under root, skipping caches and VCS data."""
    seen: dict[str, float] = {}
    for directory, subdirs, files in os.walk(root):
        subdirs[:] = [d for d in subdirs if d not in IGNORED_DIRS]
        for name in files:
            path = os.path.join(directory, name)
            try:
                seen[path] = os.stat(path).st_mtime
            except FileNotFoundError:
                continue  # removed while walking
    return seen


def terminate(child: subprocess.Popen) -> None:
    """SIGTERM, then SIGKILL after 5 s; reaped either way."""
    if child.poll() is None:
        child.terminate()
        try:
            child.wait(timeout=5)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


def main(argv: list[str]) -> int:
    if not argv:
        print("usage: devserver COMMAND [ARG...]", file=sys.stderr)
        return 2
    stopping = False

    def stop(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    before = snapshot(".")
    child = subprocess.Popen(argv)
    print(f"devserver: started {' '.join(argv)} (pid {child.pid}); watching {os.getcwd()}",
          flush=True)
    while not stopping:
        time.sleep(0.5)
        now = snapshot(".")
        if now == before:
            continue  # a crashed app waits for the next edit, rather than restart in a loop
        changed = sorted(p for p in now.keys() | before.keys() if now.get(p) != before.get(p))
        before = now
        print(f"devserver: {', '.join(changed[:3])}{' ...' if len(changed) > 3 else ''} "
              "changed; restarting", flush=True)
        terminate(child)
        child = subprocess.Popen(argv)
    terminate(child)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
