"""`shipyard logs`: the output of the project's containers, prefixed by container."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from compose.project import add_index

if TYPE_CHECKING:
    from compose.cli import Context

HELP = "View output from containers"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-f", "--follow", action="store_true", help="follow log output")
    parser.add_argument("-n", "--tail", default="all",
                        help='number of lines to show from the end of the logs ("all")')
    parser.add_argument("-t", "--timestamps", action="store_true", help="show timestamps")
    parser.add_argument("--since", help="since a timestamp (RFC 3339) or relative (42m)")
    parser.add_argument("--until", help="before a timestamp (RFC 3339) or relative (42m)")
    parser.add_argument("--no-color", action="store_true", help="produce monochrome output")
    parser.add_argument("--no-log-prefix", action="store_true",
                        help="don't print a prefix in the logs")
    add_index(parser)
    parser.add_argument("services", nargs="*", metavar="SERVICE")


def tail_count(text: str) -> int | None:
    from engine.errors import InvalidArgument

    if text in ("all", "-1", ""):
        return None
    try:
        count = int(text)
    except ValueError:
        raise InvalidArgument(f'invalid --tail "{text}": a number or "all"') from None
    return None if count < 0 else count


def use_colour(ctx: Context, ansi: str, no_color: bool) -> bool:
    """Colour when asked (`--ansi always`) or on a terminal, unless --no-color/NO_COLOR."""
    if no_color or ansi == "never":
        return False
    if ansi == "always":
        return True
    if ctx.environ.get("NO_COLOR"):
        return False
    try:
        return ctx.stdout.isatty()
    except (AttributeError, ValueError):
        return False


def run(args: argparse.Namespace, ctx: Context) -> int:
    from compose.commands import humanize
    from compose.logview import LogView, Source, stream
    from compose.project import pick, project_containers, short_name, target

    name, _, services = target(args, ctx, args.services)
    engine = ctx.engine()
    found = project_containers(engine, name, services=services)
    if args.index is not None:
        found = [pick(found, s, args.index, running=False)
                 for s in (services or sorted({c.service for c in found}))]
    view = LogView(ctx.stdout, color=use_colour(ctx, getattr(args, "ansi", "auto"),
                                                args.no_color),
                   prefix=not args.no_log_prefix, timestamps=args.timestamps)
    sources = [Source(short_name(name, c.name), str(c.container.directory))
               for c in found]
    stream(view, sources, follow=args.follow, tail=tail_count(args.tail),
           since=humanize.since(args.since), until=humanize.since(args.until))
    return 0
