"""The Compose loader: files -> frozen `compose.model.Project`.

Stages (each hands the next a located tree or a frozen value):
parse -> interpolate -> include/extends -> merge (`load_merged`, in raw.py), then
validate (schema) -> semantic (references, short syntax, units, cycles) -> canonical
(long syntax, defaults, profiles) -> bind (model). Every user mistake is a `ConfigError`
listing all problems found by the stage that stopped, each as `FILE:LINE: key.path: what`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from compose.loader.options import LoadOptions
    from compose.loader.raw import MergedConfig
    from compose.model import Project

__all__ = ["canonical_project", "load", "load_merged", "project_from_merged"]


def load_merged(options: LoadOptions) -> MergedConfig:
    """The merged, located tree of the files `options` names (see raw.py)."""
    from compose.loader.raw import load_merged as _load_merged

    return _load_merged(options)


def canonical_project(merged: MergedConfig, *, services: Sequence[str] = (),
                      interpolated: bool = True) -> tuple[dict[str, Any], list[str]]:
    """Validates `merged.tree` and returns (canonical project dict, warnings).

    With `interpolated=False` (`config --no-interpolate`), values that still hold `$`
    references are not checked against their formats.
    """
    from compose.loader import canonical, semantic, validate
    from compose.loader.dotenv import read_env_file

    tree = merged.tree
    validate.validate(tree, lenient=not interpolated)
    semantic.check(tree, lenient=not interpolated)
    ctx = canonical.Context(name=merged.name, working_dir=merged.working_dir,
                            environment=merged.environment, profiles=tuple(merged.profiles),
                            services=tuple(services), read_env_file=read_env_file,
                            lenient=not interpolated)
    return canonical.canonicalize(tree, ctx), ctx.warnings


def project_from_merged(merged: MergedConfig, *, services: Sequence[str] = (),
                        interpolated: bool = True) -> Project:
    """Validate, canonicalise and bind an already merged configuration."""
    from compose.graph import build
    from compose.loader.bind import bind_project

    data, warnings = canonical_project(merged, services=services, interpolated=interpolated)
    project = bind_project(data, working_dir=merged.working_dir,
                           config_files=tuple(merged.config_files),
                           environment=merged.environment, profiles=tuple(merged.profiles),
                           warnings=(*merged.warnings, *warnings))
    build(project)  # cycles were reported with locations already; this is the last guard
    return project


def load(options: LoadOptions, *, services: Sequence[str] = ()) -> Project:
    """Loads the project `options` describes. `services` names services to enable even
    when their profiles are not active (their dependencies too)."""
    return project_from_merged(load_merged(options), services=services,
                               interpolated=options.interpolate)
