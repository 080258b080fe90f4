"""`shipyard wait SERVICE...`: block until the services' containers stop; print each exit
code (like `docker wait`) and exit with the first container's."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from compose.cli import Context

HELP = "Block until containers of all (or specified) services stop"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--down-project", action="store_true",
                        help="drops the project when the first container stops")
    parser.add_argument("services", nargs="*", metavar="SERVICE")


def run(args: argparse.Namespace, ctx: Context) -> int:
    from compose.project import project_containers, target
    from engine.errors import Unavailable
    from engine.runtime import launch

    if args.down_project:
        raise Unavailable("wait --down-project is not supported yet; run `shipyard down` "
                          "after `shipyard wait`")
    name, _, services = target(args, ctx, args.services)
    engine = ctx.engine()
    found = project_containers(engine, name, services=services)
    first: int | None = None
    for item in found:
        code = launch.wait(str(item.container.directory))
        engine.containers.release(item.container)
        print(code, file=ctx.stdout, flush=True)
        first = code if first is None else first
    return first or 0
