"""`shipyard image` (placeholder until its issue lands)."""

from __future__ import annotations

import argparse

HELP = "(image: not built yet)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    pass


def run(args: argparse.Namespace, ctx) -> int:
    from engine.errors import Unavailable

    raise Unavailable("shipyard image is not built yet")
