"""The build context: `.dockerignore` rules, COPY/ADD source selection, content checksums.

`.dockerignore` follows Docker's rules: one pattern a line, `#` comments, paths cleaned and
relative to the context root (a leading `/` is dropped), Go `filepath.Match` syntax (`*` and
`?` stop at `/`, `[a-z]` classes, `\\` escapes) plus `**` for any number of directories, and
`!pattern` exceptions; the last matching pattern decides, and a path is excluded when it or
one of its parent directories is. Pure except for reading the context directory.
"""

from __future__ import annotations

import hashlib
import os
import posixpath
import re
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from engine.errors import InvalidArgument, NotFound

CHUNK = 1 << 20


@dataclass(frozen=True, slots=True)
class Rule:
    """One .dockerignore line, compiled."""

    pattern: str
    regex: re.Pattern[str]
    exclude: bool                 # False for `!` exceptions


@dataclass(frozen=True, slots=True)
class Ignore:
    """A .dockerignore file: its rules in order (the last match wins)."""

    rules: tuple[Rule, ...] = ()

    def ignored(self, rel: str) -> bool:
        """Whether the context path `rel` (slash-separated, no leading `/`) is excluded."""
        if not self.rules or rel in ("", "."):
            return False
        parts = rel.split("/")
        prefixes = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
        result = False
        for rule in self.rules:
            if any(rule.regex.fullmatch(p) for p in prefixes):
                result = rule.exclude
        return result

    def excludes_anything_below(self, rel: str) -> bool:
        """Whether an exception could re-include something below excluded `rel` (then the
        walk must still descend into it)."""
        return any(not r.exclude for r in self.rules)


def parse_ignore(text: str) -> Ignore:
    rules = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        exclude = True
        if line.startswith("!"):
            exclude, line = False, line[1:].strip()
        pattern = posixpath.normpath(line).lstrip("/")
        if pattern in (".", ""):
            continue
        rules.append(Rule(pattern, re.compile(_translate(pattern)), exclude))
    return Ignore(tuple(rules))


def load_ignore(context: Path, dockerfile: str | None = None) -> Ignore:
    """`<Dockerfile>.dockerignore` next to the Dockerfile wins, else `.dockerignore`."""
    candidates = []
    if dockerfile:
        candidates.append(Path(dockerfile + ".dockerignore"))
    candidates.append(context / ".dockerignore")
    for path in candidates:
        try:
            return parse_ignore(path.read_text())
        except (FileNotFoundError, NotADirectoryError):
            continue
        except (OSError, UnicodeDecodeError) as error:
            raise InvalidArgument(f"cannot read {path} "
                                  f"({getattr(error, 'strerror', None) or error})") from None
    return Ignore()


def _translate(pattern: str) -> str:
    out, i = [], 0
    while i < len(pattern):
        c = pattern[i]
        if c == "*":
            if pattern.startswith("**", i):
                i += 2
                if pattern.startswith("/", i):
                    out.append("(?:.*/)?")
                    i += 1
                else:
                    out.append(".*")
                continue
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif c == "[":
            end = pattern.find("]", i + 1)
            if end < 0:
                raise InvalidArgument(f".dockerignore: bad pattern {pattern!r} (unclosed [)")
            body = pattern[i + 1:end]
            if body.startswith("^"):
                body = "!" + body[1:]
            if body.startswith("!"):
                body = "^" + body[1:]
            out.append("[" + body.replace("\\", "\\\\") + "]")
            i = end
        elif c == "\\" and i + 1 < len(pattern):
            i += 1
            out.append(re.escape(pattern[i]))
        else:
            out.append(re.escape(c))
        i += 1
    return "".join(out)


# -- sources -------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Source:
    """One matched COPY/ADD source: its host path and its path relative to the source root."""

    path: Path
    rel: str
    is_dir: bool


def has_glob(text: str) -> bool:
    return any(c in text for c in "*?[")


def select(root: Path, pattern: str, ignore: Ignore, what: str) -> list[Source]:
    """The sources `pattern` names below `root` (a context dir or a stage's mounted rootfs).

    A plain path is resolved inside `root` (symlinks followed, never out of it); a glob is
    matched against every path, segment by segment. Ignored paths never match."""
    from engine.prepare import in_root

    clean = posixpath.normpath("/" + pattern).lstrip("/")
    if not has_glob(clean):
        if clean in ("", "."):
            return [Source(root, "", True)]
        if ignore.ignored(clean):
            raise NotFound(f'{what}: "{pattern}" is excluded by .dockerignore')
        path = in_root(root, clean)
        if not os.path.lexists(path):
            raise NotFound(f'{what}: "{pattern}" not found in the build context')
        return [Source(path, clean, path.is_dir())]
    regex = re.compile(_translate(clean))
    found: list[Source] = []
    depth = 64 if "**" in clean else clean.count("/") + 1
    for rel, entry in _walk_shallow(root, depth):
        if regex.fullmatch(rel) and not ignore.ignored(rel):
            found.append(Source(Path(entry), rel, os.path.isdir(entry)))
    return found


def _walk_shallow(root: Path, depth: int, prefix: str = "") -> Iterator[tuple[str, str]]:
    try:
        entries = sorted(os.scandir(os.path.join(root, prefix) if prefix else root),
                         key=lambda e: e.name)
    except (FileNotFoundError, NotADirectoryError):
        return
    for entry in entries:
        rel = f"{prefix}/{entry.name}" if prefix else entry.name
        yield rel, entry.path
        if depth > 1 and entry.is_dir(follow_symlinks=False):
            yield from _walk_shallow(root, depth - 1, rel)


def walk(source: Source, ignore: Ignore) -> Iterator[tuple[str, os.stat_result, Path]]:
    """Every entry below a directory source (or the file itself), sorted, ignored ones
    skipped: (path relative to the source, lstat, host path)."""
    top = source.path
    if not source.is_dir:
        yield "", os.stat(top), top
        return

    def below(directory: Path, rel: str) -> Iterator[tuple[str, os.stat_result, Path]]:
        for entry in sorted(os.scandir(directory), key=lambda e: e.name):
            sub = f"{rel}/{entry.name}" if rel else entry.name
            context_rel = f"{source.rel}/{sub}" if source.rel else sub
            st = entry.stat(follow_symlinks=False)
            is_dir = stat.S_ISDIR(st.st_mode)
            if ignore.ignored(context_rel):
                if is_dir and ignore.excludes_anything_below(context_rel):
                    kept = list(below(Path(entry.path), sub))
                    if kept:
                        yield sub, st, Path(entry.path)
                        yield from kept
                continue
            yield sub, st, Path(entry.path)
            if is_dir:
                yield from below(Path(entry.path), sub)

    yield from below(top, "")


def checksum(sources: list[Source], ignore: Ignore) -> str:
    """A digest of the sources' names, types, modes and content (not their times or
    owners, as Docker's cache ignores them)."""
    h = hashlib.sha256()
    for source in sources:
        h.update(f"S {source.rel}\0".encode())
        for rel, st, path in walk(source, ignore):
            mode = stat.S_IMODE(st.st_mode)
            if stat.S_ISREG(st.st_mode):
                h.update(f"f {rel} {mode:o} {st.st_size} {file_digest(path)}\0".encode())
            elif stat.S_ISDIR(st.st_mode):
                h.update(f"d {rel} {mode:o}\0".encode())
            elif stat.S_ISLNK(st.st_mode):
                h.update(f"l {rel} {os.readlink(path)}\0".encode())
            else:
                h.update(f"o {rel} {st.st_mode:o}\0".encode())
    return "sha256:" + h.hexdigest()


def file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()
