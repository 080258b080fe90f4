"""`shipyard version`."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from compose.cli import Context

HELP = "Show the Shipyard version information"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-f", "--format", choices=["pretty", "json"], default="pretty")
    parser.add_argument("--short", action="store_true", help="shows only the version number")


def run(args: argparse.Namespace, ctx: Context) -> int:
    from compose import __version__ as number

    if args.short:
        print(number, file=ctx.stdout)
    elif args.format == "json":
        import json

        print(json.dumps({"version": number}), file=ctx.stdout)
    else:
        print(f"Shipyard version v{number}", file=ctx.stdout)
    return 0
