"""`shipyard` command line: argv -> command, errors -> one clear message and an exit code.

This is the only module that reads `os.environ`, exits, or catches `engine.errors.Error`.
Each command lives in `compose/commands/<name>.py` and exposes:

    HELP: str
    def add_arguments(parser: argparse.ArgumentParser) -> None
    def run(args: argparse.Namespace, ctx: Context) -> int

Command modules must keep their imports light at module level (a run builds only its own
command's parser, `--help` builds them all); heavy libraries are imported inside `run`.

Start-up is most of what a short command costs (see benchmarks/startup_bench.py), so this
module imports little, and `main()`, when it is the process's entry point, caches the code
`dataclasses` generates (`compose.codecache`) and keeps the cyclic garbage collector from
scanning start-up's long-lived objects again and again (`_tune_gc`).
"""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    import argparse
    from collections.abc import Sequence

    from engine import Engine

# Command name -> module under compose.commands, or "module:attribute" for one of several
# commands a module defines (an object with the same HELP, add_arguments and run).
# Order is the order of `--help`.
COMMANDS: dict[str, str] = {
    "ps": "ps",
    "logs": "logs",
    "exec": "exec",
    "run": "run",
    "create": "lifecycle:create",
    "start": "lifecycle:start",
    "stop": "lifecycle:stop",
    "restart": "lifecycle:restart",
    "kill": "lifecycle:kill",
    "rm": "lifecycle:rm",
    "pause": "lifecycle:pause",
    "unpause": "lifecycle:unpause",
    "top": "top",
    "port": "port",
    "images": "images",
    "pull": "pull",
    "push": "push",
    "events": "events",
    "wait": "wait",
    "ls": "ls",
    "up": "up",
    "down": "down",
    "build": "build",
    "config": "config",
    "image": "image",
    "container": "container",
    "network": "network",
    "volume": "volume",
    "login": "login",
    "logout": "logout",
    "version": "version",
}


class Context:
    """What a command may know about the world it runs in: `environ`, `cwd`, `stdout` and
    `stderr` (default: sys.stdout and sys.stderr at construction)."""

    __slots__ = ("cwd", "environ", "stderr", "stdout")

    def __init__(self, environ: dict[str, str], cwd: str, stdout: TextIO | None = None,
                 stderr: TextIO | None = None) -> None:
        self.environ = environ
        self.cwd = cwd
        self.stdout = sys.stdout if stdout is None else stdout
        self.stderr = sys.stderr if stderr is None else stderr

    def __repr__(self) -> str:
        return f"Context(cwd={self.cwd!r})"

    def engine(self) -> Engine:
        """The engine at SHIPYARD_ROOT (default /var/lib/shipyard); says so in one line
        when this user may not use it."""
        from engine import Engine
        from engine.errors import Unavailable
        from engine.layout import DEFAULT_ROOT

        root = self.environ.get("SHIPYARD_ROOT", DEFAULT_ROOT)
        if os.geteuid() != 0:
            raise Unavailable(
                "shipyard needs root to run containers (namespaces, mounts, cgroups and "
                "networks are privileged): run it with sudo")
        return Engine(root)


def add_project_options(parser: argparse.ArgumentParser) -> None:
    """The global flags of `docker compose` that choose and shape the project."""
    group = parser.add_argument_group("project options")
    group.add_argument("-f", "--file", dest="files", action="append", default=[],
                       metavar="FILE", help="Compose configuration files ('-' for stdin)")
    group.add_argument("-p", "--project-name", dest="project_name", metavar="NAME",
                       help="project name")
    group.add_argument("--profile", dest="profiles", action="append", default=[],
                       metavar="PROFILE", help="enable a profile")
    group.add_argument("--env-file", dest="env_files", action="append", default=[],
                       metavar="FILE", help="an alternate environment file")
    group.add_argument("--project-directory", metavar="DIR",
                       help="working directory (default: the first file's directory)")
    group.add_argument("--parallel", dest="max_parallel", type=int, metavar="N",
                       help="at most N engine calls at once (-1: no limit; default: "
                            "COMPOSE_PARALLEL_LIMIT, else no limit)")


def parallel_limit(args: argparse.Namespace, ctx: Context) -> int:
    """How many engine calls a plan may make at once (0: no limit): a command's own
    `--parallel`, else the global one (as `docker compose --parallel N`), else
    COMPOSE_PARALLEL_LIMIT."""
    from engine.errors import InvalidArgument

    own = getattr(args, "parallel", 0) or 0
    if own > 0:
        return own
    value = getattr(args, "max_parallel", None)
    if value is None:
        raw = ctx.environ.get("COMPOSE_PARALLEL_LIMIT", "").strip()
        try:
            value = int(raw) if raw else -1
        except ValueError:
            raise InvalidArgument(f"COMPOSE_PARALLEL_LIMIT={raw!r}: expected a whole number "
                                  "(-1 for no limit)") from None
    return value if value > 0 else 0


def load_options(args: argparse.Namespace, ctx: Context, *, interpolate: bool = True) -> Any:
    """The `compose.loader.options.LoadOptions` that the global project flags describe."""
    from compose.loader.options import LoadOptions

    files = tuple(getattr(args, "files", None) or ())
    return LoadOptions(
        environment=ctx.environ, cwd=ctx.cwd, files=files,
        stdin=sys.stdin.read() if "-" in files else None,
        project_name=getattr(args, "project_name", None),
        project_directory=getattr(args, "project_directory", None),
        profiles=tuple(getattr(args, "profiles", None) or ()),
        env_files=tuple(getattr(args, "env_files", None) or ()), interpolate=interpolate)


# Global flags that take a value, so the command word can be found without a full parse.
_VALUE_FLAGS = frozenset({"-f", "--file", "-p", "--project-name", "--profile", "--env-file",
                          "--parallel", "--project-directory", "--ansi", "--progress"})


def chosen_command(argv: Sequence[str]) -> str | None:
    """The command word in argv (skipping global flags and their values), if any."""
    skip = False
    for token in argv:
        if skip:
            skip = False
        elif token in _VALUE_FLAGS:
            skip = True
        elif not token.startswith("-"):
            return token
    return None


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The whole parser; with `only`, just that command's subparser is built (each command
    module is imported to build its parser, and a command run needs only its own)."""
    import importlib

    parser = _parser_class()(
        prog="shipyard",
        description="Run Compose applications in real Linux containers, without a daemon.")
    add_project_options(parser)
    parser.add_argument("--ansi", choices=["never", "always", "auto"], default="auto",
                        help="control when to print ANSI control characters")
    parser.add_argument("--progress", choices=["auto", "tty", "plain", "json", "quiet"],
                        default="auto", help="set type of progress output")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, module_name in COMMANDS.items():
        if only is not None and name != only:
            continue
        module_name, _, attribute = module_name.partition(":")
        module = importlib.import_module(f"compose.commands.{module_name}")
        if attribute:
            module = getattr(module, attribute)
        command_parser = sub.add_parser(name, help=module.HELP, description=module.HELP)
        module.add_arguments(command_parser)
        command_parser.set_defaults(_module=module)
    return parser


def _parser_class() -> type[argparse.ArgumentParser]:
    """argparse's parser whose help formatter (made for every `add_argument`) finds the
    terminal's width as `shutil.get_terminal_size` does, without importing shutil (and
    bz2, lzma, fnmatch with it): ~1.5 ms of every command. Subparsers inherit it."""
    import argparse

    class Formatter(argparse.HelpFormatter):
        def __init__(self, prog: str, indent_increment: int = 2, max_help_position: int = 24,
                     width: int | None = None) -> None:
            if width is None:
                width = _terminal_columns() - 2
            super().__init__(prog, indent_increment, max_help_position, width)

    class Parser(argparse.ArgumentParser):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            kwargs.setdefault("formatter_class", Formatter)
            super().__init__(*args, **kwargs)

    return Parser


def _terminal_columns() -> int:
    """$COLUMNS, else the width of the terminal on stdout, else 80."""
    try:
        columns = int(os.environ["COLUMNS"])
    except (KeyError, ValueError):
        columns = 0
    if columns <= 0:
        try:
            columns = os.get_terminal_size(sys.__stdout__.fileno()).columns  # type: ignore[union-attr]
        except (AttributeError, ValueError, OSError):
            columns = 0
    return columns or 80


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the command `argv` names (default: the process's own arguments, and then this
    call is the process: see `_tune_gc`); returns the exit code."""
    if argv is not None:
        return _main(argv)
    from compose import codecache

    codecache.install()
    _tune_gc()
    try:
        return _main(sys.argv[1:])
    finally:
        import gc

        # What is alive now lives until exit: moving it out of the collector's reach
        # spares the interpreter's last collections at exit (~20 ms for `up`).
        gc.freeze()


def _tune_gc() -> None:
    """A short command creates ~30,000 objects the collector tracks (functions, classes,
    dicts of the modules it imports and of the project it loads), nearly all of which live
    to the end; the default young-generation threshold (700) has the collector walk them
    over and over. A larger one keeps collection on (long-running commands still free
    their cycles) but rare."""
    import gc

    _, middle, old = gc.get_threshold()
    gc.set_threshold(GC_THRESHOLD, middle, old)


GC_THRESHOLD = 20_000


def _main(argv: Sequence[str]) -> int:
    from engine.errors import Error

    command = chosen_command(argv)
    parser = build_parser(command if command in COMMANDS else None)
    args = parser.parse_args(argv)
    if not getattr(args, "_module", None):
        parser.print_help()
        return 0
    ctx = Context(environ=dict(os.environ), cwd=os.getcwd())
    try:
        return int(args._module.run(args, ctx) or 0)
    except BaseException as raised:
        # An anyio task group (pull, push) wraps what its tasks raised in an ExceptionGroup;
        # a user's error is still one message when every leaf is one we handle. Anything else
        # is a bug.
        leaves = _leaves(raised)
        if not all(isinstance(leaf, (Error, KeyboardInterrupt, BrokenPipeError))
                   for leaf in leaves):
            raise
        if any(isinstance(leaf, BrokenPipeError) for leaf in leaves):
            # The reader went away (e.g. `| head`); that is not our failure.
            sys.stderr.close()
            return 0
        if any(isinstance(leaf, KeyboardInterrupt) for leaf in leaves):
            return 130
        print("\n".join(dict.fromkeys(str(leaf) for leaf in leaves)), file=sys.stderr)
        return leaves[0].exit_code  # type: ignore[union-attr]


def _leaves(raised: BaseException) -> list[BaseException]:
    """The exceptions inside (nested) exception groups, or `raised` itself."""
    if isinstance(raised, BaseExceptionGroup):
        return [leaf for inner in raised.exceptions for leaf in _leaves(inner)]
    return [raised]


if __name__ == "__main__":
    sys.exit(main())
