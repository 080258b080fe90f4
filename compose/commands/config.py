"""`shipyard config`: parse, resolve and render the Compose file in canonical form.

Like `docker compose config`: the output is the project after interpolation, merging,
`extends`, `include`, profiles and canonicalisation, so it loads back to the same project.
`$` in values is written as `$$`, so the output survives interpolation when read again.
"""

from __future__ import annotations

import argparse
import json
import re
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from compose.cli import Context

HELP = "Parse, resolve and render the Compose file in canonical format"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("services", nargs="*", metavar="SERVICE",
                        help="only these services (and what they depend on)")
    parser.add_argument("--format", choices=["yaml", "json"], default="yaml",
                        help="output format (default: yaml)")
    parser.add_argument("-q", "--quiet", action="store_true",
                        help="only validate the configuration, print nothing")
    parser.add_argument("-o", "--output", metavar="FILE", help="write to FILE, not stdout")
    parser.add_argument("--no-interpolate", action="store_true",
                        help="don't interpolate environment variables")
    for flag, what in (("services", "service names"), ("volumes", "volume names"),
                       ("networks", "network names"), ("profiles", "profile names"),
                       ("images", "image names")):
        parser.add_argument(f"--{flag}", dest=f"list_{flag}", action="store_true",
                            help=f"print the {what}, one per line")
    parser.add_argument("--hash", metavar="SERVICE",
                        help='print the config hash of the services (comma-separated, or "*")')
    parser.add_argument("--environment", action="store_true",
                        help="print the environment used for interpolation")
    parser.add_argument("--variables", action="store_true",
                        help="print the variables the model uses, with their defaults")
    parser.add_argument("--resolve-image-digests", action="store_true",
                        help="pin image tags to digests (not supported yet)")


def run(args: argparse.Namespace, ctx: Context) -> int:
    from compose.cli import load_options
    from compose.loader import canonical_project, load_merged
    from engine.errors import Unavailable

    if args.resolve_image_digests:
        raise Unavailable("config --resolve-image-digests is not supported yet "
                          "(it needs registry access; images are pinned at pull time)")
    interpolate = not args.no_interpolate
    merged = load_merged(load_options(args, ctx, interpolate=interpolate))
    for warning in merged.warnings:
        print(f"warning: {warning}", file=ctx.stderr)
    if args.environment:
        return _emit(args, ctx, "".join(f"{k}={v}\n" for k, v in
                                         sorted(merged.environment.items())))
    if args.variables:
        return _emit(args, ctx, _variables_table(merged.variables))
    if args.list_profiles:
        return _emit(args, ctx, _lines(sorted(_all_profiles(merged.tree))))
    data, warnings = canonical_project(merged, services=args.services,
                                       interpolated=interpolate)
    for warning in warnings:
        print(f"warning: {warning}", file=ctx.stderr)
    if args.services:
        from compose.loader.profiles import select

        data = select(data, args.services)
    # No binding into the model here: the canonical dict is what `config` prints, and
    # importing the model's ~20 dataclasses would cost more than the rest of the command.
    if args.quiet:
        return 0
    services = data.get("services") or {}
    if args.list_services:
        return _emit(args, ctx, _lines(services))
    if args.list_volumes:
        return _emit(args, ctx, _lines(data.get("volumes") or {}))
    if args.list_networks:
        return _emit(args, ctx, _lines(data.get("networks") or {}))
    if args.list_images:
        return _emit(args, ctx, _lines(s.get("image") or f"{data['name']}-{name}"
                                       for name, s in services.items()))
    if args.hash:
        return _emit(args, ctx, _hashes(services, args.hash))
    if interpolate:
        data = _escape_dollars(data)
    if args.format == "json":
        return _emit(args, ctx, json.dumps(data, indent=2, ensure_ascii=False) + "\n")
    return _emit(args, ctx, dump_yaml(data))


def _emit(args: argparse.Namespace, ctx: Context, text: str) -> int:
    if args.output:
        with open(args.output, "w", encoding="utf-8") as handle:
            handle.write(text)
    else:
        ctx.stdout.write(text)
    return 0


def _lines(items: Any) -> str:
    return "".join(f"{item}\n" for item in items)


def _all_profiles(tree: Any) -> set[str]:
    profiles: set[str] = set()
    for service in (tree.get("services") or {}).values():
        profiles.update((service or {}).get("profiles") or ())
    return profiles


def _hashes(services: dict[str, Any], spec: str) -> str:
    from compose.confighash import service_hash
    from compose.errors import ConfigError

    names = sorted(services) if spec == "*" else [n.strip() for n in spec.split(",") if n]
    unknown = [n for n in names if n not in services]
    if unknown:
        raise ConfigError(f'no such service: "{unknown[0]}"')
    return "".join(f"{name} {service_hash(services[name])}\n" for name in names)


def _variables_table(variables: Any) -> str:
    rows = [("NAME", "REQUIRED", "DEFAULT VALUE", "ALTERNATE VALUE")]
    for name, var in sorted((variables or {}).items()):
        rows.append((name, "true" if getattr(var, "required", False) else "false",
                     getattr(var, "default", None) or "", getattr(var, "alternate", None) or ""))
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    return "".join(f"{r[0]:<{widths[0]}}   {r[1]:<{widths[1]}}   {r[2]:<{widths[2]}}   {r[3]}"
                   .rstrip() + "\n" for r in rows)


def _escape_dollars(node: Any) -> Any:
    if isinstance(node, str):
        return node.replace("$", "$$")
    if isinstance(node, dict):
        return {key: _escape_dollars(value) for key, value in node.items()}
    if isinstance(node, list):
        return [_escape_dollars(value) for value in node]
    return node


# Strings that may be written plain: those starting with a letter, "_", "/", "~", "$" or
# "(", flags ("-f", "--port") and amounts with units ("10s", "1.5gb"); the checks below
# exclude the words and the ": " / " #" that YAML would read otherwise.
_PLAIN = re.compile(r"[A-Za-z_/~$(][^\x00-\x1f\x7f]*|-+[A-Za-z][^\x00-\x1f\x7f]*"
                    r"|[0-9]+(?:\.[0-9]+)?[A-Za-z]+")
_SPECIAL = frozenset({"y", "n", "yes", "no", "on", "off", "true", "false", "null", "~"})


def _scalar(value: Any) -> str:
    """One scalar (or empty collection) as YAML text that reads back as the same value
    under YAML 1.1 and 1.2 alike: strings are plain only when nothing else could be meant,
    otherwise double-quoted (JSON string syntax is valid YAML)."""
    if value is None:
        return "null"
    if value is True or value is False:
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if value != value:
            return ".nan"
        if value in (float("inf"), float("-inf")):
            return ".inf" if value > 0 else "-.inf"
        return repr(value)
    if isinstance(value, dict):
        return "{}"
    if isinstance(value, list):
        return "[]"
    text = str(value)
    if (_PLAIN.fullmatch(text) and text.lower() not in _SPECIAL and text == text.strip()
            and ": " not in text and " #" not in text and not text.endswith(":")):
        return text
    return json.dumps(text, ensure_ascii=False)


_LITERAL_SAFE = re.compile(r"[^\x00-\x08\x0b-\x1f\x7f]*")


def _literal(value: Any) -> bool:
    """Whether a string reads back exactly from a `|` block: one final newline, no leading
    space on its first line, no trailing spaces, no control characters."""
    return (isinstance(value, str) and "\n" in value and value.endswith("\n")
            and not value.endswith("\n\n") and not value[:1].isspace()
            and _LITERAL_SAFE.fullmatch(value) is not None and "\t" not in value
            and not any(line != line.rstrip() for line in value.split("\n")))


def _block(node: Any, indent: int, out: list[str]) -> None:
    pad = " " * indent
    if isinstance(node, dict):
        for key, value in node.items():
            if isinstance(value, dict | list) and value:
                out.append(f"{pad}{_scalar(key)}:")
                _block(value, indent + 2, out)
            elif _literal(value):
                out.append(f"{pad}{_scalar(key)}: |")
                out.extend(f"{pad}  {line}" if line else "" for line in value[:-1].split("\n"))
            else:
                out.append(f"{pad}{_scalar(key)}: {_scalar(value)}")
        return
    for item in node:
        if isinstance(item, dict | list) and item:
            start = len(out)
            _block(item, indent + 2, out)
            out[start] = f"{pad}- {out[start][indent + 2:]}"
        elif _literal(item):
            out.append(f"{pad}- |")
            out.extend(f"{pad}  {line}" if line else "" for line in item[:-1].split("\n"))
        else:
            out.append(f"{pad}- {_scalar(item)}")


def dump_yaml(data: dict[str, Any]) -> str:
    """Block-style YAML in the dict's own key order, lists indented under their key, as
    `docker compose config` writes it. Our own writer: PyYAML's pure-Python emitter takes
    ~0.4 s for a 100-service project, this takes a few milliseconds."""
    out: list[str] = []
    _block(data, 0, out)
    return "\n".join(out) + "\n"
