"""What the project commands share: which project, its services, and its containers.

A project's containers are found by Docker Compose's labels (`com.docker.compose.project`,
`.service`, `.container-number`, `.oneoff`), so containers made by any tool that sets them
count. Two ways to learn the project:

- `project_name(args, ctx)`: the name only, the cheap way (no schema, no canonical form):
  -p, COMPOSE_PROJECT_NAME (shell or .env), the files' `name:`, the directory's name. `ps`,
  `ls`-like readers and `events` need nothing more.
- `load_project(args, ctx)`: the whole `Project` (commands that act on services).

Errors say what Docker Compose says: `no such service: x`, `service "web" is not running`.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from engine.errors import Conflict, NotFound

if TYPE_CHECKING:
    from compose.cli import Context
    from compose.model import Project
    from engine import Engine
    from engine.containers import Container
    from engine.runtime.launch import State

LABEL_PROJECT = "com.docker.compose.project"
LABEL_SERVICE = "com.docker.compose.service"
LABEL_NUMBER = "com.docker.compose.container-number"
LABEL_ONEOFF = "com.docker.compose.oneoff"
LABEL_WORKING_DIR = "com.docker.compose.project.working_dir"
LABEL_CONFIG_FILES = "com.docker.compose.project.config_files"
LABEL_DEPENDS_ON = "com.docker.compose.depends_on"

ACTIVE = ("running", "paused", "restarting")


@dataclass(frozen=True, slots=True)
class ProjectContainer:
    """A container of the project with what its labels and state file say."""

    container: Container
    state: State
    service: str
    number: int
    oneoff: bool

    @property
    def name(self) -> str:
        return self.container.name

    @property
    def running(self) -> bool:
        return self.state.status in ACTIVE


# ---- the project ---------------------------------------------------------------------------

def project_name(args: argparse.Namespace, ctx: Context) -> str:
    """The project's name without loading the project: -p > COMPOSE_PROJECT_NAME (shell,
    then .env / --env-file) > the last file's `name:` > the project directory's name."""
    from compose.cli import load_options
    from compose.loader import cache

    options = load_options(args, ctx)
    shell_named = options.project_name or ctx.environ.get("COMPOSE_PROJECT_NAME")
    if not shell_named:
        # A whole load of the same inputs decides the name the same way: a valid cache
        # entry of one (left by `up`, `down`, ...) answers without parsing anything.
        cached = cache.cached_name(options, directory=cache.cache_dir(ctx.environ))
        if cached is not None:
            return cached
    from compose.loader.files import Sources, resolve_files
    from compose.loader.interpolate import InterpolationLog
    from compose.loader.raw import project_name as decide

    if shell_named:
        # The shell outranks .env files, so no file need be found (or exist) to know it.
        return decide(options, ctx.environ, (), "", InterpolationLog(), Sources(ctx.cwd, None))
    fileset = resolve_files(options)
    sources = Sources(options.cwd, options.stdin)
    env = dict(fileset.environment)
    # The files are parsed only when the environment does not name the project already.
    trees = [] if env.get("COMPOSE_PROJECT_NAME") else [
        (path, sources.parse(path)) for path in fileset.files]
    return decide(options, env, trees, fileset.project_dir, InterpolationLog(), sources)


# Duplicated from compose.loader.files, whose import (yaml, interpolation) costs more than
# all of `ps`; a test keeps them equal.
COMPOSE_NAMES = ("compose.yaml", "compose.yml", "docker-compose.yaml", "docker-compose.yml")
OVERRIDE_NAMES = ("compose.override.yaml", "compose.override.yml",
                  "docker-compose.override.yaml", "docker-compose.override.yml")


def quick_project_name(args: argparse.Namespace, ctx: Context) -> str | None:
    """The project name for the common cases, without the YAML parser: -p,
    COMPOSE_PROJECT_NAME, or the Compose files' plain top-level `name:` line, else the
    directory's name. None whenever anything could change the answer in ways only the
    loader knows (.env files, COMPOSE_FILE, variables or YAML syntax in `name:`, stdin);
    `project_name` then decides."""
    import os
    import re

    valid = re.compile(r"^[a-z0-9][a-z0-9_-]*$")
    given = getattr(args, "project_name", None) or ctx.environ.get("COMPOSE_PROJECT_NAME")
    if given:
        return given if valid.match(given) else None
    files = list(getattr(args, "files", None) or ())
    if (getattr(args, "env_files", None) or getattr(args, "project_directory", None)
            or ctx.environ.get("COMPOSE_FILE") or "-" in files):
        return None
    files = [os.path.normpath(os.path.join(ctx.cwd, os.path.expanduser(f))) for f in files]
    directory = ctx.cwd
    while not files:
        found = [n for n in COMPOSE_NAMES if os.path.isfile(os.path.join(directory, n))]
        if found:
            files = [os.path.join(directory, found[0])]
            files += [os.path.join(directory, n) for n in OVERRIDE_NAMES
                      if os.path.isfile(os.path.join(directory, n))][:1]
        elif os.path.dirname(directory) == directory:
            return None
        else:
            directory = os.path.dirname(directory)
    project_dir = os.path.dirname(files[0])
    if os.path.exists(os.path.join(project_dir, ".env")):
        return None
    line = re.compile(r"^name[ \t]*:[ \t]*(.*?)[ \t]*(?:[ \t]#.*)?$", re.M)
    name = None
    for path in files:
        try:
            with open(path, encoding="utf-8-sig") as handle:
                text = handle.read()
        except (OSError, UnicodeDecodeError):
            return None
        if text.lstrip().startswith(("{", "%")):
            return None
        for match in line.finditer(text):
            value = match.group(1)
            if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
                value = value[1:-1]
            if value in ("null", "~"):
                value = ""
            if value and not valid.match(value):
                return None  # variables, tags, anchors, or simply invalid: the loader says
            name = value or name
    if name:
        return name
    derived = re.sub(r"[^a-z0-9_-]", "", os.path.basename(project_dir).lower()).lstrip("_-")
    return derived or None


def load_project(args: argparse.Namespace, ctx: Context,
                 services: Sequence[str] = ()) -> Project:
    """The whole project (warnings go to stderr). `services` are enabled even when their
    profiles are not active, as naming a service on the command line does in Compose."""
    from compose.cli import load_options
    from compose.loader import cache

    # From the validated cache when nothing the load read has changed (`loader/cache.py`).
    project = cache.load(load_options(args, ctx), tuple(services),
                         directory=cache.cache_dir(ctx.environ))
    for warning in project.warnings:
        print(f"warning: {warning}", file=ctx.stderr)
    return project


def target(args: argparse.Namespace, ctx: Context, services: Sequence[str] = (), *,
           need_project: bool = False) -> tuple[str, Project | None, tuple[str, ...]]:
    """(project name, the loaded project or None, the checked services). The project is
    loaded only when services are named (to check them) or `need_project`; otherwise the
    name is found the cheap way, so `-p NAME` works without any Compose file."""
    if services or need_project:
        if need_project:
            project = load_project(args, ctx, services)
        else:
            name, project = load_if_present(args, ctx, services)
            if project is None:
                return name, None, tuple(dict.fromkeys(services))
        return project.name, project, check_services(project, services)
    return quick_project_name(args, ctx) or project_name(args, ctx), None, ()


def load_if_present(args: argparse.Namespace, ctx: Context, services: Sequence[str] = ()
                    ) -> tuple[str, Project | None]:
    """(project name, the loaded project), or (name, None) when -p NAME or
    COMPOSE_PROJECT_NAME names the project and there is no Compose file at hand: then the
    labels say which containers are the project's, as in Docker Compose (`-p NAME down`)."""
    from compose.errors import ConfigError

    try:
        project = load_project(args, ctx, services)
    except ConfigError as error:
        named = getattr(args, "project_name", None) or ctx.environ.get("COMPOSE_PROJECT_NAME")
        if not named or not str(error).startswith("no configuration file provided"):
            raise
        return project_name(args, ctx), None
    return project.name, project


def check_services(project: Project, names: Iterable[str]) -> tuple[str, ...]:
    """`names` as given (deduplicated, in order); `no such service: x` for unknown ones."""
    out: list[str] = []
    for name in names:
        if name not in project.services:
            raise NotFound(f"no such service: {name}")
        if name not in out:
            out.append(name)
    return tuple(out)


# ---- its containers ------------------------------------------------------------------------

def project_containers(engine: Engine, project: str, *, services: Iterable[str] = (),
                       oneoff: bool | None = False, running: bool = False
                       ) -> list[ProjectContainer]:
    """The project's containers, by service then number. `oneoff`: False = service
    containers only, True = `run` containers only, None = both. `running`: only those
    running, paused or restarting."""
    wanted = set(services)
    out = []
    for container in engine.containers.list({LABEL_PROJECT: project}):
        labels = container.labels
        service = labels.get(LABEL_SERVICE, "")
        if wanted and service not in wanted:
            continue
        is_oneoff = labels.get(LABEL_ONEOFF, "False").lower() == "true"
        if oneoff is not None and is_oneoff != oneoff:
            continue
        state = engine.containers.state(container)
        if running and state.status not in ACTIVE:
            continue
        try:
            number = int(labels.get(LABEL_NUMBER, "0"))
        except ValueError:
            number = 0
        out.append(ProjectContainer(container, state, service, number, is_oneoff))
    out.sort(key=lambda c: (c.service, c.oneoff, c.number, c.name))
    return out


def refresh(engine: Engine, found: Iterable[ProjectContainer]) -> list[ProjectContainer]:
    """The same containers with their states read again."""
    import dataclasses

    return [dataclasses.replace(c, state=engine.containers.state(c.container)) for c in found]


def pick(containers: Sequence[ProjectContainer], service: str, index: int | None,
         *, running: bool = True) -> ProjectContainer:
    """The replica `--index` names (default: the lowest-numbered one) of `service`, among
    its running containers (with `running`) or all of them."""
    mine = [c for c in containers if c.service == service and not c.oneoff]
    if running:
        mine = [c for c in mine if c.running]
    if index is not None:
        for candidate in mine:
            if candidate.number == index:
                return candidate
        if running:
            raise Conflict(f'service "{service}" is not running container #{index}')
        raise NotFound(f'service "{service}" has no container #{index}')
    if not mine:
        if running:
            raise Conflict(f'service "{service}" is not running')
        raise NotFound(f'service "{service}" has no container')
    return mine[0]


def short_name(project: str, container_name: str) -> str:
    """`web-1` for `blog-web-1`: how log prefixes name a container (a custom
    `container_name` stays whole)."""
    prefix = f"{project}-"
    return container_name[len(prefix):] if container_name.startswith(prefix) else container_name


def add_index(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--index", type=int, default=None, metavar="N",
                        help="index of the container if the service has multiple replicas")
