"""`shipyard run` takes the caller's input, as Docker Compose's `run` does: piped input into
the one-off container's stdin (its end is the container's end of input), and from a
terminal through a pseudo-TTY, keystrokes as typed (^C interrupts the container's process,
not the CLI), the window's size passed on. The CLI runs as a process of its own, its stdin
a pipe or the slave side of a pty the test holds."""

from __future__ import annotations

import os
import select
import subprocess
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.test_kill_anywhere import Cli
from tests.support import busybox, leaks

pytestmark = [
    pytest.mark.skipif(not busybox.available(), reason="busybox-static is missing"),
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (containers)"),
]

REPO = Path(__file__).parents[2]


@pytest.fixture
def cli(tmp_path: Path) -> Iterator[Cli]:
    before = leaks.snapshot()
    project = tmp_path / "att"
    project.mkdir()
    (project / "compose.yaml").write_text(textwrap.dedent("""
        services:
          box:
            image: busybox
            command: ["sleep", "3600"]
        """))
    cli = Cli(tmp_path / "root", project)
    cli.run("image", "import", str(busybox.make_rootfs_tar(tmp_path / "busybox.tar")), "busybox")
    yield cli
    subprocess.run(cli.command("down", "-v", "-t", "0"), env=cli.env, capture_output=True,
                   cwd=REPO)
    assert cli.leftovers() == {}
    assert cli.ids.owned(leaks.diff(before, leaks.snapshot())) == {}


def run_piped(cli: Cli, text: str, *argv: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(cli.command("run", *argv), env=cli.env, input=text,
                          capture_output=True, text=True, cwd=REPO, timeout=60)
    cli.ids.record()
    return done


def test_piped_input_reaches_the_container_and_its_end_ends_it(cli: Cli) -> None:
    done = run_piped(cli, "hello\nworld\n", "--rm", "-T", "box", "sh", "-c",
                     "cat; echo after-end")
    assert (done.returncode, done.stdout.splitlines()) == (0, ["hello", "world", "after-end"])
    # a script on stdin, its exit code the run's (no -T: ours is no terminal, so no TTY)
    done = run_piped(cli, "echo from-script; exit 3\n", "--rm", "box", "sh")
    assert (done.returncode, done.stdout) == (3, "from-script\n"), done.stderr
    assert cli.states() == {}


def test_detached_run_keeps_no_stdin(cli: Cli) -> None:
    done = run_piped(cli, "ignored\n", "-d", "--name", "bg", "box", "cat")
    assert done.returncode == 0, done.stderr
    deadline = time.monotonic() + 10
    while cli.states().get("bg") != "exited":  # cat read the end of an empty input
        assert time.monotonic() < deadline, cli.states()
        time.sleep(0.05)


def test_a_terminal_goes_through_a_pty(cli: Cli) -> None:
    import fcntl
    import struct
    import termios

    master, slave = os.openpty()
    fcntl.ioctl(master, termios.TIOCSWINSZ, struct.pack("HHHH", 33, 101, 0, 0))
    script = ('[ -t 0 ] && echo is-a-tty; stty size; read line; echo got-$line; '
              'trap "echo interrupted; exit 7" INT; echo waiting; '
              'while :; do sleep 0.1; done')
    proc = subprocess.Popen(cli.command("run", "--rm", "box", "sh", "-c", script),
                            env=cli.env, stdin=slave, stdout=slave, stderr=slave, cwd=REPO,
                            start_new_session=True)
    os.close(slave)
    seen = b""
    steps = [(b"33 101", b"abc\r"), (b"waiting", b"\x03")]  # then ^C
    deadline = time.monotonic() + 60
    try:
        while proc.poll() is None and time.monotonic() < deadline:
            if select.select([master], [], [], 0.1)[0]:
                try:
                    seen += os.read(master, 4096)
                except OSError:  # the CLI closed the terminal's last other end
                    break
            if steps and steps[0][0] in seen:
                os.write(master, steps.pop(0)[1])
        try:
            code = proc.wait(10)
        except subprocess.TimeoutExpired:
            code = None
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)
        cli.ids.record()
    text = seen.decode(errors="replace")
    for expected in ("is-a-tty", "33 101", "got-abc", "interrupted"):
        assert expected in text, text
    assert code == 7, text  # the container's, after its own ^C handler
    assert cli.states() == {}


def test_ctrl_c_is_the_containers(cli: Cli) -> None:
    # Attached without a TTY, Ctrl-C (SIGINT to the CLI) goes on to the container's process,
    # whose handler decides; its exit code is the run's, and --rm still removes it.
    import signal

    script = 'trap "echo interrupted; exit 4" INT; echo ready; while :; do sleep 0.1; done'
    proc = subprocess.Popen(cli.command("run", "--rm", "-T", "box", "sh", "-c", script),
                            env=cli.env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, cwd=REPO)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline() == b"ready\n"
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        cli.ids.record()
    assert (proc.returncode, out) == (4, b"interrupted\n"), err
    assert cli.states() == {}


def test_sigterm_to_the_cli_gives_the_terminal_its_modes_back(cli: Cli) -> None:
    import signal
    import termios

    master, slave = os.openpty()
    cooked = termios.tcgetattr(slave)[3]  # lflag: ICANON, ECHO...
    proc = subprocess.Popen(cli.command("run", "--rm", "--name", "held", "box", "sh", "-c",
                                        "echo ready; sleep 30"),
                            env=cli.env, stdin=slave, stdout=slave, stderr=slave, cwd=REPO,
                            start_new_session=True)
    seen = b""
    try:
        deadline = time.monotonic() + 30
        while b"ready" not in seen and time.monotonic() < deadline:
            if select.select([master], [], [], 0.1)[0]:
                seen += os.read(master, 4096)
        assert b"ready" in seen, seen
        assert not termios.tcgetattr(slave)[3] & termios.ICANON  # raw while attached
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 128 + signal.SIGTERM
        assert termios.tcgetattr(slave)[3] == cooked
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)
        os.close(slave)
        cli.ids.record()
