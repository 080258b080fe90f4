"""`shipyard down`: stop and remove the project's containers and networks (and, if asked,
volumes and images). Leaves nothing of the project behind."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from compose.cli import Context

HELP = "Stop and remove containers, networks"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add = parser.add_argument
    add("--remove-orphans", action="store_true",
        help="remove containers for services not defined in the Compose file")
    add("-v", "--volumes", action="store_true",
        help="remove named volumes declared in the Compose file and anonymous volumes")
    add("--rmi", choices=["local", "all"], default=None,
        help='remove images used by services: "local" only those without a custom tag')
    add("-t", "--timeout", type=float, default=None, help="shutdown timeout in seconds")
    add("--dry-run", action="store_true", help="print the plan and change nothing")
    add("--parallel", type=int, default=0, help="at most this many engine calls at once")


def run(args: argparse.Namespace, ctx: Context) -> int:
    import dataclasses

    from compose import reconcile, stopahead
    from compose import translate as t
    from compose.cli import parallel_limit
    from compose.lock import project_lock
    from compose.observe import Observed, observe, present_images, project_containers
    from compose.progress import for_flags
    from compose.project import load_if_present
    from engine.errors import Error
    from engine.fsremove import remove_tree

    # `down -p NAME` works without the Compose file, from the labels alone.
    name, project = load_if_present(args, ctx)
    engine = ctx.engine()
    progress = for_flags(args, ctx.stderr)
    parallel = parallel_limit(args, ctx)
    options = reconcile.DownOptions(remove_orphans=args.remove_orphans, volumes=args.volumes,
                                    rmi=args.rmi)
    images = [t.default_image(project, s) for s in project.services.values()] if project else []
    with project_lock(engine.layout, name, say=progress.message):
        containers = project_containers(engine, name, oneoff=None)
        asked: set[str] = set()
        if not args.dry_run and parallel <= 0:
            # The containers that go first stop while the rest is looked at and the walk
            # set up (their order is the plan's, which needs only the containers).
            first = reconcile.down(name, Observed(name, tuple(containers)), project, options)
            stopahead.ask(engine, project, stopahead.ready(first), args.timeout, asked)
        observed = observe(engine, name, images=images, containers=containers)
        if args.rmi and not project:  # the images are known from the containers' labels
            observed = dataclasses.replace(observed, images=present_images(
                engine, [c.labels.get(t.IMAGE, c.image) for c in observed.containers]))
        plan = reconcile.down(name, observed, project, options)
        if args.dry_run:
            ctx.stdout.write(plan.text())
            return 0
        for warning in plan.warnings:
            progress.message(f"warning: {warning}")
        if not plan.empty:
            from compose import execute

            # Everything leaves: the resolver hears of the leaving names once, at the end.
            with engine.networks.dns.removals_deferred():
                outcome = execute.run(engine, project, plan, progress, execute.Settings(
                    timeout=args.timeout, parallel=parallel), asked=asked)
            progress.close()
            if not outcome.ok:
                raise Error(execute.report(outcome, plan))
        # Names and firewall rules of networks whose record is gone (only removals killed
        # under older engine versions leave those).
        engine.networks.sweep()
        remove_tree(engine.layout.root / "compose" / name, ignore_errors=True)
    return 0
