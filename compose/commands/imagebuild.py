"""`shipyard image build|pull|push`: the engine's builder and registry client, with output
shaped like Docker's (progress on stderr, one line per status change).

Imported only when one of these subcommands runs; httpx and anyio load inside them."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from compose.cli import Context
    from engine.images import Images


def add_build_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("-t", "--tag", dest="tags", action="append", default=[],
                   metavar="NAME[:TAG]", help="name and optionally a tag (may be repeated)")
    p.add_argument("-f", "--file", dest="dockerfile", metavar="PATH",
                   help="the Dockerfile (default: CONTEXT/Dockerfile; - for stdin)")
    p.add_argument("--build-arg", dest="build_args", action="append", default=[],
                   metavar="KEY[=VALUE]", help="set a build-time variable")
    p.add_argument("--target", help="the build stage to build")
    p.add_argument("--no-cache", action="store_true", help="do not use the build cache")
    p.add_argument("--pull", action="store_true", help="always pull the base images")
    p.add_argument("--network", help='network for RUN steps ("host", "none", or a network; '
                   "default: the engine's bridge)")
    p.add_argument("--label", dest="labels", action="append", default=[], metavar="KEY=VALUE",
                   help="set a label on the image")
    p.add_argument("--add-host", dest="add_hosts", action="append", default=[],
                   metavar="HOST:IP", help="add a custom host-to-IP mapping for RUN steps")
    p.add_argument("--shm-size", help="size of /dev/shm for RUN steps (e.g. 64m)")
    p.add_argument("-q", "--quiet", action="store_true",
                   help="print only the image id on success")
    p.add_argument("context", metavar="CONTEXT", help="the build context directory")


def add_registry_arguments(sub: Any) -> None:
    p = sub.add_parser("pull", help="Download an image from a registry")
    p.add_argument("--platform", help="os/arch[/variant] (default: this host's)")
    p.add_argument("-q", "--quiet", action="store_true", help="suppress verbose output")
    p.add_argument("reference", metavar="NAME[:TAG|@DIGEST]")
    p = sub.add_parser("push", help="Upload an image to a registry")
    p.add_argument("-q", "--quiet", action="store_true", help="suppress verbose output")
    p.add_argument("reference", metavar="NAME[:TAG]")


def registry_factory(ctx: Context) -> Callable[[], Any]:
    """A maker of `RegistryClient`s with the user's logins (`DOCKER_CONFIG`) and the
    insecure registries named in `SHIPYARD_INSECURE_REGISTRIES` (comma-separated)."""
    insecure = [s.strip() for s in ctx.environ.get("SHIPYARD_INSECURE_REGISTRIES", "")
                .split(",") if s.strip()]

    def make() -> Any:
        # httpx loads here, only when a registry is really needed (~100 ms).
        from engine.registry import RegistryClient
        from engine.registryauth import CredentialStore, default_config_dir

        return RegistryClient(credentials=CredentialStore(default_config_dir(ctx.environ)),
                              insecure_registries=insecure)

    return make


# -- build ---------------------------------------------------------------------------------

def build(args: argparse.Namespace, ctx: Context, images: Images) -> int:
    from compose.commands.container_args import _bytes
    from compose.loader.syntax import parse_extra_host
    from engine import Engine
    from engine.build import BuildEvent, build
    from engine.errors import InvalidArgument

    context = os.path.join(ctx.cwd, args.context)
    inline = None
    dockerfile = "Dockerfile"
    if args.dockerfile == "-":
        inline = sys.stdin.read()
    elif args.dockerfile:
        dockerfile = os.path.join(ctx.cwd, args.dockerfile)
    build_args = {}
    for item in args.build_args:
        key, sep, value = item.partition("=")
        if sep:
            build_args[key] = value
        elif key in ctx.environ:
            build_args[key] = ctx.environ[key]
    labels = {}
    for item in args.labels:
        key, _, value = item.partition("=")
        labels[key] = value
    hosts = []
    for item in args.add_hosts:  # as `container run --add-host` reads them
        try:
            hosts.append(parse_extra_host(item))
        except ValueError as exc:
            raise InvalidArgument(f"--add-host: {exc}") from None
    shm = _bytes(args.shm_size, "--shm-size") if args.shm_size else None
    err = ctx.stderr

    def progress(event: BuildEvent) -> None:
        if args.quiet:
            return
        if event.kind == "step":
            print(f"[{event.stage} {event.step}/{event.total}] {event.text}", file=err)
        elif event.kind == "cached":
            print(" ---> Using cache", file=err)
        elif event.kind == "output":
            err.write(event.text if event.text.endswith("\n") else event.text + "\n")
        elif event.kind == "note":
            print(event.text, file=err)
        err.flush()

    engine = Engine(images.layout.root)
    image = build(engine, context, dockerfile, dockerfile_inline=inline, tags=args.tags,
                  build_args=build_args, target=args.target, labels=labels,
                  network=args.network, extra_hosts=hosts, shm_size=shm,
                  no_cache=args.no_cache, pull=args.pull, progress=progress,
                  registry=registry_factory(ctx))
    if args.quiet:
        print(image.id, file=ctx.stdout)
        return 0
    print(f"Successfully built {image.short_id}", file=err)
    for tag in args.tags:
        print(f"Successfully tagged {tag}", file=err)
    return 0


# -- pull / push ---------------------------------------------------------------------------

class _Lines:
    """Docker's non-interactive progress: a line when a layer's status changes."""

    def __init__(self, out: Any, quiet: bool) -> None:
        self.out, self.quiet = out, quiet
        self.last: dict[str, str] = {}

    def __call__(self, event: Any) -> None:
        if self.quiet or self.last.get(event.id) == event.status:
            return
        self.last[event.id] = event.status
        if event.status.startswith(event.id + ":"):
            line = event.status
        elif event.total and event.status in ("Downloading", "Pushing"):
            line = f"{event.id}: {event.status} {_human(event.current)}/{_human(event.total)}"
        else:
            line = f"{event.id}: {event.status}"
        print(line, file=self.out, flush=True)


def _human(size: float) -> str:
    from compose.commands.image import human_size

    return human_size(size)


def pull(args: argparse.Namespace, ctx: Context, images: Images) -> int:
    from engine import pull as pulling
    from engine.errors import NotFound

    target = pulling.parse_target(args.reference)
    platform = None
    if args.platform:
        from engine.imageformat import parse_platform
        platform = parse_platform(args.platform)
    err = ctx.stderr
    if not args.quiet:
        from engine import reference

        given = reference.parse(args.reference, default_tag=False)
        if not given.tag and not given.digest:
            print("Using default tag: latest", file=err)
        repo = target.ref.familiar_name() if target.ref.domain == "docker.io" \
            else target.repository.path
        print(f"{target.tag or target.digest}: Pulling from {repo}", file=err, flush=True)
    try:
        before = images.resolve_id(target.canonical)
    except NotFound:
        before = None
    kwargs: dict[str, Any] = {"progress": _Lines(err, args.quiet)}
    if platform is not None:
        kwargs["platform"] = platform
    image = pulling.pull(target.canonical, images, registry_factory(ctx), **kwargs)
    if not args.quiet:
        digests = [d for d in image.repo_digests if d.startswith(target.ref.name + "@")]
        if digests:
            print(f"Digest: {digests[0].split('@', 1)[1]}", file=err)
        status = ("Image is up to date for" if before == image.id
                  else "Downloaded newer image for")
        print(f"Status: {status} {target.familiar}", file=err)
    print(target.canonical, file=ctx.stdout)
    return 0


def push(args: argparse.Namespace, ctx: Context, images: Images) -> int:
    import anyio

    from engine.pull import parse_target
    from engine.push import push_tagged

    target = parse_target(args.reference)
    images.resolve(target.canonical)  # a clear "No such image" before any network
    if not args.quiet:
        print(f"The push refers to repository [{target.ref.name}]", file=ctx.stderr,
              flush=True)
    make = registry_factory(ctx)
    progress = _Lines(ctx.stderr, args.quiet)

    async def main() -> Any:
        async with make() as client:
            return await push_tagged(target.canonical, images, client, progress=progress)

    anyio.run(main)
    if args.quiet:
        print(target.canonical, file=ctx.stdout)
    return 0
