"""Which Compose files a load reads, where the project lives, its environment, and reading
and parsing each file once.

Order of decisions, as the Compose CLI takes them:
1. The files: `-f` values, else `COMPOSE_FILE` from the shell (split on
   `COMPOSE_PATH_SEPARATOR`, default `os.pathsep`), else `COMPOSE_FILE` from the `.env` file,
   else the first of compose.yaml, compose.yml, docker-compose.yaml, docker-compose.yml found
   in the working directory (`--project-directory` or cwd) or its nearest parent, plus an
   override file (compose.override.yaml, ...) beside it.
2. The project directory: `--project-directory`, else the first file's directory (cwd for
   stdin).
3. The environment: the `--env-file` files in order (later ones win; missing ones are an
   error), else the optional `.env` in the project directory; the shell wins over both.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from compose.errors import ConfigError, Problem
from compose.loader.dotenv import read_env_file
from compose.loader.options import LoadOptions
from compose.loader.parse import YMap, parse_yaml

COMPOSE_NAMES = ("compose.yaml", "compose.yml", "docker-compose.yaml", "docker-compose.yml")
OVERRIDE_NAMES = ("compose.override.yaml", "compose.override.yml",
                  "docker-compose.override.yaml", "docker-compose.override.yml")
STDIN = "-"
STDIN_NAME = "<stdin>"


@dataclass(frozen=True, slots=True)
class FileSet:
    """The outcome of steps 1-3 above."""

    files: tuple[str, ...]           # absolute paths; "-" for stdin
    project_dir: str                 # absolute
    environment: dict[str, str]      # shell > env files
    warnings: tuple[str, ...]


def resolve_files(options: LoadOptions) -> FileSet:
    """Chooses the files, the project directory and the environment (see the module doc)."""
    cwd = options.cwd
    shell = options.environment
    warnings: list[str] = []
    forced_dir = _abs(options.project_directory, cwd) if options.project_directory else None
    files = [_abs_file(f, cwd) for f in options.files]
    if not files and shell.get("COMPOSE_FILE"):
        files = _split_compose_file(shell["COMPOSE_FILE"], shell, cwd)
    env_dir = forced_dir or (_dir_of(files[0], cwd) if files else cwd)
    dotenv = _read_env_files(options, env_dir, shell)
    if not files:
        listed = dotenv.get("COMPOSE_FILE")
        if listed:
            files = _split_compose_file(listed, {**dotenv, **shell}, env_dir)
        else:
            files = find_compose_files(forced_dir or cwd, warnings)
    project_dir = forced_dir or _dir_of(files[0], cwd)
    if project_dir != env_dir and not options.env_files:
        # Found by searching upwards: the .env that counts is the one beside the file.
        dotenv = _read_env_files(options, project_dir, shell)
    return FileSet(tuple(files), project_dir, {**dotenv, **shell}, tuple(warnings))


def _abs(path: str, base: str) -> str:
    return os.path.normpath(os.path.join(base, os.path.expanduser(path)))


def _abs_file(path: str, cwd: str) -> str:
    return STDIN if path == STDIN else _abs(path, cwd)


def _dir_of(path: str, cwd: str) -> str:
    return cwd if path == STDIN else os.path.dirname(path)


def _split_compose_file(value: str, env: Mapping[str, str], base: str) -> list[str]:
    separator = env.get("COMPOSE_PATH_SEPARATOR") or os.pathsep
    return [_abs_file(part, base) for part in value.split(separator) if part]


def _read_env_files(options: LoadOptions, default_dir: str,
                    shell: Mapping[str, str]) -> dict[str, str]:
    values: dict[str, str] = {}

    def lookup(name: str) -> str | None:
        found = shell.get(name)
        return found if found is not None else values.get(name)

    if options.env_files:
        for given in options.env_files:
            path = _abs(given, options.cwd)
            values.update(read_env_file(
                path, required=True, lookup=lookup, display=display_name(path, options.cwd),
                origin=Problem("given with --env-file")))
        return values
    path = os.path.join(default_dir, ".env")
    if os.path.isfile(path):
        values.update(read_env_file(path, lookup=lookup,
                                    display=display_name(path, options.cwd)))
    return values


def find_compose_files(start: str, warnings: list[str]) -> list[str]:
    """The default Compose file in `start` or its nearest parent that has one, and the
    override file beside it; warns when several default names exist in that directory."""
    directory = start
    while True:
        found = [name for name in COMPOSE_NAMES if os.path.isfile(os.path.join(directory, name))]
        if found:
            if len(found) > 1:
                warnings.append(f"Found multiple config files with supported names: "
                                f"{', '.join(os.path.join(directory, n) for n in found)}; "
                                f"using {os.path.join(directory, found[0])}")
            files = [os.path.join(directory, found[0])]
            override = next((n for n in OVERRIDE_NAMES
                             if os.path.isfile(os.path.join(directory, n))), None)
            if override:
                files.append(os.path.join(directory, override))
            return files
        parent = os.path.dirname(directory)
        if parent == directory:
            raise ConfigError(Problem(
                f"no configuration file provided: none of {', '.join(COMPOSE_NAMES)} "
                f"found in {start} or its parents (use -f to name one)"))
        directory = parent


def display_name(path: str, cwd: str) -> str:
    """How messages name a file: relative to cwd when it lies below it, else absolute."""
    if path == STDIN:
        return STDIN_NAME
    if path.startswith(cwd.rstrip("/") + "/"):
        return path[len(cwd.rstrip("/")) + 1:]
    return path


class Sources:
    """Reads and parses the Compose files of one load, each once.

    `parse` returns the parsed tree of a file, shared between callers: callers must not
    mutate it (interpolation makes the copy that later stages own).
    """

    __slots__ = ("_cache", "cwd", "stdin")

    def __init__(self, cwd: str, stdin: str | None) -> None:
        self.cwd = cwd
        self.stdin = stdin
        self._cache: dict[str, YMap] = {}

    def display(self, path: str) -> str:
        return display_name(path, self.cwd)

    def parse(self, path: str, origin: Problem | None = None) -> YMap:
        """The tree of the Compose file at `path` (absolute, or "-" for stdin).

        Errors: the file is missing, a directory, unreadable, not UTF-8, not YAML, empty, or
        not a mapping at the top. `origin` locates the reference to the file (an `extends`
        or `include` entry), where a missing file is reported.
        """
        cached = self._cache.get(path)
        if cached is not None:
            return cached
        name = self.display(path)
        text = self._read(path, name, origin)
        tree = parse_yaml(text, name)
        if tree is None:
            raise ConfigError(Problem("the Compose file is empty (expected a mapping with "
                                      "at least `services`)", name))
        if not isinstance(tree, YMap):
            kind = "a list" if isinstance(tree, list) else f"the scalar {tree!r}"
            line = tree.loc.line if getattr(tree, "loc", None) else 1
            raise ConfigError(Problem(f"the top level of a Compose file must be a mapping, "
                                      f"found {kind}", name, line))
        self._cache[path] = tree
        return tree

    def _read(self, path: str, name: str, origin: Problem | None) -> str:
        if path == STDIN:
            if self.stdin is None:
                raise ConfigError(Problem("-f - reads the Compose file from standard input, "
                                          "but none was given"))
            return self.stdin
        try:
            with open(path, encoding="utf-8-sig") as handle:
                return handle.read()
        except FileNotFoundError:
            raise ConfigError(_at(origin, f"Compose file {name} not found")) from None
        except IsADirectoryError:
            raise ConfigError(_at(origin, f"{name} is a directory, not a Compose file")) \
                from None
        except UnicodeDecodeError:
            raise ConfigError(Problem("the Compose file is not valid UTF-8 text",
                                      name)) from None
        except OSError as exc:
            raise ConfigError(_at(origin, f"cannot read {name}: {exc.strerror or exc}")) \
                from None


def _at(origin: Problem | None, message: str) -> Problem:
    if origin is None:
        return Problem(message)
    return Problem(message, origin.file, origin.line, origin.path)
