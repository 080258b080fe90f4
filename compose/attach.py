"""The caller's input into an attached container (`run`, `container run -i`), as Docker
Compose's `run` does by default: keystrokes into the container's pty (this terminal in raw
mode meanwhile, its window size passed on), or piped input into its stdin, whose end is
the container's end of input. The output comes through the container's log, as before.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator

from engine.errors import Conflict


@contextlib.contextmanager
def stdin_forwarded(container_dir: str, tty: bool) -> Iterator[None]:
    """Forwards this process's stdin (fd 0) to the running container at `container_dir`
    for the duration of the block. A container that already ended gets nothing. On the
    way out (however it ends) the terminal's modes and SIGWINCH's handler are restored and
    the forwarding stops, its fds closed."""
    from engine.runtime import launch

    try:
        target = launch.attach_stdin(container_dir)
    except Conflict:  # it ended before we came (its output is in the log)
        yield
        return
    # The pump owns `target` and `stop_r` (it closes them when it ends, so no fd number is
    # closed under it); closing `stop_w` ends it.
    stop_r, stop_w = os.pipe2(os.O_CLOEXEC)
    restore: list = []
    try:
        if tty and os.isatty(0):
            _raw_terminal(target, restore)
        pump = threading.Thread(target=_pump, args=(0, target, stop_r), daemon=True,
                                name="shipyard-stdin")
        pump.start()
    except BaseException:
        for undo in reversed(restore):
            undo()
        for fd in (target, stop_r, stop_w):
            os.close(fd)
        raise
    try:
        yield
    finally:
        for undo in reversed(restore):
            undo()
        os.close(stop_w)
        # Prompt: the pump never blocks but in poll (a container that stopped reading while
        # we are interrupted must not hold us up).
        pump.join(1.0)


def terminal_size() -> tuple[int, int]:
    """(rows, columns) of the terminal on our stdin; (0, 0) when it has none."""
    import termios

    try:
        return termios.tcgetwinsize(0)
    except (OSError, termios.error):
        return (0, 0)


def _raw_terminal(master: int, undo: list) -> None:
    """Puts this terminal in raw mode (keys go to the container's pty as typed: ^C is the
    container's interrupt) with the pty sized as the window, followed on SIGWINCH; SIGTERM
    and SIGHUP end the command with the terminal restored. Appends each undo step to
    `undo` as soon as its change is made (to be called in reverse, also when a later step
    fails)."""
    import signal
    import termios
    import tty

    def resize(*_: object) -> None:
        with contextlib.suppress(OSError, termios.error):
            termios.tcsetwinsize(master, termios.tcgetwinsize(0))

    def leave(signum: int, _frame: object) -> None:
        # Unwinds through the callers' `finally`, which gives the terminal its modes back
        # (the default action would end the process in raw mode).
        raise SystemExit(128 + signum)

    resize()
    if threading.current_thread() is threading.main_thread():
        for signum, handler in ((signal.SIGWINCH, resize), (signal.SIGTERM, leave),
                                (signal.SIGHUP, leave)):
            previous = signal.signal(signum, handler)
            undo.append(lambda signum=signum, previous=previous:
                        signal.signal(signum, previous))
    saved = termios.tcgetattr(0)
    undo.append(lambda: termios.tcsetattr(0, termios.TCSADRAIN, saved))
    tty.setraw(0)


def _pump(source: int, target: int, stop: int) -> None:
    """Copies `source` to `target` until either ends or `stop` is readable (its writer
    closed it); then closes `target` (for a stdin pipe, the container's end of input) and
    `stop`. `target` may be non-blocking (a pty's master shares the shim's flags)."""
    import select

    def wait(fd: int, events: int) -> bool:
        """Whether `fd` became ready before `stop` did."""
        poller = select.poll()
        poller.register(stop, select.POLLIN)
        poller.register(fd, events)
        ready = dict(poller.poll())
        return stop not in ready

    try:
        while wait(source, select.POLLIN) and (data := os.read(source, 65536)):
            while data:
                if not wait(target, select.POLLOUT):
                    return
                with contextlib.suppress(BlockingIOError):
                    data = data[os.write(target, data):]
    except OSError:
        pass  # the container's input closed (it exited), or ours failed
    finally:
        os.close(target)
        os.close(stop)
