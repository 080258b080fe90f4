"""`shipyard exec SERVICE COMMAND...`: run a command in a service's running container.

As in Docker Compose, stdin is attached and a TTY is allocated when stdin is a terminal
(`-T` turns the TTY off); the exit code is the command's.
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from compose.project import add_index

if TYPE_CHECKING:
    from compose.cli import Context

HELP = "Execute a command in a running container"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-d", "--detach", action="store_true",
                        help="detached mode: run the command in the background")
    parser.add_argument("-e", "--env", action="append", default=[], metavar="KEY=VAL",
                        help="set environment variables")
    parser.add_argument("-T", "--no-TTY", dest="no_tty", action="store_true",
                        help="disable pseudo-TTY allocation")
    parser.add_argument("-i", "--interactive", action="store_true", default=True,
                        help="keep STDIN open (the default)")
    parser.add_argument("-t", "--tty", action="store_true", default=True,
                        help="allocate a pseudo-TTY when stdin is a terminal (the default)")
    parser.add_argument("-u", "--user", help="run the command as this user")
    parser.add_argument("-w", "--workdir", help="path to workdir directory for this command")
    parser.add_argument("--privileged", action="store_true",
                        help="give extended privileges to the process")
    add_index(parser)
    parser.add_argument("service", metavar="SERVICE")
    parser.add_argument("command", nargs=argparse.REMAINDER, metavar="COMMAND")


def stdin_is_terminal() -> bool:
    try:
        return sys.stdin is not None and sys.stdin.isatty()
    except (AttributeError, ValueError):
        return False


def environment(items: list[str], environ: dict[str, str]) -> list[str]:
    """`-e K=V` as given; `-e K` takes the caller's value (dropped when unset)."""
    out = []
    for item in items:
        key, sep, _ = item.partition("=")
        if sep:
            out.append(item)
        elif key in environ:
            out.append(f"{key}={environ[key]}")
    return out


def run(args: argparse.Namespace, ctx: Context) -> int:
    from compose.project import pick, project_containers, target
    from engine.errors import InvalidArgument, Unavailable
    from engine.runtime import launch

    if not args.command:
        raise InvalidArgument("exec requires at least 2 arguments: SERVICE COMMAND [ARGS...]")
    if args.privileged:
        # The runtime's exec joins the container's own capability set; it has no way to
        # widen it for one process yet.
        raise Unavailable("exec --privileged is not supported yet")
    name, _, _ = target(args, ctx, (args.service,))
    engine = ctx.engine()
    found = project_containers(engine, name, services=(args.service,))
    chosen = pick(found, args.service, args.index)
    tty = not args.no_tty and not args.detach and stdin_is_terminal()
    return launch.exec(str(chosen.container.directory), list(args.command),
                       env=environment(args.env, ctx.environ), user=args.user,
                       workdir=args.workdir, tty=tty, detach=args.detach)
