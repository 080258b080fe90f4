"""`shipyard network ...`: engine-level networks with Docker's flag names."""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from compose.cli import Context

HELP = "Manage networks (create, ls, inspect, rm, prune, connect, disconnect)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="network_command", metavar="COMMAND")
    p = sub.add_parser("create", help="create a network")
    p.add_argument("-d", "--driver", default="bridge")
    p.add_argument("--subnet")
    p.add_argument("--gateway")
    p.add_argument("--ip-range")
    p.add_argument("--internal", action="store_true")
    p.add_argument("--attachable", action="store_true")
    p.add_argument("--ipv6", action="store_true")
    p.add_argument("-l", "--label", action="append", default=[])
    p.add_argument("-o", "--opt", action="append", default=[])
    p.add_argument("name")
    for name in ("ls", "list"):
        p = sub.add_parser(name, help="list networks")
        p.add_argument("-q", "--quiet", action="store_true")
        p.add_argument("--filter", action="append", default=[])
    sub.add_parser("inspect", help="show networks as JSON").add_argument("networks", nargs="+")
    for name in ("rm", "remove"):
        sub.add_parser(name, help="remove networks").add_argument("networks", nargs="+")
    p = sub.add_parser("prune", help="remove unused networks")
    p.add_argument("-f", "--force", action="store_true")
    p = sub.add_parser("connect", help="connect a running container to a network")
    p.add_argument("--alias", action="append", default=[])
    p.add_argument("--ip")
    p.add_argument("network")
    p.add_argument("container")
    p = sub.add_parser("disconnect", help="disconnect a container from a network")
    p.add_argument("-f", "--force", action="store_true")
    p.add_argument("network")
    p.add_argument("container")


def _pairs(items: list[str]) -> dict[str, str]:
    return dict(item.partition("=")[::2] for item in items)


def _filters(items: list[str]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for item in items:
        key, _, value = item.partition("=")
        out.setdefault(key, []).append(value)
    return out


def run(args: argparse.Namespace, ctx: Context) -> int:
    from engine.errors import InvalidArgument

    command = {"list": "ls", "remove": "rm"}.get(args.network_command, args.network_command)
    if command is None:
        raise InvalidArgument("usage: shipyard network COMMAND (create, ls, inspect, rm, "
                              "prune, connect, disconnect)")
    engine = ctx.engine()
    networks = engine.networks
    if command == "create":
        network = networks.create_network(
            args.name, driver=args.driver, subnet=args.subnet, gateway=args.gateway,
            ip_range=args.ip_range, internal=args.internal, labels=_pairs(args.label),
            options=_pairs(args.opt), attachable=args.attachable, enable_ipv6=args.ipv6)
        print(network.id, file=ctx.stdout)
    elif command == "ls":
        found = networks.list(_filters(args.filter))
        if args.quiet:
            for n in found:
                print(n.id[:12], file=ctx.stdout)
        else:
            print(f"{'NETWORK ID':<14}{'NAME':<24}{'DRIVER':<10}SCOPE", file=ctx.stdout)
            for n in found:
                print(f"{n.id[:12]:<14}{n.name:<24}{n.driver:<10}local", file=ctx.stdout)
    elif command == "inspect":
        print(json.dumps([networks.inspect(n) for n in args.networks], indent=4),
              file=ctx.stdout)
    elif command == "rm":
        for name in args.networks:
            networks.remove_network(name)
            print(name, file=ctx.stdout)
    elif command == "prune":
        removed = networks.prune({})
        if removed:
            print("Deleted Networks:", file=ctx.stdout)
            for name in removed:
                print(getattr(name, "name", name), file=ctx.stdout)
    else:
        return _connection(args, ctx, engine, command)
    return 0


def _connection(args: argparse.Namespace, ctx: Context, engine, command: str) -> int:
    from engine import netns
    from engine.errors import Conflict

    container = engine.containers.get(args.container)
    if command == "disconnect":
        engine.networks.disconnect(args.network, container.id, force=args.force)
        return 0
    path = netns.path_of(engine.layout, container.id[:32])
    if engine.containers.state(container).status != "running" or not netns.exists(path):
        raise Conflict(f"container {container.name} is not running on a bridge network")
    engine.networks.connect(args.network, container.id, str(path),
                            container_name=container.name, aliases=args.alias,
                            ipv4_address=args.ip)
    return 0
