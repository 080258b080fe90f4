"""`shipyard start|stop|restart|kill|rm|pause|unpause|create`: act on the project's
existing containers, as Docker Compose does.

The project's containers are found by their labels, and the order between services comes
from their `com.docker.compose.depends_on` labels, so these commands work with `-p NAME`
alone (the Compose file is read only to check named services). Stops run in parallel within
one dependency level (dependents first), so a stack of containers that ignore SIGTERM takes
one grace period, not one per container. Progress lines go to stderr:
` Container blog-web-1  Stopped`.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from compose.cli import Context
    from compose.model import Project
    from compose.project import ProjectContainer
    from engine import Engine


@dataclass(frozen=True, slots=True)
class Command:
    """One CLI command of this module (cli.COMMANDS names it "lifecycle:<attr>")."""

    HELP: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace, Context], int]


def _services(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("services", nargs="*", metavar="SERVICE")


def _timeout(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-t", "--timeout", type=float, default=None,
                        help="specify a shutdown timeout in seconds")


def say(ctx: Context, name: str, what: str) -> None:
    print(f" Container {name}  {what}", file=ctx.stderr, flush=True)


# ---- ordering ------------------------------------------------------------------------------

def _levels(found: Sequence[ProjectContainer]) -> list[list[ProjectContainer]]:
    """The containers grouped by dependency level (dependencies first), from their
    `depends_on` labels ("name:condition:restart,...")."""
    from compose.graph import from_edges
    from compose.project import LABEL_DEPENDS_ON

    edges: dict[str, set[str]] = {}
    for item in found:
        deps = edges.setdefault(item.service, set())
        for entry in item.container.labels.get(LABEL_DEPENDS_ON, "").split(","):
            if entry:
                deps.add(entry.split(":", 1)[0])
    levels = from_edges(edges).levels()
    rank = {service: i for i, level in enumerate(levels) for service in level}
    out: list[list[ProjectContainer]] = [[] for _ in levels]
    for item in found:
        out[rank[item.service]].append(item)
    return [level for level in out if level]


def _in_parallel(engine: Engine, action: Callable[[ProjectContainer], object],
                 items: Sequence[ProjectContainer]) -> None:
    """`action` on each item in worker threads (as `execute` runs engine calls); the
    engine's parts are built here first so that workers never race to build them."""
    from concurrent.futures import ThreadPoolExecutor

    for part in ("containers", "networks", "volumes", "images"):
        getattr(engine, part)
    with ThreadPoolExecutor(max_workers=min(16, len(items))) as pool:
        for future in [pool.submit(action, item) for item in items]:
            future.result()  # the first failure surfaces, once every call has ended


def stop_containers(ctx: Context, engine: Engine, found: Sequence[ProjectContainer],
                    timeout: float | None, project: Project | None = None) -> None:
    """Stops the running ones, dependents first, each level in parallel (after their
    service's pre_stop hooks, when `project` is given)."""
    from compose import hooks

    def stop(item: ProjectContainer) -> None:
        say(ctx, item.name, "Stopping")
        hooks.pre_stop(engine, project, item.container)
        engine.containers.stop(item.container, timeout)
        say(ctx, item.name, "Stopped")

    for level in reversed(_levels([c for c in found if c.running])):
        _in_parallel(engine, stop, level)


def start_containers(ctx: Context, engine: Engine, found: Sequence[ProjectContainer],
                     project: Project | None = None) -> None:
    """Starts those not running, dependencies first, each level in parallel (then their
    service's post_start hooks, when `project` is given)."""
    from compose import hooks

    def start(item: ProjectContainer) -> None:
        say(ctx, item.name, "Starting")
        engine.containers.start(item.container)
        hooks.post_start(project, item.container)
        say(ctx, item.name, "Started")

    for level in _levels([c for c in found if not c.running]):
        _in_parallel(engine, start, level)


# ---- commands ------------------------------------------------------------------------------

@contextmanager
def _session(args: argparse.Namespace, ctx: Context, *, oneoff: bool | None = False,
             with_project: bool = False
             ) -> Iterator[tuple[Engine, list[ProjectContainer], Project | None]]:
    """The engine, the selected containers and (with `with_project`, when there is a
    Compose file: its lifecycle hooks run) the project, read and acted on under the project
    lock (another command changing the project is waited for, with a message)."""
    from compose.lock import project_lock
    from compose.project import check_services, load_if_present, project_containers, target

    if with_project:
        name, project = load_if_present(args, ctx, args.services)
        services = check_services(project, args.services) if project is not None \
            else tuple(dict.fromkeys(args.services))
    else:
        name, project, services = target(args, ctx, args.services)
    engine = ctx.engine()
    with project_lock(engine.layout, name, say=lambda text: print(text, file=ctx.stderr)):
        yield engine, project_containers(engine, name, services=services,
                                         oneoff=oneoff), project


def _run_start(args: argparse.Namespace, ctx: Context) -> int:
    from engine.errors import NotFound

    with _session(args, ctx, with_project=True) as (engine, found, project):
        for service in args.services:
            if not any(c.service == service for c in found):
                raise NotFound(f'service "{service}" has no container to start')
        start_containers(ctx, engine, found, project)
    return 0


def _run_stop(args: argparse.Namespace, ctx: Context) -> int:
    with _session(args, ctx, with_project=True) as (engine, found, project):
        stop_containers(ctx, engine, found, args.timeout, project)
    return 0


def _run_restart(args: argparse.Namespace, ctx: Context) -> int:
    from compose.project import refresh

    with _session(args, ctx, with_project=True) as (engine, found, project):
        stop_containers(ctx, engine, found, args.timeout, project)
        start_containers(ctx, engine, refresh(engine, found), project)
    return 0


def _run_kill(args: argparse.Namespace, ctx: Context) -> int:
    from engine.spec import signal_number

    signal_number(args.signal)  # a bad name fails here, not after " Killing"
    with _session(args, ctx) as (engine, found, _):
        for item in found:
            if item.running:
                say(ctx, item.name, "Killing")
                engine.containers.kill(item.container, args.signal)
                say(ctx, item.name, "Killed")
    return 0


def _freeze(args: argparse.Namespace, ctx: Context, *, pause: bool) -> int:
    """`pause` (running -> paused) or `unpause` (paused -> running)."""
    from engine.runtime import launch

    status, act, word = (("running", launch.pause, "Paused") if pause
                         else ("paused", launch.unpause, "Unpaused"))
    with _session(args, ctx) as (_, found, _):
        for item in found:
            if item.state.status == status:
                act(str(item.container.directory))
                say(ctx, item.name, word)
    return 0


def _run_pause(args: argparse.Namespace, ctx: Context) -> int:
    return _freeze(args, ctx, pause=True)


def _run_unpause(args: argparse.Namespace, ctx: Context) -> int:
    return _freeze(args, ctx, pause=False)


def _run_rm(args: argparse.Namespace, ctx: Context) -> int:
    import sys

    from compose.project import refresh

    with _session(args, ctx, oneoff=None) as (engine, found, _):
        if args.stop:
            stop_containers(ctx, engine, found, None)
            found = refresh(engine, found)
        stopped = [c for c in found if not c.running]
        if not stopped:
            print("No stopped containers", file=ctx.stderr)
            return 0
        if not args.force and sys.stdin.isatty():
            names = ", ".join(c.name for c in stopped)
            answer = input(f"Going to remove {names}\n? Are you sure? [yN] ")
            if answer.strip().lower() not in ("y", "yes"):
                return 0
        for item in stopped:
            say(ctx, item.name, "Removing")
            engine.containers.remove(item.container, volumes=args.volumes)
            say(ctx, item.name, "Removed")
    return 0


def _run_create(args: argparse.Namespace, ctx: Context) -> int:
    """`create` is `up --no-start`: the reconciler's work, done by the `up` command."""
    from compose.commands import up

    parser = argparse.ArgumentParser(prog="shipyard up")
    up.add_arguments(parser)
    argv = ["--no-start", *args.services]
    for flag, on in (("--build", args.build), ("--no-build", args.no_build),
                     ("--force-recreate", args.force_recreate),
                     ("--no-recreate", args.no_recreate),
                     ("--remove-orphans", args.remove_orphans)):
        if on:
            argv.append(flag)
    if args.pull:
        argv += ["--pull", args.pull]
    for scale in args.scale:
        argv += ["--scale", scale]
    up_args = parser.parse_args(argv)
    for key, value in vars(args).items():  # the global flags (-f, -p, ...) ride along
        if not hasattr(up_args, key):
            setattr(up_args, key, value)
    return int(up.run(up_args, ctx) or 0)


def _create_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--build", action="store_true", help="build images first")
    parser.add_argument("--no-build", action="store_true", help="don't build images")
    parser.add_argument("--force-recreate", action="store_true")
    parser.add_argument("--no-recreate", action="store_true")
    parser.add_argument("--pull", choices=["always", "missing", "never", "build"])
    parser.add_argument("--remove-orphans", action="store_true")
    parser.add_argument("--scale", action="append", default=[], metavar="SERVICE=NUM")
    _services(parser)


def _stop_arguments(parser: argparse.ArgumentParser) -> None:
    _timeout(parser)
    _services(parser)


def _kill_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-s", "--signal", default="SIGKILL",
                        help="SIGNAL to send to the container")
    parser.add_argument("--remove-orphans", action="store_true")
    _services(parser)


def _rm_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-f", "--force", action="store_true",
                        help="don't ask to confirm removal")
    parser.add_argument("-s", "--stop", action="store_true",
                        help="stop the containers, if required, before removing")
    parser.add_argument("-v", "--volumes", action="store_true",
                        help="remove any anonymous volumes attached to containers")
    _services(parser)


create = Command("Creates containers for a service", _create_arguments, _run_create)
start = Command("Start services", _services, _run_start)
stop = Command("Stop services", _stop_arguments, _run_stop)
restart = Command("Restart service containers", _stop_arguments, _run_restart)
kill = Command("Force stop service containers", _kill_arguments, _run_kill)
rm = Command("Removes stopped service containers", _rm_arguments, _run_rm)
pause = Command("Pause services", _services, _run_pause)
unpause = Command("Unpause services", _services, _run_unpause)
