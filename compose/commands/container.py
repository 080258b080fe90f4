"""`shipyard container` (placeholder until its issue lands)."""

from __future__ import annotations

import argparse

HELP = "(container: not built yet)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    pass


def run(args: argparse.Namespace, ctx) -> int:
    from engine.errors import Unavailable

    raise Unavailable("shipyard container is not built yet")
