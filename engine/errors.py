"""The engine's error hierarchy. Every failure a user can cause or meet is an `Error`.

`compose/cli.py` is the only place that catches `Error`; it prints `str(error)` as one line
and exits with `error.exit_code`. Messages say what is wrong and, where it helps, what to do.
"""


class Error(Exception):
    """Root of every expected failure: a clear message, no traceback."""

    exit_code = 1


class NotFound(Error):
    """A named thing (image, container, network, volume, file) does not exist."""


class AlreadyExists(Error):
    """A name is taken."""


class InvalidArgument(Error):
    """A value is malformed or out of range."""


class Conflict(Error):
    """The request contradicts the current state (e.g. removing a running container)."""


class Unavailable(Error):
    """Something the engine needs is missing here (privilege, kernel feature, tool)."""


def warn(message: str) -> None:
    """One warning line on stderr (`warning: ...`), as the CLI prints its own. The engine
    says so little that importing `logging` (~5 ms on every command) is not worth it."""
    import sys

    print(f"warning: {message}", file=sys.stderr)
