"""`shipyard volume ...`: engine-level volumes with Docker's flag names."""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from compose.cli import Context

HELP = "Manage volumes (create, ls, inspect, rm, prune)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="volume_command", metavar="COMMAND")
    p = sub.add_parser("create", help="create a volume")
    p.add_argument("-d", "--driver", default="local")
    p.add_argument("-o", "--opt", action="append", default=[])
    p.add_argument("-l", "--label", action="append", default=[])
    p.add_argument("name", nargs="?")
    for name in ("ls", "list"):
        p = sub.add_parser(name, help="list volumes")
        p.add_argument("-q", "--quiet", action="store_true")
        p.add_argument("--filter", action="append", default=[])
    sub.add_parser("inspect", help="show volumes as JSON").add_argument("volumes", nargs="+")
    for name in ("rm", "remove"):
        p = sub.add_parser(name, help="remove volumes")
        p.add_argument("-f", "--force", action="store_true")
        p.add_argument("volumes", nargs="+")
    p = sub.add_parser("prune", help="remove unused volumes")
    p.add_argument("-a", "--all", action="store_true")
    p.add_argument("-f", "--force", action="store_true")


def _pairs(items: list[str]) -> dict[str, str]:
    return dict(item.partition("=")[::2] for item in items)


def run(args: argparse.Namespace, ctx: Context) -> int:
    from engine.errors import InvalidArgument

    command = {"list": "ls", "remove": "rm"}.get(args.volume_command, args.volume_command)
    if command is None:
        raise InvalidArgument("usage: shipyard volume COMMAND (create, ls, inspect, rm, prune)")
    volumes = ctx.engine().volumes
    if command == "create":
        volume = volumes.create(args.name, driver=args.driver, options=_pairs(args.opt),
                                labels=_pairs(args.label))
        print(volume.name, file=ctx.stdout)
    elif command == "ls":
        labels: dict[str, str | None] = {}
        for item in args.filter:
            key, _, value = item.partition("=")
            if key != "label":
                raise InvalidArgument(f'--filter "{item}": only label=KEY[=VALUE] is supported')
            name, has, wanted = value.partition("=")
            labels[name] = wanted if has else None
        found = volumes.list(labels)
        if args.quiet:
            for v in found:
                print(v.name, file=ctx.stdout)
        else:
            print(f"{'DRIVER':<10}VOLUME NAME", file=ctx.stdout)
            for v in found:
                print(f"{v.driver:<10}{v.name}", file=ctx.stdout)
    elif command == "inspect":
        print(json.dumps([volumes.get(n).inspect() for n in args.volumes], indent=4),
              file=ctx.stdout)
    elif command == "rm":
        for name in args.volumes:
            volumes.remove(name, force=args.force)
            print(name, file=ctx.stdout)
    elif command == "prune":
        removed = volumes.prune(all_volumes=args.all)
        print("Deleted Volumes:" if removed else "Total reclaimed space: 0B", file=ctx.stdout)
        for name in removed:
            print(name, file=ctx.stdout)
    return 0
