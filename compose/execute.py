"""Walks a `Plan` with threads: a node starts (in a worker thread) once the nodes it
comes `after` have finished, and makes its engine calls, at most `parallel` at once across
the walk. No decisions are made here beyond what the node says.

Threads, not an event loop: the engine's calls block, and importing asyncio and anyio cost
every `up` and `down` ~40-90 ms of a ~0.5 s budget. Only an image pull, whose registry
client is async, runs an event loop (in its own thread).

A node whose hard dependency failed is skipped (and so are its dependents), while unrelated
nodes carry on; a failed soft dependency (`required: false`) is only a warning. Ctrl-C
starts nothing new, makes waits give up, lets running steps finish (each leaves the engine
consistent) and re-raises. The waits for `depends_on` conditions are in
compose/conditions.py, lifecycle hooks in compose/hooks.py, secret/config files are written
by compose/sourcefiles.py.
"""

from __future__ import annotations

import contextlib
import queue
import signal
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from compose import stopahead
from compose import translate as t
from compose.conditions import wait_service
from compose.hooks import post_start, pre_stop
from compose.progress import DONE, ERROR, Progress
from compose.retirement import Retirements
from compose.sourcefiles import write_source
from engine.errors import AlreadyExists, Conflict, Error, NotFound

if TYPE_CHECKING:
    from compose.helpers import Helpers
    from compose.model import Project, Service
    from compose.plan import Plan, PlanNode
    from engine import Engine
    from engine.containers import Container

# (kind, action) -> (what progress shows while working, when done)
WORDS = {
    ("network", "create"): ("Creating", "Created"), ("network", "remove"): ("Removing", "Removed"),
    ("volume", "create"): ("Creating", "Created"), ("volume", "remove"): ("Removing", "Removed"),
    ("image", "pull"): ("Pulling", "Pulled"), ("image", "build"): ("Building", "Built"),
    ("image", "remove"): ("Removing", "Removed"),
    ("container", "create"): ("Creating", "Created"),
    ("container", "recreate"): ("Recreate", "Recreated"),
    ("container", "refresh"): ("Checking", "Running"),
    ("container", "start"): ("Starting", "Started"),
    ("container", "restart"): ("Restarting", "Restarted"),
    ("container", "stop"): ("Stopping", "Stopped"),
    ("container", "remove"): ("Stopping", "Removed"),
    ("wait", "started"): ("Waiting", "Started"), ("wait", "healthy"): ("Waiting", "Healthy"),
    ("wait", "completed"): ("Waiting", "Exited"), ("wait", "running"): ("Waiting", "Running"),
}


@dataclass
class Settings:
    """How a plan is executed: the command-line knobs `execute.run` takes."""

    timeout: float | None = None       # stop grace (-t); None: each container's own
    parallel: int = 0                  # at most this many engine calls at once; 0: no limit
    source_dir: str | None = None      # where secret/config files are written
    wait_timeout: float | None = None  # give up waiting for a condition after this long
    renew_anon_volumes: bool = False
    # Images: `registry` makes a RegistryClient (default: one without credentials; the CLI
    # passes `imagebuild.registry_factory(ctx)`); builds run at most `build_parallel` at once.
    registry: Callable[[], Any] | None = None
    quiet_pull: bool = False           # no per-layer pull progress (`up --quiet-pull`)
    build_parallel: int = 2
    no_cache: bool = False             # `build --no-cache`
    build_pull: bool = False           # `build --pull`: pull base images again
    build_args: dict[str, str] = field(default_factory=dict)  # `build --build-arg`, win


@dataclass
class Outcome:
    """What a run did: failed and skipped nodes (with why) and the nodes done."""

    failed: dict[str, str] = field(default_factory=dict)    # node id -> message
    skipped: dict[str, str] = field(default_factory=dict)   # node id -> failed dependency
    done: list[str] = field(default_factory=list)
    helped: int = 0  # steps that forked helpers ran (compose/helpers.py)

    @property
    def ok(self) -> bool:
        return not self.failed and not self.skipped


def run(engine: Engine, project: Project | None, plan: Plan, progress: Progress,
        settings: Settings | None = None, *, asked: Iterable[str] = ()) -> Outcome:
    """Executes `plan` to the end and returns what happened. `asked`: the removals whose
    containers were asked to stop already (compose/stopahead.py)."""
    walker = _Walker(engine, project, plan, progress, settings or Settings())
    walker._asked.update(asked)
    _touch_parts(engine, plan)
    removals = sum((n.kind, n.action) == ("container", "remove") for n in plan.nodes)
    if removals:
        from compose.helpers import Helpers

        # Forked now, while this is the only thread (see compose/helpers.py).
        walker.helpers = Helpers.fork(walker, removals, walker.settings.parallel)
    try:
        if sum(n.kind == "container" and n.action in STARTS for n in plan.nodes) < 2:
            outcome = walker.run()
        else:
            from engine.runtime import launch

            # Several containers start: one fork server forks their shims (~1 ms each)
            # instead of a fresh interpreter per shim (~35 ms of CPU each).
            with launch.forkserver():
                outcome = walker.run()
    finally:
        # What is still going ends first (the steps have): a network's early take-down
        # whose removal did not come (a failure, Ctrl-C), the helpers. Not after a second
        # Ctrl-C: that leaves at once, and they end on their own.
        if not walker.left:
            walker.retirements.wait_all()
        if walker.helpers is not None:
            walker.helpers.close(wait=not walker.left)
    if walker.helpers is not None:
        outcome.helped = sum(link.done for link in walker.helpers.links)
    return outcome


STARTS = ("start", "restart", "refresh")
DEFAULT_PARALLEL = 64  # engine calls at once when `parallel` is 0 (no limit asked)


def _touch_parts(engine: Engine, plan: Plan) -> None:
    """Builds the engine parts the plan uses in this thread, not racing in workers."""
    kinds = {n.kind for n in plan.nodes}
    if any(n.action == "build" for n in plan.nodes):
        kinds |= {"container", "network"}  # RUN steps run containers
    if kinds & {"container", "wait"}:
        engine.containers  # noqa: B018
    if "network" in kinds:
        engine.networks  # noqa: B018
    if "volume" in kinds or any(n.action in ("recreate", "refresh", "remove")
                                for n in plan.nodes):
        engine.volumes  # noqa: B018
    if "image" in kinds:
        engine.images  # noqa: B018


class _Walker:
    def __init__(self, engine: Engine, project: Project | None, plan: Plan,
                 progress: Progress, settings: Settings):
        self.engine, self.project, self.plan = engine, project, plan
        self.progress, self.settings = progress, settings
        self.slots = threading.BoundedSemaphore(settings.parallel if settings.parallel > 0
                                                else DEFAULT_PARALLEL)
        self.builds = threading.BoundedSemaphore(max(1, settings.build_parallel))
        self.stopping = threading.Event()  # set on Ctrl-C: waits give up
        self.status: dict[str, str] = {}
        self.outcome = Outcome()
        self._ended: queue.SimpleQueue[tuple[str, BaseException | None]] = queue.SimpleQueue()
        self._workers = _Workers(min(len(plan.nodes), DEFAULT_PARALLEL))
        self.helpers: Helpers | None = None  # forked helpers that take removals
        self._notify: Callable[[dict[str, Any]], None] | None = None  # set in a helper
        self._asked: set[str] = set()  # removals whose container was asked to stop
        self.left = False  # a second Ctrl-C: steps (and helpers) left to end on their own
        self.retirements = Retirements(plan, lambda name, stopped: (
            self.engine.networks.retire(name, stopped)))

    def run(self) -> Outcome:
        """Starts each node when its dependencies have ended; returns when all have. A bug
        in a step (not an engine Error) is raised once the running steps have ended; so is
        KeyboardInterrupt after a Ctrl-C (a second one leaves at once)."""
        nodes = {n.id: n for n in self.plan.nodes}
        pending = {n.id: {*n.after, *n.soft} for n in self.plan.nodes}
        dependents: dict[str, list[str]] = {}
        for n in self.plan.nodes:
            for dep in pending[n.id]:
                dependents.setdefault(dep, []).append(n.id)
        previous = self._catch_ctrl_c()
        try:
            return self._walk(nodes, pending, dependents)
        finally:
            if previous is not None:
                signal.signal(signal.SIGINT, previous)
            self._workers.close()

    def _catch_ctrl_c(self) -> Any:
        """Makes Ctrl-C wake the scheduler instead of raising wherever the main thread is
        (between a step's start and its count, the count would be wrong: a wait for ever,
        or an exit while a step runs). Returns the handler to restore (None: untouched, as
        in a thread other than the main one or when SIGINT is not the default)."""
        if threading.current_thread() is not threading.main_thread() or \
                signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
            return None

        def interrupted(signum: int, frame: Any) -> None:
            if self.stopping.is_set():
                self.left = True
                raise KeyboardInterrupt  # the second Ctrl-C: leave at once
            self.stopping.set()
            self._ended.put((None, None))  # SimpleQueue.put is safe in a signal handler

        return signal.signal(signal.SIGINT, interrupted)

    def _walk(self, nodes: dict[str, PlanNode], pending: dict[str, set[str]],
              dependents: dict[str, list[str]]) -> Outcome:
        running = 0
        bug: BaseException | None = None
        ready = [nodes[node_id] for node_id, deps in pending.items() if not deps]
        for node in ready:  # all of them before any worker competes for the CPU
            self._stop_ahead(node)
        for node in ready:
            self._start(node)
            running += 1
        while running:
            ended, raised = self._ended.get()
            if ended is None:
                continue  # Ctrl-C: `stopping` is set, nothing new starts
            running -= 1
            if raised is not None and bug is None:
                bug = raised
                self.stopping.set()
            for node_id in dependents.get(ended, ()):
                pending[node_id].discard(ended)
                if not pending[node_id] and not self.stopping.is_set():
                    self._start(nodes[node_id])
                    running += 1
        if bug is not None:
            raise bug
        if self.stopping.is_set():
            raise KeyboardInterrupt
        return self.outcome

    def _start(self, node: PlanNode) -> None:
        """Skips `node` or shows it working (here, so the lines come in plan order) and
        hands its step to a worker; either way its end comes through `_ended`."""
        bad = [d for d in node.after if self.status.get(d) != "done"]
        if bad:
            self.status[node.id] = "skipped"
            self.outcome.skipped[node.id] = bad[0]
            self._ended.put((node.id, None))
            return
        for dep in node.soft:
            if self.status.get(dep) != "done":
                self.progress.message(f"warning: {dep} failed; {node.id} goes on (the "
                                      "dependency is not required)")
        self._stop_ahead(node)
        kind, shown = self._label(node)
        working = WORDS.get((node.kind, node.action), (node.action,))[0]
        if not _quiet(node):
            self.progress.event(kind, shown, working)

        def body() -> None:
            try:
                self.node(node, kind, shown)
            except BaseException as raised:  # handed to run(), which raises it
                self._ended.put((node.id, raised))
            else:
                self._ended.put((node.id, None))

        self._workers.submit(body)

    def _stop_ahead(self, node: PlanNode) -> None:
        """Asks the container of a removal that may start now to stop, here and now: its
        step, in a worker among many, would ask only once it has its turn for the CPU (in
        `down` of 20 the last asked ~100-150 ms into the walk; a network goes as soon as its
        containers have stopped, see compose/retirement.py). See compose/stopahead.py."""
        if self.settings.parallel <= 0:
            stopahead.ask(self.engine, self.project, (node,), self.settings.timeout,
                          self._asked)

    def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        """An engine call, counted against the `parallel` limit."""
        with self.slots:
            return fn(*args)

    def _gone(self, remove: Callable[[], object], *also: type[Error]) -> None:
        """Runs `remove`; NotFound (already gone) and the `also` errors are no failure."""
        def call() -> None:
            with contextlib.suppress(NotFound, *also):
                remove()

        self.call(call)

    def node(self, node: PlanNode, kind: str, shown: str) -> None:
        """Runs `node`'s step (its dependencies are done) and records how it ended, on
        the progress line (`kind`, `shown`) that `_start` opened."""
        finished = WORDS.get((node.kind, node.action), (node.action, node.action))[1]
        try:
            # A handler may say what it did, when that is not what the plan foresaw.
            said = getattr(self, f"_{node.kind}_{node.action}")(node)
            finished = said or finished
        except (Error, OSError) as error:
            if self.stopping.is_set() and isinstance(error, Error):
                # Given up because of Ctrl-C (a wait, a pull): not a failure to report.
                self.status[node.id] = "interrupted"
                self.progress.event(kind, shown, "Interrupted", ERROR)
                return
            # An OSError (a secret file that cannot be written, a full disk) fails this
            # step with its message, as an engine error does; unrelated steps go on.
            self.status[node.id] = "failed"
            self.outcome.failed[node.id] = str(error) if isinstance(error, Error) else \
                f"{error.strerror or error}" + (f": {error.filename}" if error.filename
                                                 else "")
            self.progress.event(kind, shown, "Error", ERROR)
            return
        self.status[node.id] = "done"
        self.outcome.done.append(node.id)
        if not _quiet(node):
            self.progress.event(kind, shown, finished, DONE)

    def _label(self, node: PlanNode) -> tuple[str, str]:
        """(kind, name) of the node's progress line: builds show as their service (as
        Compose's `Service web  Built`), waits as the service's first container."""
        if node.kind == "image" and node.action == "build" and node.service:
            return "Service", node.service
        if node.kind == "wait" and self.project is not None:
            return "Container", t.container_name(self.project, node.service, 1)
        return ("Container" if node.kind == "wait" else node.kind.capitalize()), node.target

    # ---- networks and volumes --------------------------------------------------------------

    def _network(self, name: str):  # -> compose.model.Network | None
        if self.project:
            for net in self.project.networks.values():
                if net.name == name:
                    return net
        return None

    def _network_create(self, node: PlanNode) -> None:
        net = self._network(node.target)
        kwargs: dict[str, Any] = {}
        labels = {}
        if net is not None and self.project is not None:
            ipam = net.ipam[0] if net.ipam else None
            labels = {**net.labels, **t.network_labels(self.project, net.key)}
            kwargs = dict(driver=net.driver or "bridge", internal=net.internal,
                          options=dict(net.driver_opts), attachable=net.attachable,
                          enable_ipv6=net.enable_ipv6, subnet=ipam.subnet if ipam else None,
                          gateway=ipam.gateway if ipam else None,
                          ip_range=ipam.ip_range if ipam else None)

        def create() -> None:
            try:
                self.engine.networks.create_network(node.target, labels=labels, **kwargs)
            except AlreadyExists:
                pass  # made by an earlier, interrupted run

        self.call(create)

    def _network_remove(self, node: PlanNode) -> None:
        self.retirements.wait(node.id)
        self._gone(lambda: self.engine.networks.remove_network(node.target))

    def _volume_create(self, node: PlanNode) -> None:
        vol = None
        if self.project:
            vol = next((v for v in self.project.volumes.values() if v.name == node.target), None)
        labels = {**vol.labels, **t.volume_labels(self.project, vol.key)} if vol else {}
        driver = (vol.driver if vol else None) or "local"
        options = dict(vol.driver_opts) if vol else {}
        self.call(lambda: self.engine.volumes.create(
            node.target, driver=driver, options=options, labels=labels))

    def _volume_remove(self, node: PlanNode) -> None:
        self._gone(lambda: self.engine.volumes.remove(node.target))

    # ---- images ----------------------------------------------------------------------------

    def _image_pull(self, node: PlanNode) -> None:
        # The registry client is async: an event loop in this node's thread (unpacking
        # runs in its worker threads).
        import anyio

        from compose.imaging import PullView, registry_or_default
        from engine.pull import pull_image

        view = PullView(self.progress, self.settings.quiet_pull)
        done = False

        async def pull() -> None:
            nonlocal done
            async with anyio.create_task_group() as tg:
                # Ctrl-C cancels the transfer, as it cancelled the old walk's event loop.
                tg.start_soon(_cancel_when_set, self.stopping, tg.cancel_scope)
                async with registry_or_default(self.settings.registry)() as client:
                    await pull_image(node.target, self.engine.images, client, progress=view)
                done = True
                tg.cancel_scope.cancel()

        try:
            anyio.run(pull)
        except BaseExceptionGroup as group:  # the task group wraps what the pull raised
            if len(group.exceptions) != 1:
                raise
            raise group.exceptions[0] from None
        if not done:
            raise Error(f"pulling {node.target} was interrupted")

    def _image_build(self, node: PlanNode) -> None:
        from compose.imaging import BuildView, build_spec, registry_or_default
        from engine.build import build

        assert self.project is not None, "building needs the project"
        spec = build_spec(self.project, node.service, no_cache=self.settings.no_cache,
                          pull=self.settings.build_pull, build_args=self.settings.build_args)
        view = BuildView(self.progress, node.service)
        registry = registry_or_default(self.settings.registry)
        with self.builds:
            build(self.engine, spec.context, spec.dockerfile, progress=view,
                  registry=registry, **spec.kwargs())

    def _image_remove(self, node: PlanNode) -> None:
        # An image another container still uses (Conflict) is kept, as Compose keeps it.
        self._gone(lambda: self.engine.images.remove(node.target), Conflict)

    # ---- containers ------------------------------------------------------------------------

    def _service(self, node: PlanNode) -> Service:
        assert self.project is not None, "container creation needs the project"
        return self.project.service(node.service)

    def _create(self, node: PlanNode) -> Container:
        assert self.project is not None
        svc = self._service(node)
        for source in t.file_sources(self.project, svc, self.settings.source_dir):
            write_source(source)
        request = t.service_request(self.project, svc, node.number,
                                    anonymous_volumes=dict(node.data),
                                    source_dir=self.settings.source_dir)
        containers = self.engine.containers
        try:
            return containers.create(request)
        except Conflict:
            # A container of this name that observe did not see as ours (an interrupted
            # create, or one made outside the project): only ours may be replaced.
            existing = containers.get(request.name or "")
            if existing.labels.get(t.PROJECT) != self.project.name:
                raise
            containers.remove(existing, force=True)
            return containers.create(request)

    def _container_create(self, node: PlanNode) -> None:
        self.call(self._create, node)

    def _container_recreate(self, node: PlanNode) -> None:
        def recreate() -> None:
            self._stop_remove(node)
            self._create(node)

        self.call(recreate)

    def _stop(self, container: Container) -> None:
        """Stops `container` (after its pre_stop hooks) if it runs."""
        if self.engine.containers.state(container).running:
            pre_stop(self.engine, self.project, container)
            self.engine.containers.stop(container, timeout=self.settings.timeout)

    def _stop_remove(self, node: PlanNode) -> None:
        helper = self.helpers.take(node) if self.helpers and node.action == "remove" else None
        if helper is not None:
            helper.run(node)
            return
        containers = self.engine.containers
        try:
            old = containers.get(node.old or node.target)
        except NotFound:
            self.container_stopped(node.id, None)
            return
        self._stop(old)
        self.container_stopped(node.id, old.id)
        containers.remove(old, force=True)
        keep = set(node.data.values())
        for volume in t.anonymous_volumes_of(old.request, old.volumes).values():
            if volume not in keep and node.action == "recreate" and \
                    self.settings.renew_anon_volumes:
                try:
                    self.engine.volumes.remove(volume)
                except (NotFound, Conflict):
                    pass

    # ---- in a forked helper (compose/helpers.py) ---------------------------------------------

    def container_stopped(self, node_id: str, container_id: str | None) -> None:
        """The removal `node_id` stopped its container (see compose/retirement.py); in a
        helper, told to the walker it was forked from."""
        if self._notify is not None:
            self._notify({"stopped": node_id, "container": container_id})
        else:
            self.retirements.container_stopped(node_id, container_id)

    @contextlib.contextmanager
    def as_helper(self, notify: Callable[[dict[str, Any]], None]) -> Iterator[None]:
        """This walker, in a helper forked from it, for the helper's lifetime: its own engine
        (a database connection must not cross a fork), no helpers of its own, news for the
        walker sent through `notify`, and the names of leaving containers published at the
        end if the walker defers them too."""
        from engine import Engine

        deferring = "networks" in vars(self.engine) and self.engine.networks.dns.deferring
        self.engine = Engine(self.engine.layout.root)
        self.helpers = None
        self._notify = notify
        _touch_parts(self.engine, self.plan)
        with (self.engine.networks.dns.removals_deferred() if deferring
              else contextlib.nullcontext()):
            yield

    def run_removal(self, node_id: str) -> None:
        """A helper's step: the removal `node_id` names, as the walker would run it."""
        self._stop_remove(self.plan.node(node_id))

    def _container_refresh(self, node: PlanNode) -> str:
        """Recreates the container if its image (just built or pulled) has another id now,
        and starts the new one if the old one ran; otherwise leaves it be."""
        assert self.project is not None
        image = t.default_image(self.project, self._service(node))

        def refresh() -> str:
            containers = self.engine.containers
            try:
                old = containers.get(node.old or node.target)
            except NotFound:
                old = None
            if old is not None and old.image_id == self.engine.images.resolve_id(image):
                status = containers.state(old).status
                return "Running" if status == "running" else status.capitalize()
            running = old is not None and containers.state(old).running
            self._stop_remove(node)
            new = self._create(node)
            if not running:
                return "Recreated"
            containers.start(new)
            post_start(self.project, new)
            return "Started"

        said = self.call(refresh)
        if said == "Started":
            self.progress.event("Container", node.target, "Recreated", DONE)
        return said

    def _container_remove(self, node: PlanNode) -> None:
        self.call(self._stop_remove, node)

    def _container_start(self, node: PlanNode) -> None:
        def start() -> None:
            containers = self.engine.containers
            container = containers.get(node.target)
            containers.start(container)
            post_start(self.project, container)

        self.call(start)

    def _container_stop(self, node: PlanNode) -> None:
        self.call(lambda: self._stop(self.engine.containers.get(node.target)))

    def _container_restart(self, node: PlanNode) -> None:
        def restart() -> None:
            container = self.engine.containers.get(node.target)
            self._stop(container)
            self.engine.containers.start(container)
            post_start(self.project, container)

        self.call(restart)

    # ---- waits -----------------------------------------------------------------------------

    def _wait_started(self, node: PlanNode) -> None:
        self._wait(node, "started")

    def _wait_running(self, node: PlanNode) -> None:
        self._wait(node, "running")

    def _wait_healthy(self, node: PlanNode) -> None:
        self._wait(node, "healthy")

    def _wait_completed(self, node: PlanNode) -> None:
        self._wait(node, "completed")

    def _wait(self, node: PlanNode, condition: str) -> None:
        assert self.project is not None
        wait_service(self.engine, self.project.name, node.service, condition,
                     self.settings.wait_timeout, self.slots, self.stopping)


class _Workers:
    """Daemon threads for the steps, started as needed up to `size` and reused: a thread
    keeps what it opened (its database connection, ~1 ms to open) from step to step, and a
    second Ctrl-C need not wait for any of them."""

    def __init__(self, size: int) -> None:
        self.size = max(1, size)
        self.tasks: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()
        self.threads = 0
        self.idle = 0
        self.lock = threading.Lock()

    def submit(self, task: Callable[[], None]) -> None:
        with self.lock:
            if self.idle:
                self.idle -= 1  # an idle thread takes it
            elif self.threads < self.size:
                self.threads += 1
                threading.Thread(target=self._work, daemon=True).start()
        self.tasks.put(task)

    def _work(self) -> None:
        while (task := self.tasks.get()) is not None:
            task()
            with self.lock:
                self.idle += 1

    def close(self) -> None:
        """Lets the threads end once the queued steps are done."""
        with self.lock:
            for _ in range(self.threads):
                self.tasks.put(None)
            self.threads = self.idle = 0


async def _cancel_when_set(event: threading.Event, scope: Any) -> None:
    """Cancels `scope` (an anyio CancelScope) once `event` is set, looking every 50 ms."""
    import anyio

    while not event.is_set():
        await anyio.sleep(0.05)
    scope.cancel()


def _quiet(node: PlanNode) -> bool:
    """A wait for `started` shows no line: its container's start said it all."""
    return (node.kind, node.action) == ("wait", "started")


def report(outcome: Outcome, plan: Plan) -> str:
    """The failures of a run as one message (failed nodes, then what they held back)."""
    lines = [f"{node_id}: {message}" if not message.startswith("dependency failed")
             else message for node_id, message in outcome.failed.items()]
    held: dict[str, list[str]] = {}
    for node_id, cause in outcome.skipped.items():
        root = cause
        while root in outcome.skipped:
            root = outcome.skipped[root]
        node = plan.node(node_id)
        if node.kind == "container":
            held.setdefault(root, []).append(node.target)
    for root, names in held.items():
        names = sorted(set(names))
        lines.append(f"not started because {root} failed: {', '.join(names)}")
    return "\n".join(lines)
