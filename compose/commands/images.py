"""`shipyard images [SERVICE...]`: the images the project's containers were created from."""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from compose.cli import Context

HELP = "List images used by the created containers"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-q", "--quiet", action="store_true", help="only display IDs")
    parser.add_argument("--format", default="table", choices=["table", "json"])
    parser.add_argument("services", nargs="*", metavar="SERVICE")


def run(args: argparse.Namespace, ctx: Context) -> int:
    from compose.commands.container import _print_table
    from compose.commands.image import human_size
    from compose.project import project_containers, target
    from engine import reference
    from engine.errors import Error

    name, _, services = target(args, ctx, args.services)
    engine = ctx.engine()
    rows = []
    for item in sorted(project_containers(engine, name, services=services, oneoff=None),
                       key=lambda c: c.name):
        container = item.container
        try:
            ref = reference.parse(container.image)
            repository, tag = ref.familiar_name(), ref.tag or ""
        except Error:
            repository, tag = container.image, ""
        try:
            size = engine.images.get(container.image_id).size
        except Error:
            size = 0
        rows.append({"ID": container.image_id, "ContainerName": container.name,
                     "Repository": repository, "Tag": tag, "Size": size})
    if args.quiet:
        for image_id in dict.fromkeys(r["ID"] for r in rows):
            print(image_id.removeprefix("sha256:")[:12], file=ctx.stdout)
    elif args.format == "json":
        print(json.dumps(rows), file=ctx.stdout)
    else:
        table = [("CONTAINER", "REPOSITORY", "TAG", "IMAGE ID", "SIZE")]
        table += [(r["ContainerName"], r["Repository"], r["Tag"],
                   r["ID"].removeprefix("sha256:")[:12], human_size(r["Size"])) for r in rows]
        _print_table(ctx, table)
    return 0
