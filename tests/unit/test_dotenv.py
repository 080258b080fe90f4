"""The `.env` format: quoting, comments, escapes, substitution, raw files, errors at file:line."""

from __future__ import annotations

from pathlib import Path

import pytest

from compose.errors import ConfigError, Problem
from compose.loader.dotenv import parse_dotenv, parse_raw_env, read_env_file


def test_the_specification_examples() -> None:
    text = (
        "# Set Rails/Rack environment\n"
        "RACK_ENV=development\n"
        "\n"
        "   # indented comment\n"
        "VAR=\"quoted\"\n"
        "SINGLE='VAL'\n"
        "A=VAL # comment\n"
        "B=VAL# not a comment\n"
        "C=\"VAL # not a comment\"\n"
        "D=\"VAL\" # comment\n"
        "E='$OTHER'\n"
        "F='${OTHER}'\n"
        "G='Let\\'s go!'\n"
        "H=\"{\\\"hello\\\": \\\"json\\\"}\"\n"
        "I=\"some\\tvalue\"\n"
        "J='some\\tvalue'\n"
        "K=some\\tvalue\n"
        "EMPTY=\n"
        "export EXPORTED=yes\n"
        "  SPACED  =  padded value  \n"
        "DOTTED.name-x=1\n"
    )
    assert parse_dotenv(text, ".env") == {
        "RACK_ENV": "development", "VAR": "quoted", "SINGLE": "VAL", "A": "VAL",
        "B": "VAL# not a comment", "C": "VAL # not a comment", "D": "VAL", "E": "$OTHER",
        "F": "${OTHER}", "G": "Let's go!", "H": '{"hello": "json"}', "I": "some\tvalue",
        "J": "some\\tvalue", "K": "some\\tvalue", "EMPTY": "", "EXPORTED": "yes",
        "SPACED": "padded value", "DOTTED.name-x": "1",
    }


def test_double_quoted_escapes() -> None:
    assert parse_dotenv('A="l1\\nl2\\r\\\\ \\$HOME \\q"\n', ".env") == {"A": "l1\nl2\r\\ $HOME \\q"}


def test_multi_line_quoted_values_and_line_counting() -> None:
    text = 'A="first\nsecond"\nB=\'x\ny\'\nC=${MISSING:?after the values}\n'
    with pytest.raises(ConfigError) as caught:
        parse_dotenv(text, ".env")
    assert str(caught.value).startswith(".env:5: C: required variable MISSING")
    assert parse_dotenv(text.replace("C=${MISSING:?after the values}", "C=c"), ".env") == {
        "A": "first\nsecond", "B": "x\ny", "C": "c"}


def test_substitution_uses_lookup_first_then_earlier_lines() -> None:
    text = "A=one\nB=${A}-$A\nC=\"${SHELL_ONLY:-d}\"\nD='${A}'\nA=two\nE=${A:+alt}\nF=$$x\n"
    assert parse_dotenv(text, ".env", {"SHELL_ONLY": "s"}.get) == {
        "A": "two", "B": "one-one", "C": "s", "D": "${A}", "E": "alt", "F": "$x"}
    assert parse_dotenv("A=file\nB=$A\n", ".env", {"A": "shell"}.get)["B"] == "shell"
    assert parse_dotenv("B=${NOPE}x\n", ".env") == {"B": "x"}


def test_bare_keys_come_from_the_lookup_or_stay_unset() -> None:
    assert parse_dotenv("FROM_SHELL\nNOT_SET\nexport ALSO # comment\n", ".env",
                        {"FROM_SHELL": "v", "ALSO": "w"}.get) == {"FROM_SHELL": "v", "ALSO": "w"}


def test_crlf_and_bom() -> None:
    assert parse_dotenv("\ufeffA=1\r\nB='2'\r\n", ".env") == {"A": "1", "B": "2"}


def test_raw_format_keeps_values_as_written() -> None:
    text = "# comment\nA=\"quoted\" # not stripped\nB=$HOME ${X:?no}\nC='x'\n\nD\n"
    assert parse_raw_env(text, "raw.env", {"D": "d"}.get) == {
        "A": "\"quoted\" # not stripped", "B": "$HOME ${X:?no}", "C": "'x'", "D": "d"}


def test_read_env_file(tmp_path: Path) -> None:
    path = tmp_path / "app.env"
    path.write_text("A=1\nB=\"$A$A\"\n")
    assert read_env_file(str(path)) == {"A": "1", "B": "11"}
    assert read_env_file(str(path), raw=True) == {"A": "1", "B": '"$A$A"'}
    assert read_env_file(str(tmp_path / "missing.env"), required=False) == {}


@pytest.mark.parametrize(("text", "prefix"), [
    ("A=1\nthis is not an assignment\n", ".env:2: invalid line"),
    ("1A=x\n", ".env:1: invalid line"),
    ("A B=x\n", ".env:1: invalid line"),
    ("A=1\nB=\"never closed\nC=3\n", ".env:2: B: unterminated \"-quoted value"),
    ("A='never closed\n", ".env:1: A: unterminated '-quoted value"),
    ("A=\"x\" trailing\n", '.env:1: A: unexpected "trailing" after the closing quote'),
    ("A=\"x\ny\" tail\n", '.env:2: A: unexpected "tail"'),
    ("\n\nA=${B\n", '.env:3: A: invalid interpolation format in "${B"'),
    ("A=\"${B/x/y}\"\n", ".env:1: A: invalid interpolation format"),
    ("A=x\nB=${C:?C is needed}\n", ".env:2: B: required variable C is missing a value: "
                                   "C is needed"),
])
def test_errors_name_file_and_line(text: str, prefix: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_dotenv(text, ".env")
    assert str(caught.value).startswith(prefix), str(caught.value)


def test_missing_and_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"^env file /nope/x\.env not found$"):
        read_env_file("/nope/x.env")
    origin = Problem("env_file", "compose.yaml", 7, "services.web.env_file[0]")
    with pytest.raises(ConfigError) as caught:
        read_env_file(str(tmp_path / "gone.env"), display="gone.env", origin=origin)
    assert str(caught.value) == ("compose.yaml:7: services.web.env_file[0]: env file gone.env "
                                 "not found (env_file)")
    with pytest.raises(ConfigError, match="is a directory"):
        read_env_file(str(tmp_path))
    (tmp_path / "latin1.env").write_bytes(b"A=\xe9\n")
    with pytest.raises(ConfigError, match=r"latin1\.env: env file is not valid UTF-8"):
        read_env_file(str(tmp_path / "latin1.env"), display="latin1.env")
