"""The shim's healthcheck: probe scheduling, probe processes and the health state. Stdlib only.

Imported by path as the shim's sibling, only by shims whose container has a healthcheck
(a fork server preloads it). `Health(shim)` runs the probes of `shim.opts["healthcheck"]`
(Docker's fields: test, interval, timeout, retries, start_period, start_interval) in
processes that join the container's namespaces and cgroup (`init.run_in`), on the shim's
event loop (`watch`, `unwatch`, `set_timer`, `timers`), and keeps `shim.state["health"]`:
status (starting, healthy, unhealthy), failing_streak and the last HEALTH_LOG_KEEP results.
The shim reaps the probe and hands its exit status to `done`.
"""

from __future__ import annotations

import _signal as signal  # the C module: `signal` imports enum (~1 MB per shim)
import os
import time

import state as st

HEALTH_LOG_KEEP = 5
HEALTH_OUTPUT_MAX = 4096


class Health:
    def __init__(self, shim) -> None:  # a shim.Shim (untyped: no import of shim)
        self.shim = shim
        self.hc: dict = shim.opts["healthcheck"]
        self.pid = 0            # the running probe's
        self.fd = -1            # its output pipe
        self.out = b""
        self.start = ""
        self.started_mono = 0.0
        self.timed_out = False

    def in_start_period(self) -> bool:
        start_period = float(self.hc.get("start_period") or 0)
        return time.monotonic() - self.shim.started_mono < start_period

    def schedule(self) -> None:
        starting = self.shim.state["health"]["status"] == "starting" and self.in_start_period()
        delay = float(self.hc["start_interval"] if starting else self.hc["interval"])
        self.shim.set_timer("health", delay, self.probe)

    def probe(self) -> None:
        shim = self.shim
        if not shim.pid or self.pid:
            return
        if shim.state["status"] == "paused":
            self.schedule()
            return
        process = dict(shim.spec["process"], args=list(self.hc["test"]), terminal=False)
        out_r, out_w = os.pipe()
        null = os.open("/dev/null", os.O_RDONLY | os.O_CLOEXEC)
        pid = os.fork()
        if pid == 0:
            os.close(out_r)
            import init
            init.run_in(shim.pid, shim.cgroup, shim.spec, process, (null, out_w, out_w), out_w)
        os.close(out_w)
        os.close(null)
        os.set_blocking(out_r, False)
        self.pid, self.fd, self.out = pid, out_r, b""
        self.start = st.now()
        self.started_mono = time.monotonic()
        shim.watch(out_r, self.on_output)
        shim.set_timer("health_timeout", float(self.hc["timeout"]), self.timeout)

    def on_output(self, fd: int) -> None:
        try:
            data = os.read(fd, 65536)
        except BlockingIOError:
            return
        if data:
            self.out = (self.out + data)[:HEALTH_OUTPUT_MAX]
        else:
            self.shim.unwatch(fd)

    def timeout(self) -> None:
        if self.pid:
            try:
                os.kill(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.out = f"Health check exceeded timeout ({self.hc['timeout']}s)".encode()
            self.timed_out = True

    def done(self, code: int) -> None:
        """The probe exited with `code` (reaped by the shim): record its result."""
        shim = self.shim
        shim.timers.pop("health_timeout", None)
        if self.fd >= 0:
            if self.fd in shim.handlers:
                self.on_output(self.fd)
                shim.unwatch(self.fd)
            os.close(self.fd)
        self.pid, self.fd = 0, -1
        if self.timed_out:
            code, self.timed_out = -1, False
        health = shim.state.get("health")
        if not health or not shim.pid:
            return
        health["log"] = (health["log"] + [{
            "start": self.start, "end": st.now(), "exit_code": code,
            "output": self.out.decode("utf-8", "replace")}])[-HEALTH_LOG_KEEP:]
        if code == 0:
            health["status"] = "healthy"
            health["failing_streak"] = 0
        elif not (health["status"] == "starting" and self.in_start_period()):
            health["failing_streak"] += 1
            if health["failing_streak"] >= int(self.hc["retries"]):
                health["status"] = "unhealthy"
        shim.save()
        self.schedule()

    def cancel(self) -> None:
        """The container stopped: no more probes; the running one is killed."""
        self.shim.timers.pop("health", None)
        self.shim.timers.pop("health_timeout", None)
        if self.pid:
            try:
                os.kill(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
