"""The `.env` / `env_file` format of the Compose Specification.

Each line is `VAR[=[VAL]]`, optionally after `export `. Blank lines and lines starting with
`#` are skipped. Values:
- unquoted: trimmed; a `#` preceded by whitespace starts a comment; `${VAR}` is substituted;
  backslashes are kept as written.
- double-quoted: may span lines; `\\n \\r \\t \\\\ \\" \\$` are escapes; `${VAR}` is
  substituted (`\\$` gives a literal `$`); only a comment may follow the closing quote.
- single-quoted: may span lines; literal except `\\'`.
`VAR=` sets "", a bare `VAR` takes the value from `lookup` or, if it has none, is left out.
Substitution looks a name up with `lookup` first, then among the values of earlier lines; an
unset name gives "" without a warning, and the whole `${...}` syntax of interpolation applies.

`format: raw` files (`read_env_file(raw=True)`) split each line at the first `=` and keep
the value exactly as written.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from compose.errors import ConfigError, Problem
from compose.loader.interpolate import InterpolationSyntaxError, MissingVariableError, expand

_KEY = re.compile(r"[ \t]*(?:export[ \t]+)?([A-Za-z_][A-Za-z0-9_.\-]*)[ \t]*")
_DOUBLE_ESCAPES = {"n": "\n", "r": "\r", "t": "\t", "\\": "\\", '"': '"', "$": "$$"}
_UNQUOTED_COMMENT = re.compile(r"[ \t]#")

Lookup = Callable[[str], "str | None"]


def parse_dotenv(text: str, file: str, lookup: Lookup | None = None) -> dict[str, str]:
    """Parses the text of an env file. Errors are `ConfigError`s naming `file` and the line."""
    return _Parser(text, file, lookup, raw=False).run()


def parse_raw_env(text: str, file: str, lookup: Lookup | None = None) -> dict[str, str]:
    """Parses an env file in `format: raw`: no quotes, no escapes, no substitution."""
    return _Parser(text, file, lookup, raw=True).run()


def read_env_file(path: str, *, required: bool = True, raw: bool = False,
                  lookup: Lookup | None = None, display: str | None = None,
                  origin: Problem | None = None) -> dict[str, str]:
    """Reads and parses the env file at `path` (absolute).

    A missing file is an error when `required`, else gives {}. `display` names the file in
    messages (default: `path`); `origin` locates the reference to the file (the `env_file`
    entry, the `--env-file` flag), so a missing file is reported there.
    """
    name = display or path
    try:
        with open(path, encoding="utf-8-sig") as handle:
            text = handle.read()
    except FileNotFoundError:
        if not required:
            return {}
        raise ConfigError(_where(origin, f"env file {name} not found")) from None
    except IsADirectoryError:
        raise ConfigError(_where(origin, f"env file {name} is a directory")) from None
    except UnicodeDecodeError:
        raise ConfigError(Problem("env file is not valid UTF-8 text", name)) from None
    except OSError as exc:
        raise ConfigError(_where(origin, f"cannot read env file {name}: "
                                         f"{exc.strerror or exc}")) from None
    return _Parser(text, name, lookup, raw=raw).run()


def _where(origin: Problem | None, message: str) -> Problem:
    if origin is None:
        return Problem(message)
    detail = f" ({origin.message})" if origin.message else ""
    return Problem(message + detail, origin.file, origin.line, origin.path)


class _Parser:
    """One pass over the text; `pos` is the start of the current line, `line` its number."""

    def __init__(self, text: str, file: str, lookup: Lookup | None, raw: bool) -> None:
        self.text = text.replace("\r\n", "\n")
        if self.text.startswith("\ufeff"):
            self.text = self.text[1:]
        self.file = file
        self.lookup = lookup
        self.raw = raw
        self.values: dict[str, str] = {}
        self.pos = 0
        self.line = 1

    def error(self, message: str, line: int | None = None, key: str | None = None) -> ConfigError:
        return ConfigError(Problem(message, self.file, line or self.line, key))

    def run(self) -> dict[str, str]:
        text = self.text
        while self.pos < len(text):
            eol = text.find("\n", self.pos)
            if eol < 0:
                eol = len(text)
            content = text[self.pos:eol]
            stripped = content.strip()
            if stripped and not stripped.startswith("#"):
                eol = self.entry(content, eol)
            self.pos = eol + 1
            self.line += 1
        return self.values

    def entry(self, content: str, eol: int) -> int:
        """Parses the entry starting on the current line; returns where its last line ends."""
        match = _KEY.match(content)
        key = match.group(1) if match else None
        rest = content[match.end():] if match else content
        if key is None or (rest and rest[0] != "=" and not rest.startswith("#")):
            shown = content.strip()
            raise self.error(f'invalid line "{shown}" (expected VAR=VALUE, VAR, '
                             f"or a # comment)")
        if not rest.startswith("="):
            value = self._lookup(key)
            if value is not None:
                self.values[key] = value
            return eol
        start = self.pos + match.end() + 1
        if self.raw:
            self.values[key] = self.text[start:eol]
            return eol
        while start < eol and self.text[start] in " \t":
            start += 1
        first = self.text[start] if start < eol else ""
        if first == "#" and self.text[start - 1] in " \t":
            value = ""  # `VAR= # comment`
        elif first in ("'", '"'):
            value, eol = self.quoted(key, start, first)
        else:
            value = self.text[start:eol]
            comment = _UNQUOTED_COMMENT.search(value)
            if comment:
                value = value[:comment.start()]
            value = self.substitute(key, value.strip(), self.line)
        self.values[key] = value
        return eol

    def quoted(self, key: str, start: int, quote: str) -> tuple[str, int]:
        """A quoted value starting at `start`; returns it and the end of its last line."""
        text = self.text
        first_line = self.line
        i = start + 1
        parts: list[str] = []
        while True:
            if i >= len(text):
                raise self.error(f"unterminated {quote}-quoted value", first_line, key)
            c = text[i]
            if c == quote:
                break
            if c == "\\" and i + 1 < len(text):
                nxt = text[i + 1]
                if quote == '"' and nxt in _DOUBLE_ESCAPES:
                    parts.append(_DOUBLE_ESCAPES[nxt])
                    i += 2
                    continue
                if quote == "'" and nxt == "'":
                    parts.append("'")
                    i += 2
                    continue
            if c == "\n":
                self.line += 1
            parts.append(c)
            i += 1
        eol = text.find("\n", i)
        if eol < 0:
            eol = len(text)
        trailing = text[i + 1:eol].strip()
        if trailing and not trailing.startswith("#"):
            raise self.error(f'unexpected "{trailing}" after the closing quote', None, key)
        value = "".join(parts)
        if quote == '"':
            value = self.substitute(key, value, first_line)
        return value, eol

    def _lookup(self, name: str) -> str | None:
        if self.lookup is not None:
            value = self.lookup(name)
            if value is not None:
                return value
        return self.values.get(name)

    def substitute(self, key: str, value: str, line: int) -> str:
        try:
            return expand(value, self._lookup)
        except (InterpolationSyntaxError, MissingVariableError) as exc:
            message = str(exc)
            if isinstance(exc, InterpolationSyntaxError):
                message = (f'invalid interpolation format in "{value}": {message} '
                           "(write a literal $ as $$)")
            raise self.error(message, line, key) from None
