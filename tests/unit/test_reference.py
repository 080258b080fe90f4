"""Image references normalise exactly as Docker's do."""

from __future__ import annotations

import pytest

from engine.errors import InvalidArgument
from engine.reference import is_id_prefix, parse

DIGEST = "sha256:" + "a" * 64


@pytest.mark.parametrize("text, full, familiar", [
    ("mysql:5.7", "docker.io/library/mysql:5.7", "mysql:5.7"),
    ("mysql", "docker.io/library/mysql:latest", "mysql:latest"),
    ("someone/app", "docker.io/someone/app:latest", "someone/app:latest"),
    ("docker.io/library/nginx:1", "docker.io/library/nginx:1", "nginx:1"),
    ("index.docker.io/library/nginx", "docker.io/library/nginx:latest", "nginx:latest"),
    ("docker.io/nginx", "docker.io/library/nginx:latest", "nginx:latest"),
    ("localhost:5000/x", "localhost:5000/x:latest", "localhost:5000/x:latest"),
    ("localhost/x:1", "localhost/x:1", "localhost/x:1"),
    ("ghcr.io/a/b@" + DIGEST, "ghcr.io/a/b@" + DIGEST, "ghcr.io/a/b@" + DIGEST),
    ("ghcr.io/a/b:v1@" + DIGEST, "ghcr.io/a/b:v1@" + DIGEST, "ghcr.io/a/b:v1@" + DIGEST),
    ("127.0.0.1:5000/a/b-c_d.e__f:T.1-x", "127.0.0.1:5000/a/b-c_d.e__f:T.1-x",
     "127.0.0.1:5000/a/b-c_d.e__f:T.1-x"),
    ("[::1]:5000/img", "[::1]:5000/img:latest", "[::1]:5000/img:latest"),
    ("library/busybox", "docker.io/library/busybox:latest", "busybox:latest"),
    ("docker.io/library/a/b", "docker.io/library/a/b:latest", "library/a/b:latest"),
])
def test_normalisation(text: str, full: str, familiar: str) -> None:
    ref = parse(text)
    assert str(ref) == full
    assert ref.familiar() == familiar
    assert parse(str(ref)) == ref


def test_parts_and_no_default_tag() -> None:
    ref = parse("localhost:5000/team/app", default_tag=False)
    assert (ref.domain, ref.path, ref.tag, ref.digest) == ("localhost:5000", "team/app", None,
                                                            None)
    assert ref.name == "localhost:5000/team/app"
    assert ref.familiar_name() == "localhost:5000/team/app"
    assert parse("busybox").familiar_name() == "busybox"
    assert str(ref.with_tag("1")) == "localhost:5000/team/app:1"


@pytest.mark.parametrize("text, message", [
    ("", "empty"),
    ("Busybox", "must be lowercase"),
    ("docker.io/Library/x", "must be lowercase"),
    ("a" * 64, "64-byte hexadecimal"),
    ("busybox:-bad", "tag"),
    ("busybox:" + "t" * 129, "tag"),
    ("busybox@sha256:1234", "digest"),
    ("bad//name", "repository names"),
    ("bad name", "whitespace"),
    ("x/" + "a" * 260, "longer than 255"),
    ("-leading", "repository names"),
    ("exa_mple.com:5000/x", "registry host"),
])
def test_invalid_references_say_why(text: str, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        parse(text)


def test_id_prefixes() -> None:
    assert is_id_prefix("abc123") and is_id_prefix("sha256:" + "f" * 64)
    assert not is_id_prefix("busybox") and not is_id_prefix("") and not is_id_prefix("a" * 65)
