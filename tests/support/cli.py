"""Runs `shipyard` in the test's own process, as a user would type it, and captures output."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import time
from collections.abc import Callable
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

from compose.cli import main


class Shipyard:
    """`cli("container", "ls")` -> (exit code, stdout, stderr); asserts exit 0 unless `ok=False`.

    `prefix` is put before every argv (e.g. `-f compose.yaml`); `stdin` feeds text to
    commands that read it (`login --password-stdin`)."""

    def __init__(self, root: Path | None = None, prefix: tuple[str, ...] = ()) -> None:
        self.root = root
        self.prefix = prefix

    def __call__(self, *argv: str, ok: bool = True, stdin: str | None = None,
                 prefix: bool = True) -> tuple[int, str, str]:
        full = [*(self.prefix if prefix else ()), *argv]
        out, err = io.StringIO(), io.StringIO()
        saved = sys.stdin
        if stdin is not None:
            sys.stdin = io.StringIO(stdin)
        try:
            with redirect_stdout(out), redirect_stderr(err):
                code = main(full)
        finally:
            sys.stdin = saved
        if ok:
            assert code == 0, f"shipyard {' '.join(full)} -> {code}: {err.getvalue()}"
        return code, out.getvalue(), err.getvalue()

    def process(self, *argv: str, timeout: float = 30) -> tuple[int, str, str]:
        """Like calling the runner, in a separate CLI process: for commands that hand a
        container process the real stdout (`exec`, `run`), which cannot be captured here."""
        env = dict(os.environ)
        if self.root is not None:
            env["SHIPYARD_ROOT"] = str(self.root)
        done = subprocess.run([sys.executable, "-m", "compose.cli", *self.prefix, *argv],
                              capture_output=True, text=True, timeout=timeout, env=env)
        return done.returncode, done.stdout, done.stderr

    def remove_everything(self, *, ok: bool = True) -> None:
        """Every container (with its anonymous volumes) and network of this engine root;
        `ok=False` keeps going past a failing removal (teardown after a failed test)."""
        _, out, _ = self("container", "ls", "-a", "-q", "--no-trunc", prefix=False)
        for container in out.split():
            self("container", "rm", "-f", "-v", container, ok=ok, prefix=False)
        _, out, _ = self("network", "ls", "-q", prefix=False)
        for network in out.split():
            self("network", "rm", network, ok=False, prefix=False)


def wait_for(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)
