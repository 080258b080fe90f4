"""`--change` instructions (Dockerfile syntax) applied to an image's container config.

Supported, as `docker import --change` has them: CMD, ENTRYPOINT (JSON or shell form), ENV,
LABEL (KEY=VALUE pairs or the legacy `KEY VALUE`), WORKDIR (relative paths join the previous
one), USER, EXPOSE (PORT[/PROTO] and ranges), VOLUME (JSON or words), STOPSIGNAL. Words are
split with Dockerfile quoting and `$VAR`/`${VAR}`/`${VAR:-x}`/`${VAR:+x}` expand from ENV.
"""

from __future__ import annotations

import json
import re
import signal
from collections.abc import Mapping, Sequence
from typing import Any

from engine.errors import InvalidArgument

SUPPORTED = ("CMD", "ENTRYPOINT", "ENV", "EXPOSE", "LABEL", "STOPSIGNAL", "USER", "VOLUME",
             "WORKDIR")
_PORT = re.compile(r"(\d+)(?:-(\d+))?(?:/(tcp|udp|sctp))?", re.IGNORECASE)
_VAR = re.compile(r"\$(?:([A-Za-z_][A-Za-z0-9_]*)|\{([A-Za-z_][A-Za-z0-9_]*)(?:(:[-+])([^}]*))?\})")


def apply_changes(config: dict[str, Any], changes: Sequence[str]) -> dict[str, Any]:
    """A copy of `config` (image config's `config` object) with `changes` applied in order."""
    out = json.loads(json.dumps(config))
    for change in changes:
        match = re.match(r"\s*([A-Za-z]+)(?:\s+(.*))?\s*$", change, re.DOTALL)
        if not match:
            raise InvalidArgument(f"--change {change!r}: expected a Dockerfile instruction "
                                  f"({', '.join(SUPPORTED)})")
        instruction, rest = match.group(1).upper(), (match.group(2) or "").strip()
        if instruction not in SUPPORTED:
            raise InvalidArgument(f"--change {change!r}: {instruction} is not supported here "
                                  f"(supported: {', '.join(SUPPORTED)})")
        if not rest:
            raise InvalidArgument(f"--change {change!r}: {instruction} needs an argument")
        try:
            _APPLY[instruction](out, rest)
        except InvalidArgument as error:
            raise InvalidArgument(f"--change {change!r}: {error}") from None
    return out


def env_map(config: Mapping[str, Any]) -> dict[str, str]:
    """The image config's `Env` list as a dict (a later entry wins)."""
    env: dict[str, str] = {}
    for item in config.get("Env") or []:
        key, _, value = item.partition("=")
        env[key] = value
    return env


def _command(config: dict[str, Any], rest: str, key: str) -> None:
    if rest.startswith("["):
        try:
            value = json.loads(rest)
        except ValueError:
            value = None
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            config[key] = value
            return
    config[key] = ["/bin/sh", "-c", rest]


def _pairs(rest: str, env: dict[str, str], what: str) -> list[tuple[str, str]]:
    """`K=V K2="v 2"` or the legacy `K the value`."""
    words = split_words(rest, env)
    if "=" not in words[0]:
        key, _, value = rest.partition(" ") if " " in rest else rest.partition("\t")
        value = " ".join(split_words(value.strip(), env)) if value.strip() else ""
        if not value:
            raise InvalidArgument(f"{what} needs KEY=VALUE (or KEY VALUE)")
        return [(key, value)]
    pairs = []
    for word in words:
        key, sep, value = word.partition("=")
        if not sep or not key:
            raise InvalidArgument(f"{what}: {word!r} is not KEY=VALUE")
        pairs.append((key, value))
    return pairs


def _env(config: dict[str, Any], rest: str) -> None:
    env = env_map(config)
    for key, value in _pairs(rest, env, "ENV"):
        env[key] = value
    config["Env"] = [f"{k}={v}" for k, v in env.items()]


def _label(config: dict[str, Any], rest: str) -> None:
    labels = dict(config.get("Labels") or {})
    labels.update(_pairs(rest, env_map(config), "LABEL"))
    config["Labels"] = labels


def _workdir(config: dict[str, Any], rest: str) -> None:
    path = " ".join(split_words(rest, env_map(config)))
    if not path.startswith("/"):
        path = (config.get("WorkingDir") or "/").rstrip("/") + "/" + path
    config["WorkingDir"] = path


def _user(config: dict[str, Any], rest: str) -> None:
    words = split_words(rest, env_map(config))
    if len(words) != 1:
        raise InvalidArgument("USER takes one USER[:GROUP] argument")
    config["User"] = words[0]


def _expose(config: dict[str, Any], rest: str) -> None:
    ports = dict(config.get("ExposedPorts") or {})
    for word in split_words(rest, env_map(config)):
        match = _PORT.fullmatch(word)
        low = int(match.group(1)) if match else 0
        high = int(match.group(2) or low) if match else 0
        if not match or not 0 < low <= high <= 65535:
            raise InvalidArgument(f"EXPOSE: invalid port {word!r} (expected PORT[-PORT][/tcp|"
                                  "/udp|/sctp] within 1-65535)")
        proto = (match.group(3) or "tcp").lower()
        for port in range(low, high + 1):
            ports[f"{port}/{proto}"] = {}
    config["ExposedPorts"] = ports


def _volume(config: dict[str, Any], rest: str) -> None:
    paths: Any = None
    if rest.startswith("["):
        try:
            paths = json.loads(rest)
        except ValueError:
            paths = None
    if not (isinstance(paths, list) and all(isinstance(p, str) for p in paths)):
        paths = split_words(rest, env_map(config))
    volumes = dict(config.get("Volumes") or {})
    for path in paths:
        if not path:
            raise InvalidArgument("VOLUME: empty path")
        volumes[path] = {}
    config["Volumes"] = volumes


def _stopsignal(config: dict[str, Any], rest: str) -> None:
    words = split_words(rest, env_map(config))
    if len(words) != 1 or not valid_signal(words[0]):
        raise InvalidArgument(f"STOPSIGNAL: invalid signal {rest!r} (e.g. SIGTERM, 15)")
    config["StopSignal"] = words[0]


def valid_signal(text: str) -> bool:
    if text.isdigit():
        return 0 < int(text) < 65
    name = text.upper()
    name = name if name.startswith("SIG") else "SIG" + name
    if re.fullmatch(r"SIGRTM(IN|AX)([+-]\d+)?", name):
        return True
    return name in signal.Signals.__members__


_APPLY = {
    "CMD": lambda c, r: _command(c, r, "Cmd"),
    "ENTRYPOINT": lambda c, r: _command(c, r, "Entrypoint"),
    "ENV": _env, "LABEL": _label, "WORKDIR": _workdir, "USER": _user, "EXPOSE": _expose,
    "VOLUME": _volume, "STOPSIGNAL": _stopsignal,
}


def split_words(text: str, env: dict[str, str]) -> list[str]:
    """Dockerfile word splitting: quotes group, backslash escapes, variables expand (not
    inside single quotes)."""
    words: list[str] = []
    current: list[str] = []
    in_word = False
    quote = ""
    i = 0
    while i < len(text):
        c = text[i]
        if quote == "'":
            if c == "'":
                quote = ""
            else:
                current.append(c)
        elif c == "\\" and i + 1 < len(text):
            i += 1
            current.append(text[i])
            in_word = True
        elif c == "$":
            value, i = _expand_at(text, i, env)
            current.append(value)
            in_word = True
            continue
        elif quote == '"':
            if c == '"':
                quote = ""
            else:
                current.append(c)
        elif c in "'\"":
            quote = c
            in_word = True
        elif c.isspace():
            if in_word:
                words.append("".join(current))
                current, in_word = [], False
        else:
            current.append(c)
            in_word = True
        i += 1
    if quote:
        raise InvalidArgument(f"unterminated {quote} quote in {text!r}")
    if in_word:
        words.append("".join(current))
    return words


def _expand_at(text: str, i: int, env: dict[str, str]) -> tuple[str, int]:
    match = _VAR.match(text, i)
    if not match:
        return "$", i + 1
    name = match.group(1) or match.group(2)
    value = env.get(name)
    if match.group(3) == ":-":
        value = value if value else match.group(4)
    elif match.group(3) == ":+":
        value = match.group(4) if value else ""
    return value or "", match.end()
