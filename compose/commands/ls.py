"""`shipyard ls`: the Compose projects that have containers in the engine, by label."""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from compose.cli import Context

HELP = "List running compose projects"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-a", "--all", action="store_true", help="show all stopped projects")
    parser.add_argument("-q", "--quiet", action="store_true", help="only display project names")
    parser.add_argument("--filter", action="append", default=[], metavar="name=NAME",
                        help="filter output based on conditions provided")
    parser.add_argument("--format", default="table", choices=["table", "json"])


def projects(engine: object) -> dict[str, dict]:
    """Project name -> {"statuses": {status: count}, "files": config files (label)}."""
    from compose.project import LABEL_CONFIG_FILES, LABEL_PROJECT

    out: dict[str, dict] = {}
    for container in engine.containers.list({LABEL_PROJECT: None}):  # type: ignore[attr-defined]
        entry = out.setdefault(container.labels[LABEL_PROJECT],
                               {"statuses": {}, "files": ""})
        status = engine.containers.state(container).status  # type: ignore[attr-defined]
        entry["statuses"][status] = entry["statuses"].get(status, 0) + 1
        entry["files"] = container.labels.get(LABEL_CONFIG_FILES, "") or entry["files"]
    return out


def run(args: argparse.Namespace, ctx: Context) -> int:
    from compose.commands.container import _print_table
    from engine.errors import InvalidArgument

    names: list[str] = []
    for item in args.filter:
        key, sep, value = item.partition("=")
        if key != "name" or not sep:
            raise InvalidArgument(f'invalid filter "{item}": only name=NAME is supported')
        names.append(value)
    rows = []
    for name, entry in sorted(projects(ctx.engine()).items()):
        statuses = entry["statuses"]
        if not args.all and not any(s in statuses for s in ("running", "paused",
                                                             "restarting")):
            continue
        if names and not any(n in name for n in names):
            continue
        status = ", ".join(f"{s}({n})" for s, n in sorted(statuses.items()))
        rows.append((name, status, entry["files"]))
    if args.quiet:
        for name, _, _ in rows:
            print(name, file=ctx.stdout)
    elif args.format == "json":
        print(json.dumps([{"Name": n, "Status": s, "ConfigFiles": f} for n, s, f in rows],
                         indent=None), file=ctx.stdout)
    else:
        _print_table(ctx, [("NAME", "STATUS", "CONFIG FILES"), *rows])
    return 0
