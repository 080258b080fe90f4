"""Registry fixtures' building blocks, all on 127.0.0.1.

- `LocalRegistry`: Debian's `docker-registry` (distribution 2.8) on a free port with
  filesystem storage in a temporary directory; `stop()` ends the process.
- `OciLayout`: writes an OCI image layout (blobs, manifests, indexes, index.json) that
  `skopeo copy oci:DIR:TAG docker://...` seeds a registry from.
- `TokenService`: a stand-in for a registry token server. Users (with passwords) get grants
  per repository; tokens are HMAC-signed `header.claims.signature` strings with an `access`
  list, as the distribution token spec's JWTs carry.
- `AuthProxy`: sits in front of a `LocalRegistry` and demands those tokens (401 with a Bearer
  challenge naming the needed scope), then forwards the request unchanged.
- `StubRegistry`: serves fixed answers per path, including lies (wrong bytes, short bodies).
Servers run in daemon threads; `close()` shuts them down.
"""

from __future__ import annotations

import base64
import contextlib
import gzip
import hashlib
import hmac
import http.client
import http.server
import io
import json
import os
import shutil
import socket
import ssl
import subprocess
import tarfile
import threading
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

DOCKER_REGISTRY = shutil.which("docker-registry") or "/usr/bin/docker-registry"
SKOPEO = shutil.which("skopeo") or "/usr/bin/skopeo"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"


def available() -> bool:
    return os.access(DOCKER_REGISTRY, os.X_OK) and os.access(SKOPEO, os.X_OK)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except urllib.error.HTTPError:
            return  # it answered
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


# ---------------------------------------------------------------------------------------------
# docker-registry


class LocalRegistry:
    """A real distribution registry; `address` is `127.0.0.1:PORT`."""

    def __init__(self, workdir: Path, tokens: TokenService | None = None) -> None:
        """With `tokens` (whose signer must be an `RS256Signer`), the registry itself demands
        tokens from that service: distribution's own token auth, no proxy in between."""
        self.workdir = workdir
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        storage = workdir / "storage"
        storage.mkdir(parents=True, exist_ok=True)
        config = workdir / "config.yml"
        settings: dict = {
            "version": 0.1,
            "log": {"level": "error", "accesslog": {"disabled": True}},
            "storage": {"filesystem": {"rootdirectory": str(storage)},
                        "delete": {"enabled": True}},
            "http": {"addr": self.address},
        }
        if tokens is not None:
            assert isinstance(tokens.signer, RS256Signer)
            settings["auth"] = {"token": {
                "realm": tokens.realm, "service": tokens.service, "issuer": tokens.issuer,
                "rootcertbundle": str(tokens.signer.cert)}}
        # JSON is YAML: no YAML writer needed.
        config.write_text(json.dumps(settings))
        self._log = open(workdir / "registry.log", "wb")  # noqa: SIM115 (lives with proc)
        self.proc = subprocess.Popen([DOCKER_REGISTRY, "serve", str(config)],
                                     stdout=self._log, stderr=subprocess.STDOUT)
        try:
            wait_http(f"http://{self.address}/v2/")
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()


def skopeo_copy(src: str, dest: str, *, all_images: bool = False,
                dest_creds: str | None = None) -> None:
    cmd = [SKOPEO, "copy", "--quiet", "--src-tls-verify=false", "--dest-tls-verify=false"]
    if all_images:
        cmd.append("--all")
    if dest_creds:
        cmd += ["--dest-creds", dest_creds]
    subprocess.run([*cmd, src, dest], check=True, capture_output=True, timeout=300)


def skopeo_inspect(ref: str, *, raw: bool = False) -> dict:
    cmd = [SKOPEO, "inspect", "--tls-verify=false"] + (["--raw"] if raw else [])
    out = subprocess.run([*cmd, ref], check=True, capture_output=True, timeout=60).stdout
    return json.loads(out)


# ---------------------------------------------------------------------------------------------
# OCI layouts


@dataclass(frozen=True)
class Desc:
    media_type: str
    digest: str
    size: int
    platform: dict | None = None

    def json(self) -> dict:
        d = {"mediaType": self.media_type, "digest": self.digest, "size": self.size}
        if self.platform:
            d["platform"] = self.platform
        return d


def tar_of(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o644, 0
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


@dataclass
class OciLayout:
    root: Path
    refs: list[tuple[str, Desc]] = field(default_factory=list)

    def __post_init__(self) -> None:
        (self.root / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
        (self.root / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')

    def blob(self, data: bytes, media_type: str) -> Desc:
        digest = hashlib.sha256(data).hexdigest()
        (self.root / "blobs" / "sha256" / digest).write_bytes(data)
        return Desc(media_type, f"sha256:{digest}", len(data))

    def layer(self, tar: bytes, level: int = 6) -> tuple[Desc, str]:
        """A gzip'd layer and its diff id (sha256 of the uncompressed tar)."""
        gz = gzip.compress(tar, compresslevel=level, mtime=0)
        return self.blob(gz, OCI_LAYER_GZIP), "sha256:" + hashlib.sha256(tar).hexdigest()

    def image(self, layers: list[tuple[Desc, str]], *, os_: str = "linux",
              arch: str = "amd64", variant: str = "", cmd: tuple[str, ...] = ("sh",)) -> Desc:
        config = {"architecture": arch, "os": os_,
                  "config": {"Cmd": list(cmd), "Env": ["PATH=/usr/sbin:/usr/bin:/sbin:/bin"]},
                  "rootfs": {"type": "layers", "diff_ids": [d for _, d in layers]}}
        if variant:
            config["variant"] = variant
        cfg = self.blob(json.dumps(config).encode(), OCI_CONFIG)
        manifest = {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": cfg.json(),
                    "layers": [d.json() for d, _ in layers]}
        m = self.blob(json.dumps(manifest).encode(), OCI_MANIFEST)
        plat = {"os": os_, "architecture": arch} | ({"variant": variant} if variant else {})
        return Desc(m.media_type, m.digest, m.size, plat)

    def index(self, manifests: list[Desc]) -> Desc:
        body = {"schemaVersion": 2, "mediaType": OCI_INDEX,
                "manifests": [m.json() for m in manifests]}
        return self.blob(json.dumps(body).encode(), OCI_INDEX)

    def tag(self, desc: Desc, name: str) -> None:
        self.refs.append((name, desc))
        entries = []
        for ref, d in self.refs:
            e = d.json()
            e.pop("platform", None)
            e["annotations"] = {"org.opencontainers.image.ref.name": ref}
            entries.append(e)
        (self.root / "index.json").write_text(json.dumps(
            {"schemaVersion": 2, "manifests": entries}))


# ---------------------------------------------------------------------------------------------
# Threaded HTTP servers


class _Server:
    handler: type[http.server.BaseHTTPRequestHandler]

    def __init__(self, host: str = "127.0.0.1", tls: tuple[Path, Path] | None = None) -> None:
        """`tls`: (certificate, key) PEM files to serve HTTPS instead of HTTP."""
        self.httpd = http.server.ThreadingHTTPServer((host, 0), self.handler)
        if tls is not None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(str(tls[0]), str(tls[1]))
            self.httpd.socket = context.wrap_socket(self.httpd.socket, server_side=True)
        self.httpd.daemon_threads = True
        self.httpd.owner = self  # type: ignore[attr-defined]
        self.port = self.httpd.server_address[1]
        self.address = f"{host}:{self.port}"
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self._thread.join(5)


class _Handler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass

    @property
    def owner(self):
        return self.server.owner  # type: ignore[attr-defined]

    def reply(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None,
              send_length: int | None = None) -> None:
        self.send_response(status)
        hdrs = {"Content-Length": str(len(body) if send_length is None else send_length)}
        hdrs |= headers or {}
        for k, v in hdrs.items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)


# --- token service --------------------------------------------------------------------------


class _TokenHandler(_Handler):
    def do_GET(self) -> None:
        svc: TokenService = self.owner
        url = urllib.parse.urlsplit(self.path)
        query = urllib.parse.parse_qs(url.query)
        user = ""
        auth = self.headers.get("Authorization", "")
        if auth.startswith("Basic "):
            user, _, password = base64.b64decode(auth[6:]).decode().partition(":")
            if svc.users.get(user) != password:
                svc.requests.append(("GET", self.path, {"user": user, "result": "bad"}))
                self.reply(401, b'{"details":"incorrect username or password"}')
                return
        access = []
        for scope in query.get("scope", []):
            for item in scope.split(" "):
                kind, _, rest = item.partition(":")
                name, _, actions = rest.rpartition(":")
                granted = [a for a in actions.split(",") if a in svc.grants.get((user, name), ())]
                access.append({"type": kind, "name": name, "actions": granted})
        svc.requests.append(("GET", self.path, {"user": user}))
        if svc.reject:
            self.reply(401, b'{"details":"access denied"}')
            return
        token = svc.sign({"sub": user, "aud": query.get("service", [""])[0],
                          "exp": int(time.time()) + 300, "access": access})
        key = "access_token" if svc.use_access_token else "token"
        self.reply(200, json.dumps({key: token, "expires_in": 300}).encode(),
                   {"Content-Type": "application/json"})


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class HS256Signer:
    """HMAC-signed JWTs: enough for `AuthProxy`, which checks them itself."""

    def __init__(self) -> None:
        self.key = os.urandom(32)

    def header(self) -> dict:
        return {"alg": "HS256", "typ": "JWT"}

    def signature(self, signing_input: bytes) -> bytes:
        return hmac.new(self.key, signing_input, hashlib.sha256).digest()


def self_signed(workdir: Path, name: str = "shipyard-test") -> tuple[Path, Path]:
    """A throwaway certificate and key (PEM) made with the `openssl` tool."""
    workdir.mkdir(parents=True, exist_ok=True)
    cert, key = workdir / f"{name}.crt", workdir / f"{name}.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", f"/CN={name}", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    return cert, key


class RS256Signer:
    """RSA-signed JWTs with the certificate in `x5c`, as distribution's token auth verifies
    them against its `rootcertbundle`. Keys and signatures come from the `openssl` tool."""

    def __init__(self, workdir: Path) -> None:
        self.cert, self.key = self_signed(workdir, "token-issuer")
        der = subprocess.run(["openssl", "x509", "-in", str(self.cert), "-outform", "DER"],
                             check=True, capture_output=True).stdout
        self._x5c = [base64.b64encode(der).decode()]

    def header(self) -> dict:
        return {"alg": "RS256", "typ": "JWT", "x5c": self._x5c}

    def signature(self, signing_input: bytes) -> bytes:
        return subprocess.run(["openssl", "dgst", "-sha256", "-sign", str(self.key)],
                              input=signing_input, check=True, capture_output=True).stdout


class TokenService(_Server):
    """Issues scoped tokens. `grants[(user, repo)]` lists actions; user "" is anonymous."""

    handler = _TokenHandler

    def __init__(self, users: dict[str, str] | None = None,
                 grants: dict[tuple[str, str], tuple[str, ...]] | None = None,
                 service: str = "test-registry",
                 signer: HS256Signer | RS256Signer | None = None) -> None:
        self.users = users or {}
        self.grants = grants or {}
        self.service = service
        self.issuer = "shipyard-test-issuer"
        self.signer = signer or HS256Signer()
        self.reject = False
        self.use_access_token = False
        super().__init__()

    @property
    def realm(self) -> str:
        return f"http://{self.address}/token"

    def sign(self, claims: dict) -> str:
        now = int(time.time())
        claims = {"iss": self.issuer, "iat": now, "nbf": now - 10,
                  "jti": os.urandom(8).hex()} | claims
        head = _b64url(json.dumps(self.signer.header()).encode())
        body = _b64url(json.dumps(claims).encode())
        sig = self.signer.signature(f"{head}.{body}".encode())
        return f"{head}.{body}.{_b64url(sig)}"

    def verify(self, token: str) -> dict | None:
        """Checks an HS256 token (what AuthProxy needs)."""
        try:
            head, body, sig = token.split(".")
        except ValueError:
            return None
        if not isinstance(self.signer, HS256Signer):
            return None
        want = self.signer.signature(f"{head}.{body}".encode())
        if not hmac.compare_digest(_b64url(want), sig):
            return None
        claims = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
        return claims if claims.get("exp", 0) > time.time() else None


# --- auth proxy -----------------------------------------------------------------------------


class _ProxyHandler(_Handler):
    protocol_version = "HTTP/1.1"

    def _handle(self) -> None:
        proxy: AuthProxy = self.owner
        path = urllib.parse.urlsplit(self.path).path
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        needed = _needed_scope(self.command, path, urllib.parse.urlsplit(self.path).query)
        proxy.requests.append((self.command, self.path,
                               {"authorization": self.headers.get("Authorization", "")}))
        if not self._allowed(proxy, needed):
            scope = " ".join(f"repository:{n}:{a}" for n, a in needed)
            challenge = (f'Bearer realm="{proxy.tokens.realm}",'
                         f'service="{proxy.tokens.service}"')
            if scope:
                challenge += f',scope="{scope}"'
            err = {"errors": [{"code": "UNAUTHORIZED", "message": "authentication required"}]}
            self.reply(401, json.dumps(err).encode(),
                       {"WWW-Authenticate": challenge, "Content-Type": "application/json"})
            return
        conn = http.client.HTTPConnection(proxy.upstream, timeout=60)
        headers = {k: v for k, v in self.headers.items() if k.lower() != "authorization"}
        conn.request(self.command, self.path, body=body, headers=headers)
        resp = conn.getresponse()
        self.send_response(resp.status)
        for k, v in resp.getheaders():
            if k.lower() not in ("transfer-encoding", "connection"):
                self.send_header(k, v)
        data = resp.read() if self.command != "HEAD" else b""
        if resp.getheader("Content-Length") is None:
            self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)
        conn.close()

    def _allowed(self, proxy: AuthProxy, needed: list[tuple[str, str]]) -> bool:
        auth = self.headers.get("Authorization", "")
        if not auth.startswith("Bearer "):
            return False
        claims = proxy.tokens.verify(auth[7:])
        if claims is None or claims.get("aud") != proxy.tokens.service:
            return False
        granted = {(a["name"], act) for a in claims.get("access", []) for act in a["actions"]}
        return all((name, act) in granted for name, act in needed)

    do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = _handle


def _needed_scope(method: str, path: str, query: str) -> list[tuple[str, str]]:
    """What a request needs: pull for reads, push for writes, pull on a mount's source; the
    API root needs any valid token (as distribution's token auth does)."""
    if path == "/v2/":
        return []
    if not path.startswith("/v2/"):
        return [("", "deny")]
    rest = path[4:]
    for marker in ("/manifests/", "/blobs/", "/tags/"):
        if marker in rest:
            name = rest.split(marker, 1)[0]
            break
    else:
        return [("", "deny")]
    action = "pull" if method in ("GET", "HEAD") else "push"
    needed = [(name, action)]
    source = urllib.parse.parse_qs(query).get("from")
    if source:
        needed.append((source[0], "pull"))
    return needed


class AuthProxy(_Server):
    """Token-checking front for `upstream` (host:port of a LocalRegistry)."""

    handler = _ProxyHandler

    def __init__(self, upstream: str, tokens: TokenService) -> None:
        self.upstream = upstream
        self.tokens = tokens
        super().__init__()


# --- stub registry --------------------------------------------------------------------------


@dataclass
class StubAnswer:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    send_length: int | None = None  # a Content-Length larger than body: a truncated reply


class _StubHandler(_Handler):
    def _handle(self) -> None:
        stub: StubRegistry = self.owner
        path = urllib.parse.urlsplit(self.path).path
        stub.requests.append((self.command, self.path, dict(self.headers.items())))
        answer = stub.routes.get(path)
        if isinstance(answer, list):  # a script of answers: each used once, the last for good
            answer = answer.pop(0) if len(answer) > 1 else answer[0]
        if path == "/v2/":
            answer = StubAnswer(200, b"{}")
        if answer is None:
            err = {"errors": [{"code": "NOT_FOUND", "message": "unknown"}]}
            self.reply(404, json.dumps(err).encode(), {"Content-Type": "application/json"})
            return
        self.reply(answer.status, answer.body, answer.headers, answer.send_length)
        if answer.send_length is not None:
            with contextlib.suppress(OSError):
                self.wfile.flush()
                self.connection.shutdown(socket.SHUT_RDWR)
            self.close_connection = True

    do_GET = do_HEAD = _handle


class StubRegistry(_Server):
    """Serves `routes[path]` (an answer, or a list of answers given in turn); anything else
    is 404."""

    handler = _StubHandler

    def __init__(self, host: str = "127.0.0.1", tls: tuple[Path, Path] | None = None) -> None:
        self.routes: dict[str, StubAnswer | list[StubAnswer]] = {}
        super().__init__(host, tls)

    def manifest(self, repo: str, ref: str, body: bytes, media_type: str = OCI_MANIFEST) -> None:
        self.routes[f"/v2/{repo}/manifests/{ref}"] = StubAnswer(
            200, body, {"Content-Type": media_type})

    def blob(self, repo: str, digest: str, body: bytes, send_length: int | None = None) -> None:
        self.routes[f"/v2/{repo}/blobs/{digest}"] = StubAnswer(
            200, body, {"Content-Type": "application/octet-stream"}, send_length)
