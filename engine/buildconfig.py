"""Pure: the Dockerfile instructions that change only the image config (no files).

`apply(config, ins, env, ...)` updates a container config dict (the image config's
`config` object: Env, Cmd, Entrypoint, WorkingDir, User, ExposedPorts, Volumes, Labels,
StopSignal, Healthcheck, Shell, OnBuild) for ENV, LABEL, WORKDIR, USER, EXPOSE, VOLUME,
STOPSIGNAL, CMD, ENTRYPOINT, SHELL, HEALTHCHECK and ONBUILD. `env` holds the values `$VAR`
expands to (build args in scope, overridden by ENV). Errors name the Dockerfile line.
"""

from __future__ import annotations

import json
import posixpath
import shlex
from collections.abc import Mapping
from typing import Any

from engine import dockerfile as df
from engine.errors import InvalidArgument
from engine.imagechanges import apply_changes, env_map  # env_map: used by build.py too

DEFAULT_SHELL = ("/bin/sh", "-c")
METADATA = frozenset({"ENV", "LABEL", "USER", "EXPOSE", "VOLUME", "STOPSIGNAL", "CMD",
                      "ENTRYPOINT", "SHELL", "HEALTHCHECK", "ONBUILD", "MAINTAINER"})


def shell_of(config: Mapping[str, Any]) -> list[str]:
    return list(config.get("Shell") or DEFAULT_SHELL)


def command_argv(ins: df.Instruction, config: Mapping[str, Any]) -> list[str]:
    """RUN/CMD/ENTRYPOINT arguments: the JSON form as written, else SHELL + the text."""
    argv = ins.json_args()
    if argv is not None:
        return argv
    return [*shell_of(config), ins.args]


def workdir(current: str, ins: df.Instruction, env: Mapping[str, str], filename: str) -> str:
    path = df.word(ins, ins.args, env, filename)
    if not path.startswith("/"):
        path = posixpath.join(current or "/", path)
    return posixpath.normpath(path)


def apply(config: dict[str, Any], ins: df.Instruction, env: Mapping[str, str], filename: str,
          *, cmd_set: bool = True) -> dict[str, Any]:
    """A new config with `ins` applied. `cmd_set`: whether CMD was set in this stage (an
    ENTRYPOINT drops a CMD inherited from the base image, as Docker does)."""
    out = json.loads(json.dumps(config))
    key = ins.keyword
    if key == "ENV":
        current = env_map(out)
        for name, value in df.key_values(ins, env, filename):
            current[name] = value
        out["Env"] = [f"{k}={v}" for k, v in current.items()]
    elif key == "LABEL":
        labels = dict(out.get("Labels") or {})
        labels.update(df.key_values(ins, env, filename))
        out["Labels"] = labels
    elif key == "USER":
        user = df.words(ins, ins.args, env, filename)
        if len(user) != 1:
            raise df.DockerfileError(filename, ins.line, "USER takes one USER[:GROUP] argument")
        out["User"] = user[0]
    elif key in ("EXPOSE", "STOPSIGNAL", "VOLUME"):
        argv = ins.json_args() if key == "VOLUME" else None
        items = argv if argv is not None else df.words(ins, ins.args, env, filename)
        try:
            rest = json.dumps(items) if key == "VOLUME" else " ".join(map(shlex.quote, items))
            out = apply_changes(out, [f"{key} {rest}"])
        except InvalidArgument as error:
            message = str(error).split(": ", 1)[-1]
            raise df.DockerfileError(filename, ins.line, message) from None
    elif key in ("CMD", "ENTRYPOINT"):
        out["Cmd" if key == "CMD" else "Entrypoint"] = command_argv(ins, out)
        if key == "ENTRYPOINT" and not cmd_set:
            out["Cmd"] = None
    elif key == "SHELL":
        argv = ins.json_args()
        if not argv:
            raise df.DockerfileError(filename, ins.line, 'SHELL requires a non-empty JSON array')
        out["Shell"] = argv
    elif key == "HEALTHCHECK":
        out["Healthcheck"] = healthcheck(ins, out, filename)
    elif key == "ONBUILD":
        out["OnBuild"] = [*(out.get("OnBuild") or []), ins.args.strip()]
    elif key == "MAINTAINER":
        pass  # recorded as the image's author by the builder
    else:
        raise df.DockerfileError(filename, ins.line, f"{key} is not a config instruction")
    return out


def healthcheck(ins: df.Instruction, config: Mapping[str, Any], filename: str) -> dict:
    kind, _, rest = ins.args.strip().partition(" ")
    if kind.upper() == "NONE":
        return {"Test": ["NONE"]}
    rest = rest.strip()
    if not rest:
        raise df.DockerfileError(filename, ins.line, "HEALTHCHECK CMD requires a command")
    inner = df.Instruction("CMD", rest, ins.line)
    argv = inner.json_args()
    test = ["CMD", *argv] if argv is not None else ["CMD-SHELL", rest]
    out: dict[str, Any] = {"Test": test}
    names = {"interval": "Interval", "timeout": "Timeout", "start-period": "StartPeriod",
             "start-interval": "StartInterval"}
    for flag, value in ins.flags:
        if flag == "retries":
            if not value.isdigit():
                raise df.DockerfileError(filename, ins.line, f"HEALTHCHECK --retries={value}: "
                                         "expected a whole number")
            out["Retries"] = int(value)
            continue
        try:
            out[names[flag]] = int(df.parse_duration(value) * 1e9)
        except ValueError:
            raise df.DockerfileError(filename, ins.line, f"HEALTHCHECK --{flag}={value}: "
                                     "expected a duration such as 30s or 1m30s") from None
    return out
