"""Forked helpers: more interpreters for a plan's container removals.

A removal is mostly Python work between short system calls (the shim's stop, the network
namespace, the store, the rootfs, the container's files), and one interpreter runs Python
on one CPU at a time: `down` of 20 services kept one CPU busy for its whole ~0.35 s while
the other idled. A walk with many removals therefore forks helpers (one per further CPU
this process may use, within the parallel limit) before it starts, while the walk's thread
is the process's only one, so the copies inherit no lock another thread held; and hands
them a share of the removals (interleaved A/B, `down -t 0` of 20: 363 -> 311 ms median).

A helper is this process as it was at the fork: it has the plan, the project and the
settings, and runs the very step the walker would (`_Walker.run_removal`) in the scope the
walker sets up for it (`_Walker.as_helper`: an engine of its own, since a database
connection must not cross a fork), a thread per request, so that its removals' waits
overlap as the walker's do. Requests and answers are JSON lines on a socket pair:
`{"id": N, "node": ID}` one way, `{"id": N}` (done) or `{"id": N, <failure>}` the other,
with news between them (`{"stopped": ID, "container": ...}`: see compose/retirement.py).
An engine error comes back as the same class and message, an OSError as an OSError;
anything else is a bug, raised here with the helper's traceback. The parallel limit counts
a helper's steps like the walker's own (they are waited for inside `call`).

Ctrl-C is the walker's to handle: helpers ignore SIGINT and finish what they were given. A
helper ends when its socket is closed (the walk ended, or this process died), after the
removals it had; so the project lock, whose descriptor it inherited, stays held until the
last of them is done. A helper that dies fails its pending steps; the next `down`
converges.
"""

from __future__ import annotations

import json
import os
import socket
import threading
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from collections.abc import Callable
    from contextlib import AbstractContextManager

    from compose.plan import PlanNode

# Fewer removals than this are not worth a fork (a few ms here and in the helper).
MIN_REMOVALS = 6
MAX_HELPERS = 3


class Walk(Protocol):
    """What a helper needs of the walker it was forked from."""

    def as_helper(self, notify: Callable[[dict[str, Any]], None]
                  ) -> AbstractContextManager[None]: ...

    def run_removal(self, node_id: str) -> None: ...

    def container_stopped(self, node_id: str, container_id: str | None) -> None: ...


class Helpers:
    """The helpers of one walk; `take` says which removals go to them."""

    def __init__(self, links: list[Link]) -> None:
        self.links = links
        self._turn = 0
        self._lock = threading.Lock()

    @classmethod
    def fork(cls, walk: Walk, removals: int, parallel: int) -> Helpers | None:
        """Helpers for `walk`, or None when they are not worth it or not safe: few
        removals, one usable CPU, a parallel limit of 1, or another thread running."""
        try:
            cpus = len(os.sched_getaffinity(0))
        except (AttributeError, OSError):
            cpus = os.cpu_count() or 1
        count = min(cpus - 1, MAX_HELPERS, (parallel or removals) - 1)
        if removals < MIN_REMOVALS or count < 1 or threading.active_count() > 1:
            return None
        links = []
        try:
            for _ in range(count):
                links.append(Link.fork(walk))
        except OSError:
            pass  # fewer helpers (or none): the walker does the rest
        return cls(links) if links else None

    def take(self, node: PlanNode) -> Link | None:
        """The helper that runs `node`, or None when the walker runs it itself: turns go
        round the walker and its helpers. A helper that has ended gets no more turns (the
        walker runs them: only the steps it had fail)."""
        with self._lock:
            turn = self._turn
            self._turn = (turn + 1) % (len(self.links) + 1)
        link = self.links[turn - 1] if turn else None
        return None if link is None or link.ended else link

    def close(self, *, wait: bool = True) -> None:
        """Tells the helpers there is no more; with `wait`, waits for them to end (without,
        they end on their own once done)."""
        for link in self.links:
            link.close(wait=wait)


class Link:
    """One helper process and the socket to it."""

    def __init__(self, pid: int, sock: socket.socket, walk: Walk) -> None:
        self.pid = pid
        self.sock = sock
        self.walk = walk
        self.done = 0  # steps it ran
        self._lock = threading.Lock()
        self._pending: dict[int, tuple[threading.Event, list[dict[str, Any]]]] = {}
        self._next = 0
        self._reader: threading.Thread | None = None
        self._ended = False  # its answers ended: it is gone

    @classmethod
    def fork(cls, walk: Walk) -> Link:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            pid = os.fork()
        except OSError:  # (EAGAIN, ENOMEM): no helper, and no sockets left open
            ours.close()
            theirs.close()
            raise
        if pid == 0:  # the helper: never returns
            status = 1
            try:
                ours.close()
                serve(walk, theirs)
                status = 0
            finally:
                os._exit(status)  # not the parent's atexit handlers, nor its stdio buffers
        theirs.close()
        return cls(pid, ours, walk)

    def run(self, node: PlanNode) -> None:
        """Has the helper run `node`'s removal; raises what the step raised there."""
        done = threading.Event()
        answer: list[dict[str, Any]] = []
        with self._lock:
            if self._ended:
                raise _gone(self.pid)
            if self._reader is None:
                self._reader = threading.Thread(target=self._read, daemon=True,
                                                name="shipyard-helper")
                self._reader.start()
            self._next += 1
            self._pending[self._next] = (done, answer)
            try:
                self.sock.sendall((json.dumps({"id": self._next, "node": node.id}) +
                                   "\n").encode())
            except OSError:
                del self._pending[self._next]
                raise _gone(self.pid) from None
        done.wait()
        if not answer:
            raise _gone(self.pid)
        self.done += 1
        raise_failure(answer[0], self.pid)

    @property
    def ended(self) -> bool:
        """Its answers ended: it is gone."""
        return self._ended

    def _read(self) -> None:
        try:
            with self.sock.makefile("rb") as replies:
                for line in replies:
                    reply = json.loads(line)  # (a torn last line: the helper died)
                    if "stopped" in reply:  # news, not an answer
                        self.walk.container_stopped(reply["stopped"], reply["container"])
                        continue
                    with self._lock:
                        waiting = self._pending.pop(reply["id"], None)
                    if waiting is not None:
                        waiting[1].append(reply)
                        waiting[0].set()
        except (OSError, ValueError, KeyError):
            pass
        finally:
            with self._lock:  # the helper ended: nothing more will come
                self._ended = True
                pending, self._pending = self._pending, {}
            for done, _ in pending.values():
                done.set()

    def close(self, *, wait: bool = True) -> None:
        try:
            self.sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        if wait:
            try:
                os.waitpid(self.pid, 0)
            except ChildProcessError:
                pass
            self.sock.close()


def failure(error: BaseException) -> dict[str, Any]:
    """How a step's exception travels back (the inverse of `raise_failure`)."""
    from engine.errors import Error

    if isinstance(error, Error):
        return {"error": [f"{type(error).__module__}:{type(error).__qualname__}", str(error)]}
    if isinstance(error, OSError):
        filename = None if error.filename is None else os.fsdecode(error.filename)
        return {"oserror": [error.errno, error.strerror or str(error), filename]}
    import traceback

    return {"bug": "".join(traceback.format_exception(error))}


def raise_failure(reply: dict[str, Any], pid: int) -> None:
    """Raises the failure `reply` carries, if it carries one."""
    if "error" in reply:
        from engine.errors import Error

        kind, message = reply["error"]
        cls = _error_class(kind)
        error = cls.__new__(cls)  # its own constructor may take other arguments
        Error.__init__(error, message)
        raise error
    if "oserror" in reply:
        number, text, filename = reply["oserror"]
        raise OSError(number, text, filename)
    if "bug" in reply:
        raise RuntimeError(f"in a helper process (pid {pid}):\n{reply['bug']}")


def _error_class(kind: str) -> type:
    """The engine error class named "module:qualname" (Error when it names none)."""
    import importlib

    from engine.errors import Error

    module, _, name = kind.partition(":")
    try:
        found: Any = importlib.import_module(module)
        for part in name.split("."):
            found = getattr(found, part)
    except (ImportError, AttributeError):
        return Error
    return found if isinstance(found, type) and issubclass(found, Error) else Error


def _gone(pid: int) -> Exception:
    from engine.errors import Error

    return Error(f"a helper process (pid {pid}) ended before it finished a removal; "
                 "run the command again")


# ---- the helper's side ---------------------------------------------------------------------

def serve(walk: Walk, sock: socket.socket) -> None:
    """Runs the removals asked for on `sock` until it is closed, then waits for them."""
    import signal

    from engine import store

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    store.close_inherited()  # before the helper's engine opens its own (see there)
    send = threading.Lock()
    threads = []

    def say(message: dict[str, Any]) -> None:
        with send:
            try:
                sock.sendall((json.dumps(message) + "\n").encode())
            except OSError:
                pass  # the walker is gone; the removal is done all the same

    def remove(request: dict[str, Any]) -> None:
        try:
            walk.run_removal(request["node"])
            reply: dict[str, Any] = {"id": request["id"]}
        except BaseException as error:  # sent back, raised there
            reply = {"id": request["id"], **failure(error)}
        say(reply)

    with walk.as_helper(say), sock.makefile("rb") as requests:
        for line in requests:
            thread = threading.Thread(target=remove, args=(json.loads(line),))
            thread.start()
            threads.append(thread)
        for thread in threads:
            thread.join()
