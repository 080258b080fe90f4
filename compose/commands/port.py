"""`shipyard port SERVICE PRIVATE_PORT`: the public address a container port is bound to."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from compose.project import add_index

if TYPE_CHECKING:
    from compose.cli import Context

HELP = "Print the public port for a port binding"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--protocol", default="tcp", choices=["tcp", "udp"],
                        help="tcp or udp")
    add_index(parser)
    parser.add_argument("service", metavar="SERVICE")
    parser.add_argument("private_port", metavar="PRIVATE_PORT")


def run(args: argparse.Namespace, ctx: Context) -> int:
    from compose.project import pick, project_containers, target
    from engine.errors import InvalidArgument, NotFound

    try:
        wanted = int(args.private_port)
    except ValueError:
        raise InvalidArgument(f'invalid port "{args.private_port}": expected a number') \
            from None
    name, _, _ = target(args, ctx, (args.service,))
    engine = ctx.engine()
    found = project_containers(engine, name, services=(args.service,))
    chosen = pick(found, args.service, args.index)
    for port in engine.containers.published_ports(chosen.container):
        if port.container_port == wanted and port.protocol == args.protocol:
            print(port.host, file=ctx.stdout)
            return 0
    raise NotFound(f"no port {wanted}/{args.protocol} for container {chosen.name}")
