"""Networks taken down while their containers are still being released.

A network's removal waits for its containers' removals (it is `after` them in the plan),
and then waits for the kernel: deleting a bridge passes two RCU barriers, ~20-60 ms here,
alone at the end of `down`. Its names, firewall rules and bridge are of no use once the
containers on it have stopped, though; their release (namespace, store, rootfs, files) need
not wait for them. So as soon as the last container a network removal comes after has
stopped, `Networks.retire` takes those parts down in a thread of its own, alongside the
releases, and the removal step later only waits for it and drops the record.

Only removals of containers count (a graceful stop keeps the network to the end of its grace
period), and only for networks whose removal waits for nothing else; `retire` itself
leaves a network alone that has a container of some other plan on it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from compose.plan import Plan


class Retirements:
    def __init__(self, plan: Plan, retire: Callable[[str, frozenset[str]], object]) -> None:
        """`retire(network name, ids of stopped containers)`: Networks.retire."""
        self._retire = retire
        self._lock = threading.Lock()
        self._waiting: dict[str, set[str]] = {}  # network removal -> removals not stopped
        self._stopped: set[str] = set()          # container ids
        self._threads: dict[str, threading.Thread] = {}
        for node in plan.nodes:
            if (node.kind, node.action) != ("network", "remove") or not node.after \
                    or node.soft:
                continue
            if all((plan.node(d).kind, plan.node(d).action) == ("container", "remove")
                   for d in node.after):
                self._waiting[node.id] = set(node.after)
        self._targets = {n.id: n.target for n in plan.nodes if n.id in self._waiting}

    def container_stopped(self, node_id: str, container_id: str | None) -> None:
        """The removal `node_id` has stopped its container (None: there was none)."""
        ready = []
        with self._lock:
            if container_id:
                self._stopped.add(container_id)
            for network, removals in self._waiting.items():
                removals.discard(node_id)
                if not removals:
                    ready.append(network)
            for network in ready:
                del self._waiting[network]
            stopped = frozenset(self._stopped)
            for network in ready:
                thread = threading.Thread(target=self._run, daemon=True,
                                          args=(self._targets[network], stopped),
                                          name="shipyard-retire")
                self._threads[network] = thread
                thread.start()

    def _run(self, network: str, stopped: frozenset[str]) -> None:
        try:
            self._retire(network, stopped)
        except Exception:
            pass  # the removal step does it all again, and reports what fails

    def wait_all(self) -> None:
        """Waits for every take-down still going (one whose removal step did not come)."""
        with self._lock:
            threads, self._threads = list(self._threads.values()), {}
        for thread in threads:
            thread.join()

    def wait(self, node_id: str) -> None:
        """Before the removal `node_id`: its network's early take-down, if one started."""
        with self._lock:
            thread = self._threads.pop(node_id, None)
        if thread is not None:
            thread.join()
