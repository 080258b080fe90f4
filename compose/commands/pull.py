"""`shipyard pull [SERVICE...]`: pull the images of the project's services, in parallel,
over one registry client (credentials from Docker's config.json, as `docker login` left
them)."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from compose.cli import Context
    from engine.registry import RegistryClient

HELP = "Pull service images"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-q", "--quiet", action="store_true", help="pull without printing progress")
    parser.add_argument("--ignore-pull-failures", action="store_true",
                        help="pull what it can and ignore images with pull failures")
    parser.add_argument("--ignore-buildable", action="store_true",
                        help="ignore images that can be built")
    parser.add_argument("--include-deps", action="store_true",
                        help="also pull services declared as dependencies")
    parser.add_argument("--policy", choices=["missing", "always"], default=None,
                        help="apply pull policy (missing|always)")
    parser.add_argument("services", nargs="*", metavar="SERVICE")


def registry_client(ctx: Context) -> RegistryClient:
    """A client with the user's Docker credentials and insecure registries (see
    `imagebuild.registry_factory`)."""
    from compose.commands.imagebuild import registry_factory

    client: RegistryClient = registry_factory(ctx)()
    return client


def run(args: argparse.Namespace, ctx: Context) -> int:
    import anyio

    from compose.project import load_project
    from engine.errors import Error, NotFound
    from engine.pull import pull_image

    project = load_project(args, ctx, args.services)
    names = list(args.services) or list(project.services)
    if args.include_deps and args.services:
        from compose.graph import build

        names = sorted(build(project).dependencies_of(args.services))
    for name in names:
        if name not in project.services:
            raise NotFound(f"no such service: {name}")
    engine = ctx.engine()
    images = engine.images
    wanted: dict[str, list[str]] = {}  # image -> services
    buildable: set[str] = set()
    for name in names:
        service = project.services[name]
        if not service.image or service.pull_policy in ("never", "build"):
            continue
        if service.build is not None:
            if args.ignore_buildable:
                continue
            buildable.add(service.image)
        if (args.policy or service.pull_policy) == "missing":
            try:
                images.resolve(service.image)
                continue
            except NotFound:
                pass
        wanted.setdefault(service.image, []).append(name)
    failures: list[str] = []

    def say(text: str) -> None:
        if not args.quiet:
            print(text, file=ctx.stderr, flush=True)

    async def one(client: RegistryClient, image: str) -> None:
        for service in wanted[image]:
            say(f" {service} Pulling")
        try:
            await pull_image(image, images, client)
        except Error as error:
            if image in buildable or args.ignore_pull_failures:
                # A service that can be built may not be in any registry yet.
                say(f" {wanted[image][0]} Warning {error}")
                return
            failures.append(str(error))
            say(f" {wanted[image][0]} Error {error}")
            return
        for service in wanted[image]:
            say(f" {service} Pulled")

    async def main() -> None:
        async with registry_client(ctx) as client, anyio.create_task_group() as tg:
            for image in wanted:
                tg.start_soon(one, client, image)

    if wanted:
        anyio.run(main)
    if failures:
        from engine.errors import Error as Failure

        raise Failure(failures[0] if len(failures) == 1 else "\n".join(failures))
    return 0
