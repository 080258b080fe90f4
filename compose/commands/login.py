"""`shipyard login [-u USER] [-p PASS | --password-stdin] [SERVER]`: checks the credentials
against the registry (as `docker login` does) and saves them in Docker's config.json
(`DOCKER_CONFIG`, else ~/.docker), through its credential helper when one is configured."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from compose.cli import Context

HELP = "Log in to a registry"
DEFAULT_SERVER = "docker.io"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-u", "--username", help="username")
    parser.add_argument("-p", "--password", help="password (prefer --password-stdin)")
    parser.add_argument("--password-stdin", action="store_true",
                        help="take the password from stdin")
    parser.add_argument("server", nargs="?", default=DEFAULT_SERVER, metavar="SERVER",
                        help="registry (default: Docker Hub)")


def run(args: argparse.Namespace, ctx: Context) -> int:
    import anyio

    from compose.commands.imagebuild import registry_factory
    from engine.errors import InvalidArgument
    from engine.registryauth import Credentials, CredentialStore, default_config_dir

    server = registry_name(args.server)
    password = args.password
    if args.password_stdin:
        if password:
            raise InvalidArgument("--password and --password-stdin are mutually exclusive")
        if not args.username:
            raise InvalidArgument("--password-stdin needs --username")
        password = sys.stdin.read().rstrip("\r\n")
    elif password:
        print("WARNING! Using --password via the CLI is insecure. Use --password-stdin.",
              file=ctx.stderr)
    username = args.username
    if not username:
        if not sys.stdin.isatty():
            raise InvalidArgument("login: no username given (use -u USERNAME)")
        username = input("Username: ").strip()
    if not password:
        if not sys.stdin.isatty():
            raise InvalidArgument("login: no password given (use --password-stdin)")
        import getpass
        password = getpass.getpass("Password: ")
    if not username or not password:
        raise InvalidArgument("login: username and password are both required")
    creds = Credentials(username=username, password=password)
    make = registry_factory(ctx)

    async def check() -> None:
        async with make() as client:
            await client.check_login(server, creds)

    anyio.run(check)
    CredentialStore(default_config_dir(ctx.environ)).store(server, creds)
    print("Login Succeeded", file=ctx.stdout)
    return 0


def registry_name(server: str) -> str:
    """`https://host:5000/v2/` -> `host:5000`; Docker Hub's names stay as given."""
    from engine.registryauth import normalize_server

    return normalize_server(server) or DEFAULT_SERVER
