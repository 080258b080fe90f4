"""Registry auth without a network: challenge parsing, tokens, Docker's config.json and
credential helpers (a real helper script on PATH), and reference -> registry URL mapping."""

from __future__ import annotations

import base64
import json
import os
import stat
from pathlib import Path

import anyio
import pytest

from engine.errors import Error, InvalidArgument, NotFound, Unavailable
from engine.pull import parse_target
from engine.registry import RegistryClient, Repository, first_error, is_plain_http
from engine.registryauth import (
    Challenge,
    Credentials,
    CredentialStore,
    Token,
    TokenCache,
    default_config_dir,
    parse_challenges,
    pick_challenge,
    token_from_response,
)

# --- challenges -----------------------------------------------------------------------------


def test_bearer_challenge_with_commas_in_the_scope() -> None:
    header = ('Bearer realm="https://auth.docker.io/token",service="registry.docker.io",'
              'scope="repository:library/busybox:pull,push"')
    [c] = parse_challenges(header)
    assert c.scheme == "bearer"
    assert c.realm == "https://auth.docker.io/token"
    assert c.service == "registry.docker.io"
    assert c.scope == "repository:library/busybox:pull,push"


def test_several_challenges_and_odd_spelling() -> None:
    header = ('BEARER Realm = "https://a.example/t", error="invalid_token", '
              'Basic realm="say \\"hi\\"", charset=UTF-8')
    challenges = parse_challenges(header)
    assert [c.scheme for c in challenges] == ["bearer", "basic"]
    assert challenges[0].params == {"realm": "https://a.example/t", "error": "invalid_token"}
    assert challenges[1].params == {"realm": 'say "hi"', "charset": "UTF-8"}
    assert pick_challenge(challenges).scheme == "bearer"
    assert pick_challenge(parse_challenges('Basic realm="r"')).scheme == "basic"
    assert pick_challenge(parse_challenges("Negotiate")) is None
    assert parse_challenges("") == []


# --- tokens ---------------------------------------------------------------------------------


def test_token_answers_in_both_spellings_and_expiry() -> None:
    t = token_from_response({"token": "abc", "expires_in": 300}, now=1000.0)
    assert t.value == "abc" and 1000 + 280 <= t.expires_at <= 1000 + 300
    t = token_from_response({"access_token": "xyz"}, now=0.0)
    assert t.value == "xyz" and 0 < t.expires_at <= 60
    with pytest.raises(InvalidArgument):
        token_from_response({"expires_in": 10})


def test_token_cache_forgets_expired_tokens() -> None:
    cache = TokenCache()
    cache.put("r", "s", "repository:a:pull", Token("live", float("inf")))
    cache.put("r", "s", "repository:b:pull", Token("dead", 0.0))
    assert cache.get("r", "s", "repository:a:pull").value == "live"
    assert cache.get("r", "s", "repository:b:pull") is None
    assert cache.get("r", "other", "repository:a:pull") is None


# --- config.json ----------------------------------------------------------------------------


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def test_default_config_dir() -> None:
    assert default_config_dir({"DOCKER_CONFIG": "/x/y", "HOME": "/h"}) == Path("/x/y")
    assert default_config_dir({"HOME": "/h"}) == Path("/h/.docker")


def test_auths_in_docker_config(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"auths": {
        "https://index.docker.io/v1/": {"auth": _b64("hubuser:hubpass")},
        "https://reg.example.com": {"auth": _b64("me:pa:ss")},
        "other.example:5000": {"identitytoken": "refresh-me"},
        "plain.example": {"username": "u", "password": "p"},
        "empty.example": {},
    }}))
    store = CredentialStore(tmp_path)
    assert store.get("docker.io") == Credentials("hubuser", "hubpass")
    assert store.get("index.docker.io") == Credentials("hubuser", "hubpass")
    assert store.get("reg.example.com") == Credentials("me", "pa:ss")
    assert store.get("other.example:5000") == Credentials(identity_token="refresh-me")
    assert store.get("plain.example") == Credentials("u", "p")
    assert store.get("empty.example") is None
    assert store.get("unknown.example") is None
    assert Credentials("me", "pa:ss").basic_header() == "Basic " + _b64("me:pa:ss")


def test_missing_and_broken_config(tmp_path: Path) -> None:
    assert CredentialStore(tmp_path / "none").get("docker.io") is None
    (tmp_path / "config.json").write_text('{"auths": {\n  "x": ,\n}}')
    with pytest.raises(InvalidArgument) as e:
        CredentialStore(tmp_path).get("x")
    assert str(e.value).startswith(f"{tmp_path / 'config.json'}:2: not valid JSON")


def test_login_store_round_trip_keeps_other_settings(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"psFormat": "table {{.ID}}"}))
    store = CredentialStore(tmp_path)
    store.store("docker.io", Credentials("alice", "pw"))
    store.store("127.0.0.1:5000", Credentials("bob", "pw2"))
    data = json.loads((tmp_path / "config.json").read_text())
    assert data["psFormat"] == "table {{.ID}}"
    assert data["auths"]["https://index.docker.io/v1/"] == {"auth": _b64("alice:pw")}
    assert stat.S_IMODE(os.stat(tmp_path / "config.json").st_mode) == 0o600
    assert store.get("docker.io") == Credentials("alice", "pw")
    assert store.erase("docker.io") is True
    assert store.erase("docker.io") is False
    assert store.get("docker.io") is None
    assert store.get("127.0.0.1:5000") == Credentials("bob", "pw2")


HELPER = """#!/bin/sh
# A docker-credential helper speaking the protocol: get/store/erase on stdin.
input=$(cat)
case "$1" in
get)
    case "$input" in
    reg.example.com) echo '{"ServerURL":"reg.example.com","Username":"helped","Secret":"s1"}';;
    tok.example.com) echo '{"ServerURL":"tok.example.com","Username":"<token>","Secret":"t1"}';;
    *) echo "credentials not found in native keychain"; exit 1;;
    esac;;
store) printf '%s' "$input" > "$HELPER_LOG";;
erase) printf 'erase %s' "$input" > "$HELPER_LOG";;
*) exit 2;;
esac
"""


@pytest.fixture
def helper(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    bindir = tmp_path / "bin"
    bindir.mkdir()
    script = bindir / "docker-credential-fake"
    script.write_text(HELPER)
    script.chmod(0o755)
    log = tmp_path / "helper.log"
    monkeypatch.setenv("PATH", f"{bindir}:{os.environ['PATH']}")
    monkeypatch.setenv("HELPER_LOG", str(log))
    return log


def test_credential_helpers(tmp_path: Path, helper: Path) -> None:
    conf = tmp_path / "conf"
    conf.mkdir()
    (conf / "config.json").write_text(json.dumps({
        "credHelpers": {"reg.example.com": "fake", "tok.example.com": "fake",
                        "gone.example.com": "fake", "broken.example.com": "missing"},
        "auths": {"gone.example.com": {"auth": _b64("fallback:pw")}},
    }))
    store = CredentialStore(conf)
    assert store.get("reg.example.com") == Credentials("helped", "s1")
    assert store.get("tok.example.com") == Credentials(identity_token="t1")
    # "not found" from the helper falls back to auths, then to anonymous.
    assert store.get("gone.example.com") == Credentials("fallback", "pw")
    with pytest.raises(Unavailable) as e:
        store.get("broken.example.com")
    assert "docker-credential-missing is not installed" in str(e.value)


def test_creds_store_receives_logins(tmp_path: Path, helper: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"credsStore": "fake"}))
    store = CredentialStore(tmp_path)
    store.store("docker.io", Credentials("alice", "pw"))
    assert json.loads(helper.read_text()) == {
        "ServerURL": "https://index.docker.io/v1/", "Username": "alice", "Secret": "pw"}
    data = json.loads((tmp_path / "config.json").read_text())
    assert data["auths"] == {"https://index.docker.io/v1/": {}}  # no secret in the file
    assert store.erase("docker.io") is True
    assert helper.read_text() == "erase https://index.docker.io/v1/"


# --- names and URLs -------------------------------------------------------------------------


def _url(registry: str, path: str, insecure: tuple[str, ...] = ()) -> str:
    async def main() -> str:
        async with RegistryClient(insecure_registries=insecure) as client:
            return client.base_url(Repository.of(registry, path))

    return anyio.run(main)


def test_docker_hub_names_map_to_its_endpoint() -> None:
    t = parse_target("wordpress")
    assert (t.repository, t.reference, t.canonical, t.familiar) == (
        Repository("docker.io", "library/wordpress"), "latest",
        "docker.io/library/wordpress:latest", "wordpress:latest")
    assert _url("docker.io", "busybox") == "https://registry-1.docker.io/v2/library/busybox"
    assert _url("index.docker.io", "me/app") == "https://registry-1.docker.io/v2/me/app"
    t = parse_target("ghcr.io/o/p@sha256:" + "a" * 64)
    assert t.reference == "sha256:" + "a" * 64 and t.repository.endpoint == "ghcr.io"


def test_plain_http_only_for_loopback_and_named_insecure_registries() -> None:
    assert _url("127.0.0.1:5000", "x") == "http://127.0.0.1:5000/v2/x"
    assert _url("localhost:5000", "a/b") == "http://localhost:5000/v2/a/b"
    assert is_plain_http("[::1]:5000") and is_plain_http("localhost")
    assert _url("reg.example.com", "x") == "https://reg.example.com/v2/x"
    assert _url("reg.local:5000", "x", ("reg.local:5000",)) == "http://reg.local:5000/v2/x"
    assert is_plain_http("reg.local:5000", ["reg.local"])
    assert not is_plain_http("reg.local:5000", ["reg.local:6000"])
    assert is_plain_http("10.1.2.3:5000", ["10.0.0.0/8"])
    assert not is_plain_http("192.168.1.1:5000", ["10.0.0.0/8", "bogus/net"])


def test_first_error_unwraps_task_groups() -> None:
    async def fail() -> None:
        raise NotFound("the one message")

    async def main() -> None:
        with first_error():
            async with anyio.create_task_group() as tg:
                tg.start_soon(fail)
                tg.start_soon(anyio.sleep, 5)

    with pytest.raises(Error) as e:
        anyio.run(main)
    assert str(e.value) == "the one message"
    assert isinstance(Challenge("basic").params, dict)
