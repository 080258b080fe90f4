"""`shipyard image import|load|save|ls|inspect|rm|prune|tag`, with Docker's flags and output."""

from __future__ import annotations

import argparse
import json
import re
import sys
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from compose.cli import Context
    from engine.images import Image, Images

HELP = "Manage images"
DEFAULT_ROOT = "/var/lib/shipyard"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="image_command", metavar="COMMAND")

    p = sub.add_parser("import", help="Import the contents from a tarball to create a "
                       "filesystem image")
    p.add_argument("-c", "--change", action="append", default=[], metavar="CHANGE",
                   help="apply a Dockerfile instruction to the created image")
    p.add_argument("-m", "--message", default="", help="set commit message for imported image")
    p.add_argument("--platform", help="set platform (os/arch[/variant]) of the image")
    p.add_argument("file", metavar="FILE", help="tarball (plain, gzip or zstd), or - for stdin")
    p.add_argument("reference", nargs="?", metavar="REPOSITORY[:TAG]")

    p = sub.add_parser("load", help="Load an image from a tar archive or STDIN")
    p.add_argument("-i", "--input", help="read from tar archive file, instead of STDIN")
    p.add_argument("-q", "--quiet", action="store_true", help="suppress the load output")

    p = sub.add_parser("save", help="Save one or more images to a tar archive (streamed to "
                       "STDOUT by default)")
    p.add_argument("-o", "--output", help="write to a file, instead of STDOUT")
    p.add_argument("images", nargs="+", metavar="IMAGE")

    p = sub.add_parser("ls", aliases=["list"], help="List images")
    p.add_argument("repository", nargs="?", metavar="REPOSITORY[:TAG]")
    p.add_argument("-a", "--all", action="store_true", help="show all images")
    p.add_argument("-q", "--quiet", action="store_true", help="only show image IDs")
    p.add_argument("--no-trunc", action="store_true", help="don't truncate output")
    p.add_argument("--digests", action="store_true", help="show digests")
    p.add_argument("--format", default="table",
                   help="'table', 'json', or a template such as '{{.Repository}}:{{.Tag}}'")

    p = sub.add_parser("inspect", help="Display detailed information on one or more images")
    p.add_argument("-f", "--format", help="format with a template such as '{{.Id}}' or "
                   "'{{json .Config}}'")
    p.add_argument("images", nargs="+", metavar="IMAGE")

    p = sub.add_parser("rm", aliases=["remove", "rmi"], help="Remove one or more images")
    p.add_argument("-f", "--force", action="store_true", help="force removal of the image")
    p.add_argument("--no-prune", action="store_true", help="accepted for compatibility")
    p.add_argument("images", nargs="+", metavar="IMAGE")

    p = sub.add_parser("prune", help="Remove unused images")
    p.add_argument("-a", "--all", action="store_true",
                   help="remove all unused images, not just dangling ones")
    p.add_argument("-f", "--force", action="store_true", help="do not prompt for confirmation")

    p = sub.add_parser("tag", help="Create a tag TARGET_IMAGE that refers to SOURCE_IMAGE")
    p.add_argument("source", metavar="SOURCE_IMAGE[:TAG]")
    p.add_argument("target", metavar="TARGET_IMAGE[:TAG]")

    from compose.commands import imagebuild

    p = sub.add_parser("build", help="Build an image from a Dockerfile")
    imagebuild.add_build_arguments(p)
    imagebuild.add_registry_arguments(sub)


def run(args: argparse.Namespace, ctx: Context) -> int:
    command = args.image_command
    if command is None:
        from engine.errors import InvalidArgument
        raise InvalidArgument("usage: shipyard image COMMAND (build, pull, push, import, load, "
                              "save, ls, inspect, rm, prune, tag)")
    command = {"list": "ls", "remove": "rm", "rmi": "rm"}.get(command, command)
    return int(_COMMANDS[command](args, ctx, _images(ctx)) or 0)


def _images(ctx: Context) -> Images:
    from engine.images import Images
    from engine.layout import Layout

    root = ctx.environ.get("SHIPYARD_ROOT", DEFAULT_ROOT)
    try:
        return Images(Layout.at(root))
    except PermissionError as error:
        from engine.errors import Unavailable
        raise Unavailable(f"cannot use the engine root {root}: {error.strerror} (run as root, "
                          "or set SHIPYARD_ROOT to a directory you own)") from None


def _import(args: argparse.Namespace, ctx: Context, images: Images) -> int:
    platform = None
    if args.platform:
        from engine.imageformat import parse_platform
        platform = parse_platform(args.platform)
    source = sys.stdin.buffer if args.file == "-" else args.file
    image = images.import_rootfs(source, args.reference, args.change, args.message, platform)
    print(image.id, file=ctx.stdout)
    return 0


def _load(args: argparse.Namespace, ctx: Context, images: Images) -> int:
    from engine import imagearchive

    if args.input is None and sys.stdin.isatty():
        from engine.errors import InvalidArgument
        raise InvalidArgument("requested load from stdin, but stdin is empty (use -i FILE)")
    lines = imagearchive.load(images, args.input if args.input else sys.stdin.buffer)
    if not args.quiet:
        for line in lines:
            print(line, file=ctx.stdout)
    return 0


def _save(args: argparse.Namespace, ctx: Context, images: Images) -> int:
    from engine import imagearchive

    if args.output:
        imagearchive.save_to_file(images, args.images, args.output)
        return 0
    if ctx.stdout.isatty():
        from engine.errors import InvalidArgument
        raise InvalidArgument("cowardly refusing to save to a terminal. Use the -o flag or "
                              "redirect")
    ctx.stdout.flush()
    imagearchive.save(images, args.images, ctx.stdout.buffer)  # type: ignore[attr-defined]
    ctx.stdout.buffer.flush()  # type: ignore[attr-defined]
    return 0


def _ls(args: argparse.Namespace, ctx: Context, images: Images) -> int:
    from engine import reference

    wanted = reference.parse(args.repository, default_tag=False) if args.repository else None
    rows: list[dict[str, Any]] = []
    now = datetime.now(UTC)
    for image in images.list():
        refs = [reference.parse(t) for t in image.repo_tags] or [None]
        for ref in refs:
            if wanted is not None and (ref is None or ref.name != wanted.name
                                       or (wanted.tag and ref.tag != wanted.tag)):
                continue
            rows.append(_row(image, ref, now, args.no_trunc))
    if args.quiet:
        seen: list[str] = []
        for row in rows:
            if row["ID"] not in seen:
                seen.append(row["ID"])
                print(row["ID"], file=ctx.stdout)
        return 0
    fmt = args.format
    if fmt == "json":
        for row in rows:
            print(json.dumps(row, separators=(",", ":")), file=ctx.stdout)
    elif fmt == "table":
        columns = ["REPOSITORY", "TAG", *(["DIGEST"] if args.digests else []), "IMAGE ID",
                   "CREATED", "SIZE"]
        keys = ["Repository", "Tag", *(["Digest"] if args.digests else []), "ID",
                "CreatedSince", "Size"]
        print(table([columns, *([str(row[k]) for k in keys] for row in rows)]), file=ctx.stdout)
    else:
        header, template = _split_table(fmt)
        out = [render(template, row) for row in rows]
        if header:
            print(table([[c.upper() for c in _template_fields(template)],
                         *(line.split("\t") for line in out)]), file=ctx.stdout)
        else:
            for line in out:
                print(line, file=ctx.stdout)
    return 0


def _row(image: Image, ref: Any, now: datetime, no_trunc: bool) -> dict[str, Any]:
    created = _parse_time(image.created)
    digests = [d for d in image.repo_digests if ref is not None and d.startswith(ref.name + "@")]
    return {
        "Containers": "N/A",
        "CreatedAt": created.strftime("%Y-%m-%d %H:%M:%S +0000 UTC"),
        "CreatedSince": human_duration(now - created) + " ago",
        "Digest": digests[0].split("@", 1)[1] if digests else "<none>",
        "ID": image.id if no_trunc else image.short_id,
        "Repository": ref.familiar_name() if ref is not None else "<none>",
        "SharedSize": "N/A",
        "Size": human_size(image.size),
        "Tag": (ref.tag or "<none>") if ref is not None else "<none>",
        "UniqueSize": "N/A",
        "VirtualSize": human_size(image.size),
    }


def _inspect(args: argparse.Namespace, ctx: Context, images: Images) -> int:
    from engine.errors import NotFound

    found, missing = [], []
    for name in args.images:
        try:
            found.append(images.inspect(name))
        except NotFound as error:
            missing.append(str(error))
    if args.format:
        for item in found:
            print(render(args.format, item), file=ctx.stdout)
    else:
        print(json.dumps(found, indent=4), file=ctx.stdout)
    _raise_all(ctx, missing, NotFound)
    return 0


def _rm(args: argparse.Namespace, ctx: Context, images: Images) -> int:
    from engine.errors import Error

    failures: list[Error] = []
    for name in args.images:
        try:
            for step in images.remove(name, force=args.force):
                print(f"{step.action}: {step.subject}", file=ctx.stdout)
        except Error as error:
            failures.append(error)
    if failures:
        for error in failures[:-1]:
            print(str(error), file=ctx.stderr)
        raise failures[-1]
    return 0


def _prune(args: argparse.Namespace, ctx: Context, images: Images) -> int:
    if not args.force:
        what = ("all images without at least one container associated to them" if args.all
                else "all dangling images")
        print(f"WARNING! This will remove {what}.\nAre you sure you want to continue? [y/N] ",
              end="", file=ctx.stdout, flush=True)
        answer = sys.stdin.readline().strip().lower()
        if answer not in ("y", "yes"):
            return 0
    steps, reclaimed = images.prune(all=args.all)
    if steps:
        print("Deleted Images:", file=ctx.stdout)
        for step in steps:
            print(f"{step.action.lower()}: {step.subject}", file=ctx.stdout)
        print(file=ctx.stdout)
    print(f"Total reclaimed space: {human_size(reclaimed)}", file=ctx.stdout)
    return 0


def _tag(args: argparse.Namespace, ctx: Context, images: Images) -> int:
    images.tag(args.source, args.target)
    return 0


def _registry_command(name: str):  # type: ignore[no-untyped-def]
    def command(args: argparse.Namespace, ctx: Context, images: Images) -> int:
        from compose.commands import imagebuild

        return int(getattr(imagebuild, name)(args, ctx, images))
    return command


_COMMANDS = {"import": _import, "load": _load, "save": _save, "ls": _ls, "inspect": _inspect,
             "rm": _rm, "prune": _prune, "tag": _tag, "build": _registry_command("build"),
             "pull": _registry_command("pull"), "push": _registry_command("push")}


def _raise_all(ctx: Context, messages: list[str], cls: type) -> None:
    if messages:
        for message in messages[:-1]:
            print(message, file=ctx.stderr)
        raise cls(messages[-1])


# -- rendering (Docker's shapes) -----------------------------------------------------------

def table(rows: list[list[str]], minwidth: int = 10, padding: int = 3) -> str:
    """Columns as Docker's tabwriter draws them: each cell padded to its column's width
    (at least `minwidth`, content + `padding`); the last column is not padded."""
    if not rows:
        return ""
    ncols = max(len(r) for r in rows)
    widths = [max([minwidth] + [len(r[i]) + padding for r in rows if i < len(r)])
              for i in range(ncols - 1)]
    lines = []
    for r in rows:
        cells = [cell.ljust(widths[i]) if i < ncols - 1 else cell for i, cell in enumerate(r)]
        lines.append("".join(cells).rstrip())
    return "\n".join(lines)


def human_size(size: float) -> str:
    """Decimal units with 3 significant digits, like Docker (`1.98MB`, `512B`)."""
    units = ["B", "kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB"]
    i = 0
    while size >= 1000 and i < len(units) - 1:
        size /= 1000
        i += 1
    return f"{size:.3g}{units[i]}"


def human_duration(delta: Any) -> str:
    """Docker's approximate durations: `About a minute`, `3 hours`, `2 weeks`."""
    from compose.commands.humanize import duration

    return duration(delta.total_seconds())


def _parse_time(text: str) -> datetime:
    match = re.match(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.\d+)?(Z|[+-]\d\d:\d\d)?", text or "")
    if not match:
        return datetime(1970, 1, 1, tzinfo=UTC)
    zone = match.group(2) or "Z"
    parsed = datetime.fromisoformat(match.group(1) + ("+00:00" if zone == "Z" else zone))
    return parsed.astimezone(UTC)


_FIELD = re.compile(r"\{\{\s*(json\s+)?\.([A-Za-z0-9_.]*)\s*\}\}")


def _split_table(fmt: str) -> tuple[bool, str]:
    if fmt.startswith("table"):
        return True, fmt[len("table"):].strip()
    return False, fmt


def _template_fields(template: str) -> list[str]:
    return [m.group(2) or "." for m in _FIELD.finditer(template)]


def render(template: str, value: Any) -> str:
    """A small subset of Go templates: `{{.A.B}}` and `{{json .A}}` (`{{json .}}`)."""
    template = template.replace("\\t", "\t").replace("\\n", "\n")

    def field(match: re.Match[str]) -> str:
        current = value
        for part in filter(None, match.group(2).split(".")):
            current = current.get(part) if isinstance(current, dict) else None
        if match.group(1):
            return json.dumps(current)
        if isinstance(current, list):  # Go prints slices as [a b]
            return "[" + " ".join(str(v) for v in current) + "]"
        if isinstance(current, dict):
            return json.dumps(current)
        return "<no value>" if current is None else str(current)

    return _FIELD.sub(field, template)
