"""Registry authentication: challenges, bearer tokens, and Docker's credential store.

Contracts:
- `parse_challenges(header)` reads a `WWW-Authenticate` value into `Challenge`s (RFC 7235
  auth-params; quoted strings may hold commas, as Bearer scopes do).
- `Credentials` come from a Docker `config.json` (`$DOCKER_CONFIG/config.json`, else
  `~/.docker/config.json`; the caller passes the directory): per-registry `credHelpers`, then a
  global `credsStore`, then base64 `auths[...].auth` (or `username`/`password`,
  `identitytoken`). Helpers run as `docker-credential-<name> get|store|erase` with the server
  address on stdin, as Docker's credential helper protocol says.
- `CredentialStore.store/erase` are what `shipyard login/logout` use; they write the same
  format, so Docker and Shipyard share logins.
- `TokenCache` remembers bearer tokens per (realm, service, scope) until shortly before they
  expire. `Authenticator` runs the token flow for a registry client over its HTTP client:
  GET the realm with service and scope (Basic credentials if any), or the OAuth2
  refresh-token POST for identity tokens; `token` or `access_token` in the answer.
"""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import anyio

from engine.errors import Error, InvalidArgument, Unavailable
from engine.registryerrors import (
    RegistryError,
    Unauthorized,
    detail,
    status_error,
    transport_error,
)

if TYPE_CHECKING:
    import httpx

    from engine.registry import Repository

# Docker Hub's credentials are filed under this historical key.
DOCKER_HUB_AUTH_KEY = "https://index.docker.io/v1/"
_HUB_NAMES = {"docker.io", "index.docker.io", "registry-1.docker.io", "registry.hub.docker.com"}

# Tokens without `expires_in` last 60 s (the token spec's default); refresh a little early.
DEFAULT_TOKEN_LIFETIME_S = 60
EXPIRY_MARGIN_S = 10


# ---------------------------------------------------------------------------------------------
# WWW-Authenticate


@dataclass(frozen=True, slots=True)
class Challenge:
    """One auth challenge: `scheme` lower-cased ("bearer", "basic"), params by lower-case name."""

    scheme: str
    params: Mapping[str, str] = field(default_factory=dict)

    @property
    def realm(self) -> str | None:
        return self.params.get("realm")

    @property
    def service(self) -> str | None:
        return self.params.get("service")

    @property
    def scope(self) -> str | None:
        return self.params.get("scope")


_TOKEN = r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_PARAM = re.compile(
    rf'\s*({_TOKEN})\s*=\s*(?:"((?:[^"\\]|\\.)*)"|({_TOKEN}))\s*(,|$)', re.DOTALL)
_SCHEME = re.compile(rf"\s*({_TOKEN})(?:\s+|$)")


def parse_challenges(header: str) -> list[Challenge]:
    """Parses a `WWW-Authenticate` header value; unparseable tails end the list."""
    challenges: list[Challenge] = []
    pos = 0
    text = header.strip()
    while pos < len(text):
        while pos < len(text) and text[pos] in ", ":
            pos += 1
        m = _SCHEME.match(text, pos)
        if not m:
            break
        scheme = m.group(1).lower()
        pos = m.end()
        params: dict[str, str] = {}
        while pos < len(text):
            p = _PARAM.match(text, pos)
            if not p:
                break
            # A bare token followed by another token is the next challenge's scheme.
            name, quoted, bare = p.group(1), p.group(2), p.group(3)
            value = re.sub(r"\\(.)", r"\1", quoted) if quoted is not None else bare
            params[name.lower()] = value
            pos = p.end()
        challenges.append(Challenge(scheme, params))
    return challenges


def pick_challenge(challenges: list[Challenge]) -> Challenge | None:
    """Bearer before Basic, as Docker prefers; None if neither is offered."""
    for scheme in ("bearer", "basic"):
        for c in challenges:
            if c.scheme == scheme:
                return c
    return None


def repository_scope(repository: str, actions: str = "pull") -> str:
    """The token scope for a repository, e.g. `repository:library/busybox:pull`."""
    return f"repository:{repository}:{actions}"


# ---------------------------------------------------------------------------------------------
# Credentials


@dataclass(frozen=True, slots=True)
class Credentials:
    """A username and secret, or an identity (refresh) token for OAuth2 token servers."""

    username: str = ""
    password: str = field(default="", repr=False)
    identity_token: str = field(default="", repr=False)

    def basic_header(self) -> str:
        raw = f"{self.username}:{self.password}".encode()
        return "Basic " + base64.b64encode(raw).decode()


def default_config_dir(environ: Mapping[str, str]) -> Path:
    """Docker's rule: `$DOCKER_CONFIG`, else `$HOME/.docker`."""
    if environ.get("DOCKER_CONFIG"):
        return Path(environ["DOCKER_CONFIG"])
    home = environ.get("HOME") or os.path.expanduser("~")
    return Path(home) / ".docker"


def auth_key(registry: str) -> str:
    """The key a registry's credentials are filed under (Docker Hub's is a URL)."""
    host = normalize_server(registry)
    return DOCKER_HUB_AUTH_KEY if host in _HUB_NAMES else host


def normalize_server(server: str) -> str:
    """`https://reg.example.com/v1/` -> `reg.example.com`; Hub aliases stay as given."""
    s = server.strip()
    s = re.sub(r"^[a-zA-Z][a-zA-Z0-9+.-]*://", "", s)
    return s.split("/", 1)[0].lower()


class CredentialStore:
    """Reads and writes logins in a Docker-format `config.json` under `config_dir`."""

    def __init__(self, config_dir: str | os.PathLike[str]) -> None:
        self.config_dir = Path(config_dir)

    @property
    def path(self) -> Path:
        return self.config_dir / "config.json"

    def _load(self) -> dict:
        try:
            text = self.path.read_text()
        except FileNotFoundError:
            return {}
        try:
            data = json.loads(text) if text.strip() else {}
        except json.JSONDecodeError as e:
            raise InvalidArgument(
                f"{self.path}:{e.lineno}: not valid JSON ({e.msg}); fix or remove the file"
            ) from None
        if not isinstance(data, dict):
            raise InvalidArgument(f"{self.path}: expected a JSON object at the top level")
        return data

    def _helper_for(self, data: dict, registry: str) -> str | None:
        helpers = data.get("credHelpers") or {}
        host = normalize_server(registry)
        for key, helper in helpers.items():
            if normalize_server(key) == host or (
                    host in _HUB_NAMES and normalize_server(key) in _HUB_NAMES):
                return helper
        return data.get("credsStore") or None

    def get(self, registry: str) -> Credentials | None:
        """Credentials for `registry` (a host[:port] or Docker Hub name), or None."""
        data = self._load()
        helper = self._helper_for(data, registry)
        if helper:
            found = _helper_get(helper, auth_key(registry))
            if found is not None:
                return found
        return _from_auths(data.get("auths") or {}, registry, self.path)

    def store(self, registry: str, creds: Credentials) -> None:
        """Saves a login: through the configured helper if there is one, else in `auths`."""
        data = self._load()
        key = auth_key(registry)
        helper = self._helper_for(data, registry)
        if helper:
            secret = creds.identity_token or creds.password
            user = "<token>" if creds.identity_token else creds.username
            _run_helper(helper, "store",
                        json.dumps({"ServerURL": key, "Username": user, "Secret": secret}))
            data.setdefault("auths", {})[key] = {}
        else:
            entry: dict[str, str] = {}
            if creds.identity_token:
                entry = {"identitytoken": creds.identity_token}
            else:
                raw = f"{creds.username}:{creds.password}".encode()
                entry = {"auth": base64.b64encode(raw).decode()}
            data.setdefault("auths", {})[key] = entry
        self._save(data)

    def erase(self, registry: str) -> bool:
        """Removes a login; True if there was one."""
        data = self._load()
        key = auth_key(registry)
        helper = self._helper_for(data, registry)
        found = False
        if helper:
            try:
                _run_helper(helper, "erase", key)
                found = True
            except Error:
                pass
        auths = data.get("auths") or {}
        for k in list(auths):
            if k == key or normalize_server(k) == normalize_server(key):
                del auths[k]
                found = True
        if found:
            self._save(data)
        return found

    def _save(self, data: dict) -> None:
        self.config_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        # Atomic replace, readable only by the owner: the file holds secrets.
        fd, tmp = tempfile.mkstemp(prefix=".config.json.", dir=self.config_dir)
        try:
            with os.fdopen(fd, "w") as f:
                json.dump(data, f, indent="\t")
                f.write("\n")
            os.chmod(tmp, 0o600)
            os.replace(tmp, self.path)
        except BaseException:
            os.unlink(tmp)
            raise


def _from_auths(auths: dict, registry: str, path: Path) -> Credentials | None:
    want = auth_key(registry)
    host = normalize_server(want)
    entry = auths.get(want)
    if entry is None:
        for key, value in auths.items():
            other = normalize_server(key)
            if other == host or (host in _HUB_NAMES and other in _HUB_NAMES):
                entry = value
                break
    if not isinstance(entry, dict):
        return None
    if entry.get("identitytoken"):
        return Credentials(identity_token=entry["identitytoken"])
    if entry.get("auth"):
        try:
            user, _, password = base64.b64decode(entry["auth"]).decode().partition(":")
        except ValueError:
            raise InvalidArgument(
                f'{path}: auths["{want}"].auth is not base64 of "user:password"') from None
        return Credentials(user, password)
    if entry.get("username"):
        return Credentials(entry["username"], entry.get("password", ""))
    return None


def _run_helper(helper: str, action: str, stdin: str) -> str:
    program = f"docker-credential-{helper}"
    try:
        done = subprocess.run([program, action], input=stdin, capture_output=True, text=True,
                              timeout=60)
    except FileNotFoundError:
        raise Unavailable(
            f"credential helper {program} is not installed (named in Docker's config.json)"
        ) from None
    except subprocess.TimeoutExpired:
        raise Unavailable(f"credential helper {program} did not answer within 60 s") from None
    if done.returncode != 0:
        message = (done.stdout.strip() or done.stderr.strip() or f"exit {done.returncode}")
        raise _HelperFailed(f"credential helper {program} {action} failed: {message}")
    return done.stdout


class _HelperFailed(Error):
    pass


def _helper_get(helper: str, server: str) -> Credentials | None:
    try:
        out = _run_helper(helper, "get", server)
    except _HelperFailed as e:
        # Helpers say "credentials not found" with a non-zero exit: that means anonymous.
        if "not found" in str(e).lower():
            return None
        raise
    try:
        data = json.loads(out)
    except json.JSONDecodeError:
        raise Unavailable(
            f"credential helper docker-credential-{helper} printed something that is not JSON"
        ) from None
    user, secret = data.get("Username", ""), data.get("Secret", "")
    if not secret:
        return None
    if user == "<token>":
        return Credentials(identity_token=secret)
    return Credentials(user, secret)


# ---------------------------------------------------------------------------------------------
# Tokens


@dataclass(frozen=True, slots=True)
class Token:
    """A registry bearer token and when it expires."""

    value: str
    expires_at: float  # time.monotonic() seconds

    def valid(self, now: float | None = None) -> bool:
        return (time.monotonic() if now is None else now) < self.expires_at


def token_from_response(body: Mapping[str, object], now: float | None = None) -> Token:
    """A token endpoint's JSON answer -> Token (`token` or `access_token`, `expires_in`)."""
    value = body.get("token") or body.get("access_token")
    if not isinstance(value, str) or not value:
        raise InvalidArgument("the token service answered without a token")
    lifetime = body.get("expires_in")
    if not isinstance(lifetime, int | float) or lifetime <= 0:
        lifetime = DEFAULT_TOKEN_LIFETIME_S
    start = time.monotonic() if now is None else now
    return Token(value, start + max(1.0, float(lifetime) - EXPIRY_MARGIN_S))


class TokenCache:
    """Bearer tokens by (realm, service, scope); expired ones are dropped on read."""

    def __init__(self) -> None:
        self._tokens: dict[tuple[str, str, str], Token] = {}

    def get(self, realm: str, service: str, scope: str) -> Token | None:
        key = (realm, service, scope)
        token = self._tokens.get(key)
        if token is not None and not token.valid():
            del self._tokens[key]
            return None
        return token

    def put(self, realm: str, service: str, scope: str, token: Token) -> None:
        self._tokens[(realm, service, scope)] = token

    def drop(self, realm: str, service: str, scope: str) -> None:
        self._tokens.pop((realm, service, scope), None)


# ---------------------------------------------------------------------------------------------
# The client side of the auth flow


class Authenticator:
    """Auth state of one registry client: the challenge each registry host answered with,
    bearer tokens per scope, and credentials per registry (looked up once). Requests to a host
    that challenged before carry an Authorization header up front; `learn()` records a new
    challenge from a 401 so the caller can retry once."""

    def __init__(self, http: httpx.AsyncClient, credentials: CredentialStore | None) -> None:
        self._http = http
        self.credentials = credentials
        self._tokens = TokenCache()
        self._challenges: dict[str, Challenge] = {}
        self._creds: dict[str, Credentials | None] = {}
        self._locks: dict[tuple[str, str], anyio.Lock] = {}

    def learn(self, repo: Repository, www_authenticate: list[str], scope: str) -> bool:
        """Records the challenge of a 401; True if a retry with credentials makes sense."""
        challenge = pick_challenge(parse_challenges(", ".join(www_authenticate)))
        if challenge is None:
            return False
        self._challenges[repo.endpoint] = challenge
        if challenge.realm:
            self._tokens.drop(challenge.realm, challenge.service or "", scope)
        return True

    async def header(self, repo: Repository, scope: str) -> str | None:
        """The Authorization value for a request needing `scope`, or None (no challenge yet,
        or Basic without credentials)."""
        challenge = self._challenges.get(repo.endpoint)
        if challenge is None:
            return None
        creds = self.lookup(repo.registry)
        if challenge.scheme == "basic":
            return creds.basic_header() if creds else None
        realm, service = challenge.realm or "", challenge.service or ""
        # One token fetch per scope even when many layers ask at once.
        async with self._locks.setdefault((repo.endpoint, scope), anyio.Lock()):
            token = self._tokens.get(realm, service, scope)
            if token is None:
                token = await self._fetch_token(repo, challenge, scope, creds)
                self._tokens.put(realm, service, scope, token)
        return f"Bearer {token.value}"

    def who(self, repo: Repository, sent: str | None) -> str | None:
        """For messages: None if nothing was sent, "" for anonymous, else the user name."""
        if sent is None:
            return None
        creds = self.lookup(repo.registry)
        return (creds.username or "<token>") if creds else ""

    def lookup(self, registry: str) -> Credentials | None:
        if registry not in self._creds:
            self._creds[registry] = self.credentials.get(registry) if self.credentials else None
        return self._creds[registry]

    async def _fetch_token(self, repo: Repository, challenge: Challenge, scope: str,
                           creds: Credentials | None) -> Token:
        import httpx

        if not challenge.realm:
            raise RegistryError(f"{repo.registry} asked for a bearer token without a realm")
        service = challenge.service
        scopes = scope.split(" ")
        try:
            if creds is not None and creds.identity_token:
                # OAuth2 refresh-token grant (distribution's oauth spec), as Docker does.
                form = {"grant_type": "refresh_token", "refresh_token": creds.identity_token,
                        "client_id": "shipyard", "scope": " ".join(scopes)}
                if service:
                    form["service"] = service
                resp = await self._http.post(challenge.realm, data=form)
            else:
                params: list[tuple[str, str]] = [("scope", s) for s in scopes]
                if service:
                    params.insert(0, ("service", service))
                headers = {"Authorization": creds.basic_header()} if creds else {}
                resp = await self._http.get(challenge.realm, params=params, headers=headers)
        except httpx.TransportError as e:
            raise transport_error(repo, e, what=f"the token service of {repo.registry} "
                                  f"({challenge.realm})") from None
        if resp.status_code in (401, 403):
            who = "your credentials" if creds else "anonymous access"
            raise Unauthorized(
                f"the token service of {repo.registry} refused {who} to {repo.path} "
                f"({resp.status_code}{detail(resp)}); run `shipyard login {repo.registry}` "
                "if it needs a login")
        if resp.status_code != 200:
            raise status_error(repo, resp, f"a token for {repo.path}",
                               creds.username if creds else None)
        try:
            return token_from_response(resp.json())
        except ValueError:
            raise RegistryError(f"the token service of {repo.registry} answered with something "
                                "that is not a token") from None

    async def check_login(self, repo: Repository, root_url: str, creds: Credentials) -> None:
        """Checks `creds` the way `docker login` does: the API root's challenge, then Basic
        auth or a token request without scope. Raises Unauthorized when they are refused."""
        import httpx

        try:
            resp = await self._http.get(root_url)
            if resp.status_code == 200:
                return  # the registry wants no login; Docker saves the credentials anyway
            challenge = pick_challenge(parse_challenges(
                ", ".join(resp.headers.get_list("WWW-Authenticate"))))
            if resp.status_code != 401 or challenge is None:
                raise status_error(repo, resp, root_url, None)
            basic = {"Authorization": creds.basic_header()}
            if challenge.scheme == "basic":
                resp = await self._http.get(root_url, headers=basic)
            else:
                params = {"account": creds.username}
                if challenge.service:
                    params["service"] = challenge.service
                resp = await self._http.get(challenge.realm or "", params=params, headers=basic)
        except httpx.TransportError as e:
            raise transport_error(repo, e) from None
        if resp.status_code in (401, 403):
            raise Unauthorized(f"login to {repo.registry} failed: username or password refused "
                               f"({resp.status_code})")
        if resp.status_code != 200:
            raise status_error(repo, resp, root_url, creds.username)
