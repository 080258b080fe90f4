"""Dockerfile parsing: text -> instructions with their lines -> build stages. Pure, no I/O.

Follows the Dockerfile reference: parser directives at the top (`escape`; `syntax` and
`check` are accepted and ignored), comment lines (also inside continuations), line
continuations with the escape character, case-insensitive keywords, `--flag=value` options
before the arguments, JSON (exec) form where the reference allows it, and `ARG` before the
first `FROM`. Heredocs are not supported (an error says so).

Every problem is a `DockerfileError` reading `Dockerfile:7: unknown instruction "RUNN"`.
Variable substitution (`$VAR`, `${VAR:-x}`, `${VAR:+x}`) happens later, in the builder,
with `words()` / `word()`, because it needs the build's ARG and ENV values.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass

from engine.errors import InvalidArgument
from engine.imagechanges import split_words

KEYWORDS = ("FROM", "RUN", "CMD", "ENTRYPOINT", "COPY", "ADD", "ENV", "ARG", "WORKDIR", "USER",
            "EXPOSE", "LABEL", "VOLUME", "HEALTHCHECK", "STOPSIGNAL", "SHELL", "ONBUILD",
            "MAINTAINER")
# Flags each instruction accepts (others are refused with the line).
FLAGS: dict[str, frozenset[str]] = {
    "FROM": frozenset({"platform"}),
    "COPY": frozenset({"from", "chown", "chmod", "link", "parents", "exclude"}),
    "ADD": frozenset({"chown", "chmod", "link", "checksum", "keep-git-dir", "exclude"}),
    "RUN": frozenset({"network", "security"}),
    "HEALTHCHECK": frozenset({"interval", "timeout", "start-period", "start-interval",
                              "retries"}),
}
_DIRECTIVE = re.compile(r"#\s*([a-zA-Z][a-zA-Z0-9]*)\s*=\s*(.+?)\s*$")
_NAME = re.compile(r"^[a-zA-Z][a-zA-Z0-9_.-]*$")


class DockerfileError(InvalidArgument):
    """A Dockerfile problem, located: `<file>:<line>: <what is wrong>`."""

    def __init__(self, filename: str, line: int, message: str) -> None:
        super().__init__(f"{filename}:{line}: {message}" if line else f"{filename}: {message}")
        self.filename, self.line, self.message = filename, line, message


@dataclass(frozen=True, slots=True)
class Instruction:
    """One Dockerfile instruction, as written."""

    keyword: str                          # upper case
    args: str                             # after the flags, continuations joined
    line: int                             # first line (1-based)
    flags: tuple[tuple[str, str], ...] = ()
    original: str = ""                    # the instruction as written (one line)

    def flag(self, name: str, default: str | None = None) -> str | None:
        for key, value in self.flags:
            if key == name:
                return value
        return default

    def json_args(self) -> list[str] | None:
        """The exec (JSON array of strings) form of the arguments, or None if not JSON."""
        text = self.args.strip()
        if not text.startswith("["):
            return None
        try:
            value = json.loads(text)
        except ValueError:
            return None
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return value
        return None


@dataclass(frozen=True, slots=True)
class Stage:
    """One build stage: its FROM and the instructions after it."""

    index: int
    name: str | None                      # the `AS name`, lower case
    base: str                             # image reference or stage name, unexpanded
    platform: str | None
    line: int
    instructions: tuple[Instruction, ...]

    @property
    def label(self) -> str:
        return self.name or f"stage-{self.index}"


@dataclass(frozen=True, slots=True)
class Dockerfile:
    """A parsed Dockerfile: its global ARGs and stages."""

    filename: str
    escape: str
    global_args: tuple[Instruction, ...]  # ARGs before the first FROM
    stages: tuple[Stage, ...]

    def error(self, instruction: Instruction | int, message: str) -> DockerfileError:
        line = instruction if isinstance(instruction, int) else instruction.line
        return DockerfileError(self.filename, line, message)

    def stage(self, ref: str) -> Stage | None:
        """A stage by name or index (as `COPY --from` and `--target` name them)."""
        for stage in self.stages:
            if stage.name == ref.lower():
                return stage
        if ref.isdigit() and int(ref) < len(self.stages):
            return self.stages[int(ref)]
        return None


def parse(text: str, filename: str = "Dockerfile") -> Dockerfile:
    """Parses a whole Dockerfile and splits it into stages."""
    escape = "\\"
    lines = text.splitlines()
    start = 0
    seen: set[str] = set()
    for number, raw in enumerate(lines):
        match = _DIRECTIVE.match(raw.strip()) if raw.strip().startswith("#") else None
        if not match:
            break
        name, value = match.group(1).lower(), match.group(2)
        if name not in ("escape", "syntax", "check"):
            break  # an unknown directive is a comment, and ends the directives
        if name in seen:
            raise DockerfileError(filename, number + 1, f"only one {name} parser directive "
                                  "can be used")
        seen.add(name)
        if name == "escape":
            if value not in ("\\", "`"):
                raise DockerfileError(filename, number + 1, f"invalid escape token {value!r} "
                                      "(expected \\ or `)")
            escape = value
        start = number + 1
    instructions = list(_instructions(lines, start, escape, filename))
    return _stages(filename, escape, instructions)


def _instructions(lines: list[str], start: int, escape: str, filename: str):
    i = start
    while i < len(lines):
        raw = lines[i]
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            i += 1
            continue
        first = i + 1
        parts: list[str] = []
        text = raw.lstrip()
        while True:
            body = text.rstrip()
            if body.endswith(escape):
                parts.append(body[:-1])
                i += 1
                # Comment and empty lines inside a continuation are skipped.
                while i < len(lines) and (not lines[i].strip()
                                          or lines[i].strip().startswith("#")):
                    i += 1
                if i >= len(lines):
                    break
                text = lines[i]
                continue
            parts.append(text)
            i += 1
            break
        joined = "".join(parts).strip()
        yield _instruction(joined, first, filename)


def _instruction(text: str, line: int, filename: str) -> Instruction:
    keyword, _, rest = text.partition(" ")
    if "\t" in keyword:
        keyword, _, more = keyword.partition("\t")
        rest = more + " " + rest
    upper = keyword.upper()
    if upper not in KEYWORDS:
        raise DockerfileError(filename, line, f'unknown instruction "{keyword}"')
    rest = rest.strip()
    flags: list[tuple[str, str]] = []
    while rest.startswith("--") and upper in FLAGS:
        token, _, rest = rest.partition(" ")
        rest = rest.strip()
        name, sep, value = token[2:].partition("=")
        if name not in FLAGS[upper]:
            raise DockerfileError(filename, line, f"{upper}: unknown flag --{name}")
        flags.append((name, value if sep else "true"))
    if re.match(r"<<-?", rest) and upper in ("RUN", "COPY", "ADD"):
        raise DockerfileError(filename, line, f"{upper}: heredocs are not supported")
    if not rest and upper not in ("ONBUILD",):
        raise DockerfileError(filename, line, f"{upper} requires at least one argument")
    return Instruction(upper, rest, line, tuple(flags), text)


def _stages(filename: str, escape: str, instructions: list[Instruction]) -> Dockerfile:
    global_args: list[Instruction] = []
    stages: list[Stage] = []
    current: list[Instruction] | None = None
    head: tuple[str | None, str, str | None, int] | None = None

    def close() -> None:
        if head is not None and current is not None:
            stages.append(Stage(len(stages), head[0], head[1], head[2], head[3],
                                tuple(current)))

    for ins in instructions:
        if ins.keyword == "FROM":
            close()
            words = ins.args.split()
            if len(words) == 3 and words[1].lower() == "as":
                name = words[2].lower()
                if not _NAME.match(name):
                    raise DockerfileError(filename, ins.line, f'invalid stage name "{words[2]}"')
                if any(s.name == name for s in stages):
                    raise DockerfileError(filename, ins.line, f'duplicate stage name "{name}"')
            elif len(words) == 1:
                name = None
            else:
                raise DockerfileError(filename, ins.line,
                                      "FROM takes IMAGE [AS NAME] (with optional --platform)")
            head = (name, words[0], ins.flag("platform"), ins.line)
            current = []
            continue
        if current is None:
            if ins.keyword != "ARG":
                raise DockerfileError(filename, ins.line, f"{ins.keyword} before the first FROM "
                                      "(only ARG may come before FROM)")
            global_args.append(ins)
            continue
        _check(filename, ins)
        current.append(ins)
    close()
    if not stages:
        raise DockerfileError(filename, 0, "no FROM instruction (a Dockerfile starts with "
                              "FROM, optionally after ARGs)")
    return Dockerfile(filename, escape, tuple(global_args), tuple(stages))


def _check(filename: str, ins: Instruction) -> None:
    """Shape checks that need no variable values."""
    if ins.keyword == "SHELL" and ins.json_args() is None:
        raise DockerfileError(filename, ins.line, 'SHELL requires the JSON form (SHELL ["exe", '
                              '"arg"])')
    if ins.keyword in ("COPY", "ADD"):
        argv = ins.json_args()
        count = len(argv) if argv is not None else len(ins.args.split())
        if count < 2:
            raise DockerfileError(filename, ins.line, f"{ins.keyword} requires at least two "
                                  "arguments: SOURCE... DEST")
    if ins.keyword == "ONBUILD":
        inner = ins.args.split(None, 1)[0].upper() if ins.args.strip() else ""
        if inner in ("ONBUILD", "FROM", "MAINTAINER", ""):
            raise DockerfileError(filename, ins.line,
                                  f"ONBUILD cannot trigger {inner or 'nothing'}")
    if ins.keyword == "HEALTHCHECK":
        kind = ins.args.split(None, 1)[0].upper()
        if kind not in ("CMD", "NONE"):
            raise DockerfileError(filename, ins.line, "HEALTHCHECK takes CMD ... or NONE")


# -- variable substitution -------------------------------------------------------------------

def words(ins: Instruction, text: str, env: Mapping[str, str], filename: str) -> list[str]:
    """Dockerfile word splitting with quote removal and `$VAR` substitution."""
    try:
        return split_words(text, dict(env))
    except InvalidArgument as error:
        raise DockerfileError(filename, ins.line, f"{ins.keyword}: {error}") from None


def word(ins: Instruction, text: str, env: Mapping[str, str], filename: str) -> str:
    """Substitution within one value (spaces kept, quotes removed)."""
    return " ".join(words(ins, text, env, filename))


def key_values(ins: Instruction, env: Mapping[str, str], filename: str) -> list[tuple[str, str]]:
    """`K=V K2="v 2"` pairs, or the legacy `K some value` form (ENV, LABEL)."""
    parts = words(ins, ins.args, env, filename)
    if parts and "=" not in parts[0]:
        key, _, value = ins.args.strip().partition(" ")
        value_words = words(ins, value.strip(), env, filename) if value.strip() else []
        if not value_words:
            raise DockerfileError(filename, ins.line, f"{ins.keyword} requires KEY=VALUE "
                                  "(or KEY VALUE)")
        return [(key, " ".join(value_words))]
    pairs = []
    for part in parts:
        key, sep, value = part.partition("=")
        if not sep or not key:
            raise DockerfileError(filename, ins.line, f"{ins.keyword}: {part!r} is not "
                                  "KEY=VALUE")
        pairs.append((key, value))
    return pairs


def parse_duration(text: str) -> float:
    """Go durations as HEALTHCHECK takes them (`30s`, `1m30s`, `500ms`) -> seconds."""
    units = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
    total, pos = 0.0, 0
    pattern = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
    while pos < len(text):
        match = pattern.match(text, pos)
        if not match:
            raise ValueError(text)
        total += float(match.group(1)) * units[match.group(2)]
        pos = match.end()
    if not text:
        raise ValueError(text)
    return total
