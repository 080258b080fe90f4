"""`shipyard push [SERVICE...]`: push the images of services that are built and named
(`build` with `image`), as Docker Compose does."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from compose.cli import Context

HELP = "Push service images"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-q", "--quiet", action="store_true", help="push without printing progress")
    parser.add_argument("--ignore-push-failures", action="store_true",
                        help="push what it can and ignore images with push failures")
    parser.add_argument("--include-deps", action="store_true",
                        help="also push images of services declared as dependencies")
    parser.add_argument("services", nargs="*", metavar="SERVICE")


def run(args: argparse.Namespace, ctx: Context) -> int:
    import anyio

    from compose.commands.pull import registry_client
    from compose.project import check_services, load_project
    from engine.errors import Error
    from engine.push import push_tagged

    project = load_project(args, ctx, args.services)
    names = list(check_services(project, args.services)) or list(project.services)
    if args.include_deps and args.services:
        from compose.graph import build

        names = sorted(build(project).dependencies_of(args.services))
    targets: dict[str, str] = {}  # image -> first service
    for name in names:
        service = project.services[name]
        if service.build is not None and service.image:
            targets.setdefault(service.image, name)
    engine = ctx.engine()
    failures: list[str] = []

    def say(text: str) -> None:
        if not args.quiet:
            print(text, file=ctx.stderr, flush=True)

    async def main() -> None:
        async with registry_client(ctx) as client:
            for image, service in targets.items():
                say(f" {service} Pushing")
                try:
                    await push_tagged(image, engine.images, client)
                except Error as error:
                    if not args.ignore_push_failures:
                        failures.append(str(error))
                    say(f" {service} Error {error}")
                    continue
                say(f" {service} Pushed")

    if targets:
        anyio.run(main)
    if failures:
        raise Error("\n".join(failures))
    return 0
