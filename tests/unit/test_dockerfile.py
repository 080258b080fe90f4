"""Dockerfile parsing, `.dockerignore` rules and config-only instructions: text in, typed
instructions, stages, configs and located errors out."""

from __future__ import annotations

import pytest

from engine import buildconfig, buildcontext
from engine import dockerfile as df
from engine.buildcopy import destination


def test_stages_args_flags_and_lines() -> None:
    parsed = df.parse(
        "# syntax=docker/dockerfile:1\n"
        "ARG BASE=busybox\n"
        "FROM --platform=linux/amd64 $BASE AS Build\n"
        "# a comment\n"
        "RUN echo one \\\n"
        "  # a comment inside a continuation\n"
        "    two\n"
        "copy --from=build --chown=1:1 a b /dst/\n"
        "\n"
        "FROM build\n"
        "CMD [\"sh\"]\n", "ctx/Dockerfile")
    assert [a.args for a in parsed.global_args] == ["BASE=busybox"]
    first, second = parsed.stages
    assert (first.name, first.base, first.platform, first.line) == (
        "build", "$BASE", "linux/amd64", 3)
    run, copy = first.instructions
    assert (run.keyword, run.args, run.line) == ("RUN", "echo one     two", 5)
    assert copy.keyword == "COPY" and copy.line == 8
    assert copy.flags == (("from", "build"), ("chown", "1:1"))
    assert copy.args == "a b /dst/"
    assert parsed.stage("build") is first and parsed.stage("1") is second
    assert second.instructions[0].json_args() == ["sh"]


def test_escape_directive_changes_the_continuation_character() -> None:
    parsed = df.parse("# escape=`\nFROM scratch\nRUN dir c:\\ `\n  && echo hi\n")
    assert parsed.escape == "`"
    assert parsed.stages[0].instructions[0].args == "dir c:\\   && echo hi"


@pytest.mark.parametrize(("text", "message"), [
    ("FROM busybox\n\n\n\n\n\nRUNN echo\n", 'Dockerfile:7: unknown instruction "RUNN"'),
    ("RUN echo\n", "Dockerfile:1: RUN before the first FROM"),
    ("FROM busybox\nCOPY onlyone\n", "Dockerfile:2: COPY requires at least two arguments"),
    ("FROM busybox\nSHELL /bin/bash -c\n", "Dockerfile:2: SHELL requires the JSON form"),
    ("FROM busybox\nCOPY --form=x a b\n", "Dockerfile:2: COPY: unknown flag --form"),
    ("FROM a AS x\nFROM b AS X\n", 'Dockerfile:2: duplicate stage name "x"'),
    ("FROM busybox\nRUN <<EOF\necho\nEOF\n", "Dockerfile:2: RUN: heredocs are not supported"),
    ("FROM busybox\nENV\n", "Dockerfile:2: ENV requires at least one argument"),
    ("# just a comment\n", "Dockerfile: no FROM instruction"),
])
def test_errors_point_at_file_and_line(text: str, message: str) -> None:
    with pytest.raises(df.DockerfileError) as caught:
        df.parse(text)
    assert str(caught.value).startswith(message)


def _ins(text: str) -> df.Instruction:
    return df.parse("FROM scratch\n" + text + "\n").stages[0].instructions[0]


def test_config_instructions_with_substitution() -> None:
    config: dict = {"Env": ["PATH=/bin"]}
    env = {"V": "1.2", "EMPTY": ""}
    for line in ("ENV A=$V B=\"two words\" C=${EMPTY:-dflt} D=${V:+set}",
                 "LABEL version=$V \"com.example.x\"=y", "USER app:app",
                 "EXPOSE 80 53/udp", "VOLUME [\"/data\"]", "STOPSIGNAL SIGINT",
                 "ENTRYPOINT [\"/entry\"]", "CMD serve --port 80",
                 "HEALTHCHECK --interval=5s --retries=2 CMD wget -q localhost",
                 "ONBUILD RUN echo later"):
        config = buildconfig.apply(config, _ins(line), env, "Dockerfile")
    assert config["Env"] == ["PATH=/bin", "A=1.2", "B=two words", "C=dflt", "D=set"]
    assert config["Labels"] == {"version": "1.2", "com.example.x": "y"}
    assert config["User"] == "app:app"
    assert config["ExposedPorts"] == {"80/tcp": {}, "53/udp": {}}
    assert config["Volumes"] == {"/data": {}}
    assert config["StopSignal"] == "SIGINT"
    assert config["Entrypoint"] == ["/entry"]
    assert config["Cmd"] == ["/bin/sh", "-c", "serve --port 80"]
    assert config["Healthcheck"] == {"Test": ["CMD-SHELL", "wget -q localhost"],
                                     "Interval": 5_000_000_000, "Retries": 2}
    assert config["OnBuild"] == ["RUN echo later"]


def test_shell_changes_shell_form_and_entrypoint_drops_inherited_cmd() -> None:
    config = buildconfig.apply({"Cmd": ["sh"]}, _ins('SHELL ["/bin/bash", "-ec"]'), {}, "D")
    config = buildconfig.apply(config, _ins("ENTRYPOINT run it"), {}, "D", cmd_set=False)
    assert config["Entrypoint"] == ["/bin/bash", "-ec", "run it"]
    assert config["Cmd"] is None


def test_bad_values_name_the_line() -> None:
    with pytest.raises(df.DockerfileError, match=r"^Dockerfile:2: .*invalid port"):
        buildconfig.apply({}, _ins("EXPOSE 99999"), {}, "Dockerfile")
    with pytest.raises(df.DockerfileError, match=r"^Dockerfile:2: HEALTHCHECK --interval"):
        buildconfig.apply({}, _ins("HEALTHCHECK --interval=soon CMD true"), {}, "Dockerfile")


def test_workdir_joins_relative_paths() -> None:
    assert buildconfig.workdir("/app", _ins("WORKDIR src/$SUB"), {"SUB": "x"}, "D") == \
        "/app/src/x"
    assert buildconfig.workdir("/app", _ins("WORKDIR /abs/../b"), {}, "D") == "/b"


def test_dockerignore_patterns_and_exceptions() -> None:
    rules = buildcontext.parse_ignore(
        "# comment\n*.log\n/build\n**/tmp\nsecrets/*\n!secrets/keep.txt\ndocs/**/*.md\n")
    ignored = rules.ignored
    assert ignored("app.log") and not ignored("dir/app.log")   # * stops at /
    assert ignored("build") and ignored("build/out/x.o")        # a dir excludes its content
    assert ignored("tmp") and ignored("a/b/tmp/file")
    assert ignored("secrets/key.pem") and not ignored("secrets/keep.txt")
    assert ignored("docs/readme.md") and ignored("docs/a/b/c.md")
    assert not ignored("docs/a/b/c.txt") and not ignored("src/main.py")


def test_copy_destinations() -> None:
    assert destination(".", "/app") == ("/app", True)
    assert destination("conf/", "/app") == ("/app/conf", True)
    assert destination("/etc/x.conf", "/app") == ("/etc/x.conf", False)
