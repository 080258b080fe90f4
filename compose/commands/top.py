"""`shipyard top [SERVICE...]`: the processes running in the project's containers."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from compose.cli import Context

HELP = "Display the running processes"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("services", nargs="*", metavar="SERVICE")


def run(args: argparse.Namespace, ctx: Context) -> int:
    from compose.commands.container import _print_table
    from compose.project import project_containers, target
    from engine.runtime import launch

    name, _, services = target(args, ctx, args.services)
    engine = ctx.engine()
    found = project_containers(engine, name, services=services, oneoff=None, running=True)
    for number, item in enumerate(sorted(found, key=lambda c: c.name)):
        processes = launch.top(str(item.container.directory))
        if number:
            print(file=ctx.stdout)
        print(item.name, file=ctx.stdout)
        rows = [("UID", "PID", "PPID", "STAT", "CMD")]
        rows += [(str(p["uid"]), str(p["pid"]), str(p["ppid"]), str(p["state"]), str(p["cmd"]))
                 for p in processes]
        _print_table(ctx, rows)
    return 0
