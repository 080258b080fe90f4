"""`shipyard build [SERVICE...]`: build the images of the project's services that have a
`build:` section (all, or those named; services without one are skipped), at most two at a
time, as `docker compose build` does. Each image is tagged with the service's `image:` or
`<project>-<service>`, plus `build.tags`. Progress goes to stderr, one line per service
(`Service web  Built`) and, in plain mode, one per build step."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from compose.cli import Context

HELP = "Build or rebuild services"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add = parser.add_argument
    add("--build-arg", dest="build_args", action="append", default=[], metavar="KEY[=VALUE]",
        help="set a build-time variable for services (KEY alone: from the environment)")
    add("--no-cache", action="store_true", help="do not use cache when building the image")
    add("--pull", action="store_true", help="always attempt to pull a newer version of the "
        "base images")
    add("-q", "--quiet", action="store_true", help="don't print anything to stdout/stderr")
    add("--with-dependencies", action="store_true",
        help="also build dependencies (transitively)")
    add("--parallel", type=int, default=2, help="at most this many builds at once")
    add("services", nargs="*", metavar="SERVICE")


def build_args(items: list[str], environ: dict[str, str]) -> dict[str, str]:
    """`--build-arg` values: KEY=VALUE, or KEY alone taking the environment's value (and
    left out when the environment has none, as Docker does)."""
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if sep:
            out[key] = value
        elif key in environ:
            out[key] = environ[key]
    return out


def run(args: argparse.Namespace, ctx: Context) -> int:
    from compose import imageplan
    from compose.commands.imagebuild import registry_factory
    from compose.lock import project_lock
    from compose.progress import for_flags
    from compose.project import check_services, load_project
    from engine.errors import Error, InvalidArgument

    if args.parallel < 1:
        raise InvalidArgument(f"--parallel {args.parallel}: must be 1 or more")
    project = load_project(args, ctx, args.services)
    names = check_services(project, args.services)
    if names and args.with_dependencies:
        from compose.graph import build as graph

        names = tuple(sorted(graph(project).dependencies_of(names)))
    plan = imageplan.build_plan(project, names)
    if plan.empty:
        return 0
    progress = for_flags(args, ctx.stderr, quiet=args.quiet, title="Building")
    engine = ctx.engine()
    from compose import execute  # only when there is something to build

    settings = execute.Settings(registry=registry_factory(ctx), build_parallel=args.parallel,
                                no_cache=args.no_cache, build_pull=args.pull,
                                build_args=build_args(args.build_args, ctx.environ))
    with project_lock(engine.layout, project.name, say=progress.message):
        outcome = execute.run(engine, project, plan, progress, settings)
    progress.close()
    if not outcome.ok:
        raise Error(execute.report(outcome, plan))
    return 0
