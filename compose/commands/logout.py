"""`shipyard logout [SERVER]`: forgets the saved login for a registry (Docker's config.json,
or its credential helper)."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from compose.cli import Context

HELP = "Log out from a registry"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("server", nargs="?", default="docker.io", metavar="SERVER",
                        help="registry (default: Docker Hub)")


def run(args: argparse.Namespace, ctx: Context) -> int:
    from compose.commands.login import registry_name
    from engine.registryauth import CredentialStore, default_config_dir

    server = registry_name(args.server)
    if CredentialStore(default_config_dir(ctx.environ)).erase(server):
        print(f"Removing login credentials for {server}", file=ctx.stdout)
    else:
        print(f"Not logged in to {server}", file=ctx.stdout)
    return 0
