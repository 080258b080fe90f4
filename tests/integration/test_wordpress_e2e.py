"""The flagship end to end: WordPress + MariaDB built from Debian packages, as a new user
runs it (README command 1), then installed and used over HTTP, kept across down/up by its
named volumes, and removed without a trace. Slow (builds images from Debian's mirror)."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import xmlrpc.client
from collections.abc import Iterator
from pathlib import Path

import pytest

from engine.layout import Layout
from tests.support import leaks

REPO = Path(__file__).resolve().parents[2]
SHIPYARD = REPO / ".venv" / "bin" / "shipyard"
LOCAL = REPO / "examples" / "wordpress-local" / "compose.yaml"
LINKS = REPO / "examples" / "wordpress-links" / "compose.yaml"
URL = "http://127.0.0.1:8080"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(os.environ.get("SHIPYARD_SKIP_E2E") == "1",
                       reason="SHIPYARD_SKIP_E2E=1 was set"),
]


def _shipyard(env: dict[str, str], *argv: str, timeout: float = 600) -> str:
    result = subprocess.run([str(SHIPYARD), *argv], env=env, capture_output=True, text=True,
                            timeout=timeout)
    assert result.returncode == 0, f"shipyard {' '.join(argv)}: {result.stderr[-3000:]}"
    return result.stdout


def _get(url: str, timeout: float = 60) -> tuple[int, str]:
    """(status, body) once the server answers at all; redirects are followed."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=10) as response:
                return response.status, response.read().decode(errors="replace")
        except urllib.error.HTTPError as error:
            return error.code, error.read().decode(errors="replace")
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def _install(base: str) -> None:
    form = urllib.parse.urlencode({
        "weblog_title": "Shipyard blog", "user_name": "admin",
        "admin_password": "s3cret-Passw0rd!", "admin_password2": "s3cret-Passw0rd!",
        "pw_weak": "1", "admin_email": "admin@example.org", "blog_public": "0",
        "language": "",
    }).encode()
    request = urllib.request.Request(f"{base}/wp-admin/install.php?step=2", data=form)
    with urllib.request.urlopen(request, timeout=120) as response:
        assert "Success!" in response.read().decode(errors="replace")


@pytest.fixture
def env() -> Iterator[dict[str, str]]:
    before = leaks.snapshot()
    root = Path(tempfile.mkdtemp(prefix="shipyard-e2e-", dir="/var/tmp"))
    environ = dict(os.environ, SHIPYARD_ROOT=str(root))
    yield environ
    containers_dir = root / "containers"
    ids = {p.name for p in containers_dir.iterdir()} if containers_dir.is_dir() else set()
    for compose in (LOCAL, LINKS):
        subprocess.run([str(SHIPYARD), "-f", str(compose), "down", "-v", "-t", "1"],
                       env=environ, capture_output=True, timeout=300)
    # The root's run directory (locks, resolver records) outlives `down`, as /run/docker
    # outlives a stack; a temporary root takes it along.
    shutil.rmtree(Layout.at(root).run, ignore_errors=True)
    shutil.rmtree(root, ignore_errors=True)
    leaked = leaks.diff(before, leaks.snapshot())
    # Only what this test's engine root made (other suites may run on the machine).
    ours = {kind: [item for item in items if str(root) in str(item)
                   or any(container_id[:32] in str(item) for container_id in ids)]
            for kind, items in leaked.items()}
    assert {kind: items for kind, items in ours.items() if items} == {}


def test_wordpress_installs_keeps_its_posts_and_leaves_nothing(env: dict[str, str]) -> None:
    # README command 1, as a new user runs it (with this test's own engine root)
    result = subprocess.run([str(REPO / "examples" / "demo")], env=env, capture_output=True,
                            text=True, timeout=1800)
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"WordPress: {URL}/" in result.stdout

    status, body = _get(f"{URL}/")
    assert status == 200 and "install" in body.lower()  # the installer, via the redirect
    _install(URL)
    blog = xmlrpc.client.ServerProxy(f"{URL}/xmlrpc.php")
    post_id = blog.wp.newPost(0, "admin", "s3cret-Passw0rd!", {
        "post_title": "Hello from Shipyard", "post_content": "Kept in a named volume.",
        "post_status": "publish"})
    assert "Hello from Shipyard" in _get(f"{URL}/?p={post_id}")[1]

    # down and up again: the database lives in the db_data volume
    _shipyard(env, "-f", str(LOCAL), "down")
    _shipyard(env, "-f", str(LOCAL), "up", "-d", "--wait")
    assert "Hello from Shipyard" in _get(f"{URL}/?p={post_id}")[1]

    # down -v takes the volumes too
    _shipyard(env, "-f", str(LOCAL), "down", "-v")
    volumes = _shipyard(env, "volume", "ls", "-q")
    assert "wordpress-local_db_data" not in volumes
    assert "wordpress-local_wp_content" not in volumes


def test_links_variant_resolves_the_alias(env: dict[str, str]) -> None:
    subprocess.run([str(REPO / "examples" / "base" / "make-debian-image")],
                   env=dict(env, SHIPYARD=str(SHIPYARD)), check=True, capture_output=True,
                   timeout=900)
    _shipyard(env, "-f", str(LINKS), "up", "-d", "--wait", "--build", timeout=1800)
    out = _shipyard(env, "-f", str(LINKS), "exec", "-T", "wordpress", "getent", "hosts",
                    "mysql")
    assert out.split()[0].count(".") == 3  # an IPv4 address: the alias resolves
    status, _ = _get("http://127.0.0.1:8081/")
    assert status == 200
    _shipyard(env, "-f", str(LINKS), "down", "-v")
