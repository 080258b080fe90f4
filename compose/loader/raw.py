"""The front half of the loader: Compose files + environment -> one merged, located tree.

`load_merged` runs these stages, each a small function:
1. `files.resolve_files`: the files, the project directory, the environment (shell > env
   files).
2. parse each main file (`files.Sources`).
3. `project_name`: -p > COMPOSE_PROJECT_NAME > the last `name:` > the project directory's
   basename (normalised); COMPOSE_PROJECT_NAME is then set to it for interpolation.
4. per file (`load_files`): interpolate (`interpolate.Interpolator`), `include`
   (`include.apply_includes`), `extends` (`extends.Extender`); then merge the files in order
   (`merge.merge_trees`), applying `!reset`/`!override`.
The tree that comes out is unshared (no node appears twice), so later stages may change it.
Schema validation, canonical forms and the typed model come after, in other modules.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from compose.errors import ConfigError, Problem
from compose.loader.extends import Extender
from compose.loader.files import STDIN, Sources, resolve_files
from compose.loader.include import apply_includes
from compose.loader.interpolate import InterpolationLog, Interpolator, Variable
from compose.loader.merge import merge_trees, strip_tags
from compose.loader.options import LoadOptions, Scope
from compose.loader.parse import YMap

_VALID_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]*$")
_INVALID_CHARS = re.compile(r"[^a-z0-9_-]")
NAME_RULE = ("it must contain only lowercase letters, digits, dashes and underscores, "
             "and start with a letter or digit")


@dataclass(frozen=True, slots=True)
class MergedConfig:
    """The merged tree of a project and what was decided on the way."""

    name: str                      # the project name, normalised and validated
    working_dir: str               # absolute project directory
    config_files: tuple[str, ...]  # absolute paths of the main files read ("-" stays "-")
    environment: Mapping[str, str] # shell > --env-file/.env, plus COMPOSE_PROJECT_NAME
    profiles: tuple[str, ...]      # active profiles: --profile, else COMPOSE_PROFILES
    tree: YMap                     # merged, interpolated, include/extends done, located
    warnings: tuple[str, ...]      # each once, in the order met
    variables: Mapping[str, Variable]  # each variable used, by name, in order of first use


def load_merged(options: LoadOptions) -> MergedConfig:
    """Loads the project `options` describe. Raises `ConfigError` for anything the user can
    get wrong, located at the file and line where it is."""
    fileset = resolve_files(options)
    sources = Sources(options.cwd, options.stdin)
    trees = [(path, sources.parse(path)) for path in fileset.files]
    log = InterpolationLog()
    for warning in fileset.warnings:
        log.warn(warning)
    env = dict(fileset.environment)
    name = project_name(options, env, trees, fileset.project_dir, log, sources)
    env["COMPOSE_PROJECT_NAME"] = name
    for path, tree in trees:
        if "version" in tree:
            loc = tree.key_locs.get("version")
            log.warn(f"{loc or sources.display(path)}: the attribute `version` is obsolete "
                     "and ignored; remove it to avoid confusion")
    scope = Scope(fileset.project_dir, Interpolator(env, log, options.interpolate))
    tree = Pipeline(sources).load_files(fileset.files, scope)
    return MergedConfig(
        name=name,
        working_dir=fileset.project_dir,
        config_files=fileset.files,
        environment=env,
        profiles=active_profiles(options, env),
        tree=tree,
        warnings=tuple(log.warnings),
        variables=dict(log.variables),
    )


class Pipeline:
    """Per-file stages and the merge; `include` calls back into `load_files`."""

    __slots__ = ("_extenders", "sources")

    def __init__(self, sources: Sources) -> None:
        self.sources = sources
        # Keyed by the interpolator itself (one per environment), which this keeps alive.
        self._extenders: dict[Interpolator, Extender] = {}

    def load_files(self, paths: Sequence[str], scope: Scope) -> YMap:
        """The files at `paths` (absolute), each loaded in `scope`, merged in order."""
        merged: YMap | None = None
        for path in paths:
            tree, tagged = self.load_file(path, scope)
            if merged is None:
                merged = strip_tags(tree) if tagged else tree
            else:
                merged = merge_trees(merged, tree, tagged=tagged)
        assert merged is not None, "load_files needs at least one file"
        return merged

    def load_file(self, path: str, scope: Scope) -> tuple[YMap, bool]:
        """One file interpolated, with its includes and extends done; `True` when it may
        still carry `!reset`/`!override` tags for the merge."""
        interpolated = scope.interp.tree(self.sources.parse(path))
        tree = interpolated.tree
        apply_includes(tree, path, scope, self.sources, self.load_files)
        self._extender(scope).apply(tree, path)
        return tree, interpolated.tagged

    def _extender(self, scope: Scope) -> Extender:
        extender = self._extenders.get(scope.interp)
        if extender is None:
            extender = Extender(scope.interp, self.sources, scope.project_dir)
            self._extenders[scope.interp] = extender
        return extender


def normalize_name(name: str) -> str:
    """A name derived from a directory, made valid: lowercase, only [a-z0-9_-], starting
    with a letter or digit ("" when nothing is left)."""
    return _INVALID_CHARS.sub("", name.lower()).lstrip("_-")


def project_name(options: LoadOptions, env: Mapping[str, str],
                 trees: Sequence[tuple[str, YMap]], project_dir: str,
                 log: InterpolationLog, sources: Sources) -> str:
    """-p > COMPOSE_PROJECT_NAME > the last file's `name:` > the directory's basename.

    Names given explicitly must already be valid; only the directory's name is normalised.
    """
    if options.project_name:
        return _checked(options.project_name, Problem("", path=None), "given with -p")
    if env.get("COMPOSE_PROJECT_NAME"):
        return _checked(env["COMPOSE_PROJECT_NAME"], Problem(""),
                        "from COMPOSE_PROJECT_NAME")
    # `name:` may use variables; it is substituted even under --no-interpolate, since the
    # project needs a real name.
    interp = Interpolator(env, log)
    for path, tree in reversed(trees):
        value = tree.get("name")
        if value is None or value == "":
            continue
        loc = tree.key_locs.get("name")
        where = Problem("", loc.file if loc else sources.display(path),
                        loc.line if loc else None, "name")
        if not isinstance(value, str | int) or isinstance(value, bool):
            raise ConfigError(Problem("name must be a string", where.file, where.line, "name"))
        text = interp.text(str(value), loc, ("name",))
        if text:
            return _checked(text, where, None)
    base = os.path.basename(project_dir.rstrip("/")) or project_dir
    derived = normalize_name(base)
    if not derived:
        raise ConfigError(Problem(
            f'cannot derive a project name from the directory name "{base}"; set one with '
            "-p, COMPOSE_PROJECT_NAME or a top-level `name:`"))
    return derived


def _checked(name: str, where: Problem, source: str | None) -> str:
    if _VALID_NAME.match(name):
        return name
    origin = f" ({source})" if source else ""
    raise ConfigError(Problem(f'invalid project name "{name}"{origin}: {NAME_RULE}',
                              where.file, where.line, where.path))


def active_profiles(options: LoadOptions, env: Mapping[str, str]) -> tuple[str, ...]:
    """--profile values, else the comma-separated COMPOSE_PROFILES; in order, each once."""
    given: Sequence[str] = options.profiles
    if not given:
        given = env.get("COMPOSE_PROFILES", "").split(",")
    seen: dict[str, None] = {}
    for profile in given:
        profile = profile.strip()
        if profile:
            seen.setdefault(profile, None)
    return tuple(seen)


__all__ = ["STDIN", "LoadOptions", "MergedConfig", "Variable", "load_merged"]
