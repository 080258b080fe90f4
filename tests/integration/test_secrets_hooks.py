"""Secrets, configs and lifecycle hooks on the real kernel, through the CLI: file,
environment and inline sources mounted read-only with their uid/gid/mode, a missing external
secret refused before anything is made, post_start and pre_stop hooks run inside the
container by `up`, `start`, `stop` and `down`, and a failing post_start hook is one message."""

from __future__ import annotations

import textwrap

import pytest

from tests.integration.test_up_down import LOOP, Shipyard, shipyard  # noqa: F401 (fixture)
from tests.support import busybox

pytestmark = pytest.mark.skipif(not busybox.available(), reason="busybox-static is missing")

SECRETS = """
services:
  app:
    image: busybox
    command: ["sh", "-c", '{loop}']
    secrets:
      - token
      - source: fromenv
        target: /etc/fromenv
        uid: "1000"
        gid: "1001"
        mode: 0400
    configs:
      - source: inline
        target: /etc/app.conf
secrets:
  token: {{file: ./token.txt}}
  fromenv: {{environment: APP_SECRET}}
configs:
  inline: {{content: "level=3"}}
"""

HOOKS = """
services:
  app:
    image: busybox
    command: ["sh", "-c", '{loop}']
    volumes: [marks:/marks]
    post_start:
      - command: ["sh", "-c", "echo started >> /marks/post"]
    pre_stop:
      - command: ["sh", "-c", "echo stopping >> /marks/pre"]
volumes:
  marks: {{}}
"""


def exec_out(cli: Shipyard, *argv: str) -> str:
    """Output of a command in the app container."""
    code, out, err = cli.process("exec", "-T", "app", *argv)
    assert code == 0, err
    return out


def test_secrets_and_configs_are_mounted_read_only_as_asked(
        shipyard: Shipyard, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    monkeypatch.setenv("APP_SECRET", "from-the-environment")
    (shipyard.project / "token.txt").write_text("s3cret-token\n")
    shipyard.write(textwrap.dedent(SECRETS.format(loop=LOOP.format("true"))))
    shipyard("up", "-d")
    assert exec_out(shipyard, "cat", "/run/secrets/token") == "s3cret-token\n"
    assert exec_out(shipyard, "cat", "/etc/fromenv") == "from-the-environment"
    assert exec_out(shipyard, "stat", "-c", "%u %g %a", "/etc/fromenv").split() == \
        ["1000", "1001", "400"]
    assert exec_out(shipyard, "cat", "/etc/app.conf") == "level=3"
    code, _, _ = shipyard("container", "exec", "blog-app-1", "sh", "-c",
                          "echo x > /run/secrets/token", ok=False)
    assert code != 0, "a secret must be read-only in the container"
    assert (shipyard.project / "token.txt").read_text() == "s3cret-token\n"


def test_a_missing_external_secret_is_refused_before_anything_is_made(
        shipyard: Shipyard) -> None:  # noqa: F811
    shipyard.write(textwrap.dedent(f"""
        services:
          app:
            image: busybox
            command: ["sh", "-c", '{LOOP.format("true")}']
            secrets: [vault]
        secrets:
          vault: {{external: true}}
        """))
    code, _, err = shipyard("up", "-d", ok=False)
    assert code != 0 and "Traceback" not in err
    assert "vault" in err and "external" in err
    assert shipyard.inspect() == {}


def test_hooks_run_on_up_stop_start_and_down(shipyard: Shipyard) -> None:  # noqa: F811
    shipyard.write(textwrap.dedent(HOOKS.format(loop=LOOP.format("true"))))
    shipyard("up", "-d")
    assert exec_out(shipyard, "cat", "/marks/post") == "started\n"
    shipyard("stop", "-t", "0")
    shipyard("start")
    assert exec_out(shipyard, "cat", "/marks/pre") == "stopping\n"
    assert exec_out(shipyard, "cat", "/marks/post") == "started\nstarted\n"
    shipyard("down", "-t", "0")  # keeps the volume: the next `up` sees what pre_stop wrote
    shipyard("up", "-d")
    assert exec_out(shipyard, "cat", "/marks/pre") == "stopping\nstopping\n"


def test_a_failing_post_start_hook_fails_up_with_one_message(
        shipyard: Shipyard) -> None:  # noqa: F811
    shipyard.write(textwrap.dedent(HOOKS.format(loop=LOOP.format("true")).replace(
        "echo started >> /marks/post", "echo nope >&2; exit 3")))
    code, _, err = shipyard("up", "-d", ok=False)
    assert code != 0 and "Traceback" not in err
    assert "post_start hook" in err and "exited with 3" in err and "nope" in err


def test_secret_files_stay_outside_the_project(
        shipyard: Shipyard, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    monkeypatch.setenv("APP_SECRET", "x")
    (shipyard.project / "token.txt").write_text("t")
    before = sorted(p.name for p in shipyard.project.iterdir())
    shipyard.write(textwrap.dedent(SECRETS.format(loop=LOOP.format("true"))))
    shipyard("up", "-d")
    shipyard("down", "-t", "0")
    assert sorted(p.name for p in shipyard.project.iterdir()) == sorted({*before,
                                                                         "compose.yaml"})
