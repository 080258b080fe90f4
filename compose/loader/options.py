"""What a load is asked to do (`LoadOptions`), and the scope one Compose project loads in.

`LoadOptions` is built by the CLI from its flags and the process environment; the loader never
reads `os.environ` or the real working directory itself.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from compose.loader.interpolate import Interpolator


@dataclass(frozen=True, slots=True)
class LoadOptions:
    """The inputs of `load_merged`: flags, environment and working directory."""

    environment: Mapping[str, str]        # the process environment, passed in
    cwd: str                              # absolute
    files: tuple[str, ...] = ()           # -f values in order; "-" means stdin
    stdin: str | None = None              # text of stdin when a file is "-"
    project_name: str | None = None       # -p
    project_directory: str | None = None  # --project-directory
    profiles: tuple[str, ...] = ()        # --profile
    env_files: tuple[str, ...] = ()       # --env-file (repeatable)
    interpolate: bool = True              # False for `config --no-interpolate`


@dataclass(frozen=True, slots=True)
class Scope:
    """One Compose project being loaded: the main project, or one pulled in by `include`.

    `project_dir` anchors relative paths (include paths, rebased resource paths);
    `interp` substitutes variables from this project's environment; `chain` lists the
    absolute paths of the files whose `include` led here, for cycle detection.
    """

    project_dir: str
    interp: Interpolator
    chain: tuple[str, ...] = ()
