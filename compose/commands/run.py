"""`shipyard run SERVICE [COMMAND...]`: a one-off container for a service.

The container is `<project>-<service>-run-<12 hex>` with the label oneoff=True, made from
the service's configuration with the command-line overrides. Unless `--no-deps`, the
service's dependencies are brought up first (as `up` would bring them up). The service's
ports are published only with `--service-ports`, and its network aliases are given only with
`--use-aliases`. Attached, the container's output streams to the terminal and the exit code
is the container's; our input goes to its stdin (through a TTY when ours is a terminal,
unless `-T`), as with Docker Compose.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shlex
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from compose.cli import Context
    from compose.model import Project
    from engine import Engine
    from engine.requests import CreateRequest

HELP = "Run a one-off command on a service"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add = parser.add_argument
    add("-d", "--detach", action="store_true",
        help="run container in background and print container ID")
    add("--rm", action="store_true", help="automatically remove the container when it exits")
    add("--name", help="assign a name to the container")
    add("-e", "--env", action="append", default=[], metavar="KEY=VAL",
        help="set environment variables")
    add("-l", "--label", action="append", default=[], metavar="KEY=VAL",
        help="add or override a label")
    add("--entrypoint", help="override the entrypoint of the image")
    add("-u", "--user", help="run as specified username or uid")
    add("-w", "--workdir", help="working directory inside the container")
    add("-p", "--publish", action="append", default=[], metavar="[IP:][HOST:]CONTAINER",
        help="publish a container's port(s) to the host")
    add("-v", "--volume", action="append", default=[], metavar="[SRC:]DST[:OPTS]",
        help="bind mount a volume")
    add("--no-deps", action="store_true", help="don't start linked services")
    add("--service-ports", action="store_true",
        help="run command with all service's ports enabled and mapped to the host")
    add("--use-aliases", action="store_true",
        help="use the service's network aliases in the network(s) the container connects to")
    add("-T", "--no-TTY", dest="no_tty", action="store_true",
        help="disable pseudo-TTY allocation")
    add("-i", "--interactive", action="store_true", default=True,
        help="keep STDIN open (the default)")
    add("--cap-add", action="append", default=[], help="add Linux capabilities")
    add("--cap-drop", action="append", default=[], help="drop Linux capabilities")
    add("--remove-orphans", action="store_true", help="remove containers for services not "
        "defined in the Compose file")
    add("service", metavar="SERVICE")
    add("command", nargs=argparse.REMAINDER, metavar="COMMAND")


def build_request(args: argparse.Namespace, ctx: Context, project: Project,
                  name: str, source_dir: str | None = None) -> CreateRequest:
    """The one-off container's request: the service's, with the flags' overrides."""
    from compose import translate
    from compose.commands.container_args import _environment, _mounts, _pairs, _ports

    entrypoint = None
    if args.entrypoint is not None:
        entrypoint = tuple(shlex.split(args.entrypoint))  # "" clears the image's entrypoint
    slug = name.rsplit("-", 1)[-1]
    request = translate.service_request(
        project, args.service, 1, oneoff=True, name=name,
        command=tuple(args.command) if args.command else None, entrypoint=entrypoint,
        environment=_environment(argparse.Namespace(env=args.env, env_file=[]), ctx.environ),
        extra_labels={"com.docker.compose.slug": slug, **_pairs(args.label, "--label")},
        publish_ports=args.service_ports, source_dir=source_dir)
    config = request.config
    changes: dict[str, Any] = {}
    if args.user is not None:
        changes["user"] = args.user
    if args.workdir is not None:
        changes["working_dir"] = args.workdir
    if args.cap_add:
        changes["cap_add"] = (*config.cap_add, *args.cap_add)
    if args.cap_drop:
        changes["cap_drop"] = (*config.cap_drop, *args.cap_drop)
    # Attached, our input goes in (Compose's `run` is interactive by default), through a
    # TTY when ours is one (and not -T).
    changes["stdin_open"] = not args.detach
    changes["tty"] = not args.detach and not args.no_tty and os.isatty(0)
    if changes["tty"]:
        from compose.attach import terminal_size

        changes["console_size"] = terminal_size()
    # A one-off container is not restarted; `--rm` decides its fate.
    from engine.spec import RestartPolicy

    changes["restart"] = RestartPolicy("no", 0)
    config = dataclasses.replace(config, **changes)
    extra_mounts = _mounts(argparse.Namespace(volume=args.volume, mount=[], tmpfs=[]),
                           ctx.cwd)
    networks = request.networks
    if not args.use_aliases:
        networks = tuple(dataclasses.replace(n, aliases=()) for n in networks)
    return dataclasses.replace(
        request, config=config, networks=networks, ports=(*request.ports, *_ports(args.publish)),
        mounts=(*request.mounts, *extra_mounts), auto_remove=args.rm)


def bring_up(ctx: Context, args: argparse.Namespace, engine: Engine, project: Project,
             service: str) -> str:
    """What the one-off container needs, done by the reconciler as `up` would: the
    service's networks, volumes and image, and (unless --no-deps) its dependencies, started
    and waited for as their `depends_on` conditions say. The service's own containers are
    left alone. Returns the directory for secret/config files."""
    from compose import execute, reconcile
    from compose import translate as t
    from compose.lock import project_lock
    from compose.observe import observe
    from compose.plan import Plan
    from compose.progress import for_flags
    from compose.sourcefiles import write_source
    from engine.errors import Error

    source_dir = str(engine.layout.root / "compose" / project.name)
    options = reconcile.UpOptions(services=(service,), no_deps=args.no_deps,
                                  remove_orphans=args.remove_orphans, source_dir=source_dir)
    chosen, _ = reconcile.selected_services(project, options.services, options.no_deps)
    images = [t.default_image(project, project.services[s]) for s in sorted(chosen)]
    progress = for_flags(args, ctx.stderr)
    with project_lock(engine.layout, project.name, say=progress.message):
        full = reconcile.up(project, observe(engine, project.name, images=images), options)
        keep = [n for n in full.nodes if not (n.kind == "container" and n.service == service)]
        ids = {n.id for n in keep}
        nodes = tuple(dataclasses.replace(n, after=tuple(a for a in n.after if a in ids),
                                          soft=tuple(a for a in n.soft if a in ids))
                      for n in keep)
        plan = Plan(full.project, nodes, full.warnings)
        if not plan.empty:
            from compose.cli import parallel_limit

            outcome = execute.run(engine, project, plan, progress,
                                  execute.Settings(source_dir=source_dir,
                                                   parallel=parallel_limit(args, ctx)))
            progress.close()
            if not outcome.ok:
                raise Error(execute.report(outcome, plan))
        # The service's own secret/config files (its container nodes were left out above).
        for source in t.file_sources(project, service, source_dir):
            write_source(source)
    return source_dir


def run(args: argparse.Namespace, ctx: Context) -> int:
    from compose import translate
    from compose.commands.container import start_attached
    from compose.project import load_project
    from engine.errors import NotFound

    project = load_project(args, ctx, (args.service,))
    if args.service not in project.services:
        raise NotFound(f"no such service: {args.service}")
    engine = ctx.engine()
    source_dir = bring_up(ctx, args, engine, project, args.service)
    name = args.name or translate.oneoff_name(project, args.service, os.urandom(6).hex())
    container = engine.containers.create(build_request(args, ctx, project, name, source_dir))
    return start_attached(ctx, engine, container, detach=args.detach, remove=args.rm,
                          detached_output=container.name)
