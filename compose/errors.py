"""Errors about Compose input. All are `engine.errors.Error`, so the CLI prints them plainly."""

from __future__ import annotations

from dataclasses import dataclass

from engine.errors import InvalidArgument


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with the input, located as precisely as we know.

    Rendered as `FILE:LINE: key.path: message`; parts we do not know are left out.
    """

    message: str
    file: str | None = None
    line: int | None = None
    path: str | None = None

    def __str__(self) -> str:
        where = ""
        if self.file:
            where = f"{self.file}:{self.line}: " if self.line else f"{self.file}: "
        key = f"{self.path}: " if self.path else ""
        return f"{where}{key}{self.message}"


class ConfigError(InvalidArgument):
    """One or more problems in the Compose files; `str()` lists each on its own line."""

    def __init__(self, problems: list[Problem] | Problem | str) -> None:
        if isinstance(problems, str):
            problems = [Problem(problems)]
        elif isinstance(problems, Problem):
            problems = [problems]
        self.problems: list[Problem] = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


class DependencyError(InvalidArgument):
    """A dependency cycle, or a dependency on something that is not defined."""
