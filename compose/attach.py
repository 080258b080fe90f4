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
    for the duration of the block. A container that already ended gets nothing."""
    from engine.runtime import launch

    try:
        target = launch.attach_stdin(container_dir)
    except Conflict:  # it ended before we came (its output is in the log)
        yield
        return
    terminal = tty and os.isatty(0)
    saved = _raw_terminal(target) if terminal else None
    pump = threading.Thread(target=_pump, args=(0, target, not tty), daemon=True,
                            name="shipyard-stdin")
    pump.start()
    try:
        yield
    finally:
        if saved is not None:
            import termios

            termios.tcsetattr(0, termios.TCSADRAIN, saved)
        # A pump still reading our input stays blocked in read(): it dies with the process,
        # and the pty's master (kept for it) with it.


def terminal_size() -> tuple[int, int]:
    """(rows, columns) of the terminal on our stdin; (0, 0) when it has none."""
    import termios

    try:
        return termios.tcgetwinsize(0)
    except (OSError, termios.error):
        return (0, 0)


def _raw_terminal(master: int) -> list:
    """Puts this terminal in raw mode (keys go to the container's pty as typed: ^C is the
    container's interrupt) with the pty sized as the window; returns the modes to restore."""
    import signal
    import termios
    import tty

    def resize(*_: object) -> None:
        with contextlib.suppress(OSError):
            size = termios.tcgetwinsize(0)
            termios.tcsetwinsize(master, size)

    resize()
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGWINCH, resize)
    saved = termios.tcgetattr(0)
    tty.setraw(0)
    return saved


def _pump(source: int, target: int, close_at_end: bool) -> None:
    """Copies `source` to `target` until either ends; then closes `target` if asked (the
    container's end of input)."""
    try:
        while data := os.read(source, 65536):
            while data:
                data = data[os.write(target, data):]
    except OSError:
        pass  # the container's input closed (it exited), or ours failed
    finally:
        if close_at_end:
            os.close(target)
