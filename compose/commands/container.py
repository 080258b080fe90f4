"""`shipyard container ...`: engine-level container commands with Docker's flag names."""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from typing import TYPE_CHECKING, Any

from compose.commands.container_args import add_create_flags

if TYPE_CHECKING:
    from compose.cli import Context
    from engine import Engine
    from engine.containers import Container
    from engine.runtime.logs import LogEntry

HELP = "Manage containers (run, ls, logs, exec, stop, rm, ...)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="container_command", metavar="COMMAND")
    # Docker's `-h` is --hostname for these two, so help is only `--help`.
    add_create_flags(sub.add_parser("run", help="create and start a container", add_help=False))
    sub.choices["run"].add_argument("-d", "--detach", action="store_true")
    add_create_flags(sub.add_parser("create", help="create a container", add_help=False))
    for name in ("start", "restart", "stop"):
        p = sub.add_parser(name, help=f"{name} containers")
        if name != "start":
            p.add_argument("-t", "--time", "--timeout", dest="timeout", type=float)
        p.add_argument("containers", nargs="+")
    p = sub.add_parser("kill", help="send a signal to containers")
    p.add_argument("-s", "--signal", default="KILL")
    p.add_argument("containers", nargs="+")
    p = sub.add_parser("rm", help="remove containers")
    p.add_argument("-f", "--force", action="store_true")
    p.add_argument("-v", "--volumes", action="store_true")
    p.add_argument("containers", nargs="+")
    for name in ("ls", "ps", "list"):
        p = sub.add_parser(name, help="list containers")
        p.add_argument("-a", "--all", action="store_true")
        p.add_argument("-q", "--quiet", action="store_true")
        p.add_argument("--no-trunc", action="store_true")
        p.add_argument("--filter", action="append", default=[], metavar="KEY=VALUE")
        p.add_argument("--format", choices=["table", "json"], default="table")
    p = sub.add_parser("inspect", help="show containers' configuration and state as JSON")
    p.add_argument("containers", nargs="+")
    p = sub.add_parser("logs", help="show a container's output")
    p.add_argument("-f", "--follow", action="store_true")
    p.add_argument("-n", "--tail", default="all")
    p.add_argument("-t", "--timestamps", action="store_true")
    p.add_argument("--since")
    p.add_argument("--until")
    p.add_argument("container")
    p = sub.add_parser("exec", help="run a command in a running container")
    p.add_argument("-d", "--detach", action="store_true")
    p.add_argument("-i", "--interactive", action="store_true")
    p.add_argument("-t", "--tty", action="store_true")
    p.add_argument("-e", "--env", action="append", default=[])
    p.add_argument("-u", "--user")
    p.add_argument("-w", "--workdir")
    p.add_argument("container")
    p.add_argument("command", nargs=argparse.REMAINDER)
    for name in ("wait", "pause", "unpause"):
        sub.add_parser(name, help=f"{name} containers").add_argument("containers", nargs="+")
    sub.add_parser("top", help="list a container's processes").add_argument("container")
    p = sub.add_parser("port", help="list a container's published ports")
    p.add_argument("container")
    p.add_argument("private_port", nargs="?")


def run(args: argparse.Namespace, ctx: Context) -> int:
    from engine.errors import InvalidArgument

    command = args.container_command
    if command is None:
        raise InvalidArgument("usage: shipyard container COMMAND (run, create, start, stop, "
                              "restart, kill, rm, ls, inspect, logs, exec, wait, pause, "
                              "unpause, top, port)")
    command = {"ps": "ls", "list": "ls"}.get(command, command)
    handler = globals()[f"_{command}"]
    return int(handler(args, ctx, ctx.engine()) or 0)


def _create(args: argparse.Namespace, ctx: Context, engine: Engine) -> int:
    from compose.commands.container_args import create_request

    container = engine.containers.create(create_request(args, ctx.environ, ctx.cwd))
    print(container.id, file=ctx.stdout)
    return 0


def _run(args: argparse.Namespace, ctx: Context, engine: Engine) -> int:
    from compose.commands.container_args import create_request

    container = engine.containers.create(create_request(args, ctx.environ, ctx.cwd))
    return start_attached(ctx, engine, container, detach=args.detach, remove=args.rm,
                          detached_output=container.id)


def start_attached(ctx: Context, engine: Engine, container: Container, *, detach: bool,
                   remove: bool, detached_output: str) -> int:
    """Starts a just-created container (removing it if the start fails). Detached: prints
    `detached_output`; otherwise streams its output (and, with its stdin open, our input
    into it) until it exits, returns its exit code, and with `remove` removes it and its
    anonymous volumes."""
    from compose.attach import stdin_forwarded

    try:
        # Attached, this command waits for the end and releases: the shim need not start
        # its exit hook (which would hold the container's lock while we wait for it).
        engine.containers.start(container, waited=not detach)
    except BaseException:
        engine.containers.remove(container, force=True, volumes=True)
        raise
    if detach:
        print(detached_output, file=ctx.stdout)
        return 0
    config = container.request.config
    try:
        with stdin_forwarded(str(container.directory), config.tty) if config.stdin_open \
                else contextlib.nullcontext():
            code = _attached(ctx, container)
    except BaseException:
        # Left before `wait` took the end (a third Ctrl-C, a closed stdout): a shim that
        # ends later hears no waiter and runs its exit hook; one that ended already told
        # the held connection, and left the release to us.
        from engine.runtime import launch

        launch.drop_wait(container.directory)
        with contextlib.suppress(Exception):  # the first failure is the one to report
            engine.containers.release(container)
        raise
    engine.containers.release(container)
    if remove:
        engine.containers.remove(container, volumes=True)
    return code


INTERRUPTS_PASSED_ON = 2  # the next Ctrl-C leaves (the container runs on)


def _attached(ctx: Context, container: Container) -> int:
    """Streams the container's output until it exits; its exit code. Ctrl-C here is the
    container's, as with Docker's attached run: passed on as SIGINT (its program decides),
    and only one more than INTERRUPTS_PASSED_ON leaves without it."""
    import itertools

    from engine.errors import Error
    from engine.runtime import launch, logs

    path = str(container.directory)
    # What a terminal types is echoed through the log: follow it closely then.
    poll = 0.01 if container.request.config.tty else 0.05
    # Entries printed so far: after an interrupt (which ends the follower) the next one
    # goes on after them, so nothing written meanwhile (the program's answer to SIGINT, or
    # what it wrote just before and was not shown yet) is lost.
    shown = 0
    interrupts = 0
    while True:
        try:
            followed = logs.follow(path, poll=poll, end_fd=launch.end_fd(path))
            for entry in itertools.islice(followed, shown, None):
                # Counted first: a Ctrl-C between the two must not print it twice.
                shown += 1
                _write_entry(ctx, entry, timestamps=False)
            return launch.wait(path)
        except KeyboardInterrupt:
            interrupts += 1
            if interrupts > INTERRUPTS_PASSED_ON:
                raise
            with contextlib.suppress(Error):
                launch.kill(path, "INT")


def _each(args: argparse.Namespace, ctx: Context, action: Any) -> int:
    """Runs `action(name)` for each named container, reporting failures like Docker: the
    name on stdout on success, the error on stderr, exit 1 if any failed."""
    from engine.errors import Error

    status = 0
    for name in args.containers:
        try:
            action(name)
        except Error as error:
            print(f"Error response from engine: {error}", file=ctx.stderr)
            status = 1
        else:
            print(name, file=ctx.stdout)
    return status


def _start(args: argparse.Namespace, ctx: Context, engine: Engine) -> int:
    return _each(args, ctx, engine.containers.start)


def _stop(args: argparse.Namespace, ctx: Context, engine: Engine) -> int:
    return _each(args, ctx, lambda name: engine.containers.stop(name, args.timeout))


def _restart(args: argparse.Namespace, ctx: Context, engine: Engine) -> int:
    def restart(name: str) -> None:
        engine.containers.stop(name, args.timeout)
        engine.containers.start(name)

    return _each(args, ctx, restart)


def _kill(args: argparse.Namespace, ctx: Context, engine: Engine) -> int:
    return _each(args, ctx, lambda name: engine.containers.kill(name, args.signal))


def _rm(args: argparse.Namespace, ctx: Context, engine: Engine) -> int:
    return _each(args, ctx, lambda name: engine.containers.remove(
        name, force=args.force, volumes=args.volumes))


def _pause(args: argparse.Namespace, ctx: Context, engine: Engine) -> int:
    from engine.runtime import launch

    return _each(args, ctx, lambda n: launch.pause(str(engine.containers.get(n).directory)))


def _unpause(args: argparse.Namespace, ctx: Context, engine: Engine) -> int:
    from engine.runtime import launch

    return _each(args, ctx, lambda n: launch.unpause(str(engine.containers.get(n).directory)))


def _wait(args: argparse.Namespace, ctx: Context, engine: Engine) -> int:
    from engine.runtime import launch

    for name in args.containers:
        container = engine.containers.get(name)
        print(launch.wait(str(container.directory)), file=ctx.stdout)
        engine.containers.release(container)
    return 0


def _filters(items: list[str]) -> tuple[dict[str, str | None], dict[str, str]]:
    from engine.errors import InvalidArgument

    labels: dict[str, str | None] = {}
    other: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise InvalidArgument(f'--filter "{item}": expected KEY=VALUE')
        if key == "label":
            name, has_value, wanted = value.partition("=")
            labels[name] = wanted if has_value else None
        elif key in ("name", "status", "id"):
            other[key] = value
        else:
            raise InvalidArgument(f'--filter "{item}": unknown filter "{key}" '
                                  "(label, name, status, id)")
    return labels, other


def _ls(args: argparse.Namespace, ctx: Context, engine: Engine) -> int:
    from compose.commands.ps import truncated

    labels, other = _filters(args.filter)
    rows = []
    for container in engine.containers.list(labels):
        state = engine.containers.state(container)
        if not args.all and state.status not in ("running", "paused", "restarting") \
                and "status" not in other:
            continue
        if other.get("status") and state.status != other["status"]:
            continue
        if other.get("name") and other["name"] not in container.name:
            continue
        if other.get("id") and not container.id.startswith(other["id"]):
            continue
        rows.append((container, state))
    if args.quiet:
        for container, _ in rows:
            print(container.id if args.no_trunc else container.short_id, file=ctx.stdout)
        return 0
    if args.format == "json":
        for container, state in rows:
            print(json.dumps(_summary(container, state, engine)), file=ctx.stdout)
        return 0
    table = [("CONTAINER ID", "IMAGE", "COMMAND", "CREATED", "STATUS", "PORTS", "NAMES")]
    for container, state in rows:
        summary = _summary(container, state, engine)
        command = summary["Command"] if args.no_trunc else truncated(summary["Command"])
        table.append((container.id if args.no_trunc else container.short_id, container.image,
                      f'"{command}"', summary["RunningFor"], summary["Status"],
                      summary["Ports"], container.name))
    _print_table(ctx, table)
    return 0


def _summary(container: Container, state: Any, engine: Engine) -> dict[str, Any]:
    from compose.commands import humanize

    command = " ".join(_command(container, engine))
    return {
        "ID": container.id, "Names": container.name, "Image": container.image,
        "Command": command, "CreatedAt": humanize.iso(container.created),
        "RunningFor": humanize.ago(container.created), "State": state.status,
        "Status": humanize.status(state), "Labels": dict(container.labels),
        "Ports": ", ".join(f"{p.host}->{p.container_port}/{p.protocol}"
                          for p in engine.containers.published_ports(container)),
    }


def _command(container: Container, engine: Engine) -> list[str]:
    """The container's effective argv: its entrypoint and cmd merged with the image's, as
    Docker shows it (the request's alone when the image's config is gone)."""
    from compose.commands.ps import effective_command, image_command_config

    config = container.request.config
    image_config = image_command_config(str(engine.layout.blobs), container.image_id)
    return effective_command(None if config.entrypoint is None else list(config.entrypoint),
                             None if config.cmd is None else list(config.cmd), image_config)


def _health(health: Any) -> dict[str, Any]:
    """The health block in Docker's shape (State.Health of `docker inspect`)."""
    return {"Status": health.status, "FailingStreak": health.failing_streak,
            "Log": [{"Start": r.start, "End": r.end, "ExitCode": r.exit_code,
                     "Output": r.output} for r in health.log]}


def _print_table(ctx: Context, rows: list[tuple[str, ...]]) -> None:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=True)]
        print("   ".join(cells).rstrip(), file=ctx.stdout)


def _inspect(args: argparse.Namespace, ctx: Context, engine: Engine) -> int:
    from compose.commands import humanize
    from engine.serde import to_dict

    out = []
    for name in args.containers:
        container = engine.containers.get(name)
        state = engine.containers.state(container)
        config = container.request.config
        argv = _command(container, engine)
        out.append({
            "Id": container.id,
            "Created": humanize.iso(container.created),
            "Path": (argv or [""])[0],
            "Args": argv[1:],
            "State": {
                "Status": state.status, "Running": state.status == "running",
                "Paused": state.status == "paused",
                "Restarting": state.status == "restarting", "Dead": state.status == "dead",
                "Pid": state.pid, "ExitCode": state.exit_code, "Error": state.error,
                "StartedAt": state.started_at, "FinishedAt": state.finished_at,
                **({"Health": _health(state.health)} if state.health else {}),
            },
            "Image": container.image_id,
            "Name": "/" + container.name,
            "RestartCount": state.restart_count,
            "Config": {"Image": container.image, "Labels": dict(container.labels),
                       "Env": [f"{k}={v}" for k, v in config.env.items()],
                       "Hostname": config.hostname or container.id[:12],
                       "User": config.user, "WorkingDir": config.working_dir},
            "Mounts": [to_dict(m) | {"Name": v} for m, v in
                       zip(container.request.mounts, container.volumes, strict=True)],
            "NetworkSettings": {
                "Ports": {f"{p.container_port}/{p.protocol}": [
                    {"HostIp": p.host_ip, "HostPort": str(p.host_port)}]
                    for p in engine.containers.published_ports(container)},
                "Networks": {
                e.network_name: {"IPAddress": str(e.ipv4), "Gateway": str(e.gateway),
                                 "MacAddress": e.mac}
                for e in engine.networks.endpoints(container_id=container.id)}},
        })
    print(json.dumps(out, indent=4), file=ctx.stdout)
    return 0


def _print_logs(ctx: Context, container: Container, *, follow: bool, tail: int | None,
                timestamps: bool, since: str | None = None, until: str | None = None) -> None:
    from engine.runtime import logs

    if follow:
        entries: Any = logs.follow(str(container.directory), tail=tail, since=since)
    else:
        entries = logs.read(str(container.directory), tail=tail, since=since, until=until)
    for entry in entries:
        _write_entry(ctx, entry, timestamps=timestamps)


def _write_entry(ctx: Context, entry: LogEntry, *, timestamps: bool) -> None:
    stream = ctx.stdout if entry.stream == "stdout" else ctx.stderr
    stream.write(f"{entry.time} {entry.text}" if timestamps else entry.text)
    stream.flush()


def _logs(args: argparse.Namespace, ctx: Context, engine: Engine) -> int:
    from compose.commands import humanize

    container = engine.containers.get(args.container)
    tail = None if args.tail == "all" else int(args.tail)
    _print_logs(ctx, container, follow=args.follow, tail=tail, timestamps=args.timestamps,
                since=humanize.since(args.since), until=humanize.since(args.until))
    return 0


def _exec(args: argparse.Namespace, ctx: Context, engine: Engine) -> int:
    from engine.errors import InvalidArgument
    from engine.runtime import launch

    if not args.command:
        raise InvalidArgument("exec: no command given")
    container = engine.containers.get(args.container)
    return launch.exec(str(container.directory), list(args.command), env=args.env,
                       user=args.user, workdir=args.workdir, tty=args.tty and sys.stdin.isatty(),
                       detach=args.detach, stdin=sys.stdin if args.interactive else None)


def _top(args: argparse.Namespace, ctx: Context, engine: Engine) -> int:
    from engine.runtime import launch

    container = engine.containers.get(args.container)
    processes = launch.top(str(container.directory))
    if not processes:
        return 0
    columns = list(processes[0])
    table = [tuple(c.upper() for c in columns)]
    table += [tuple(str(p.get(c, "")) for c in columns) for p in processes]
    _print_table(ctx, table)
    return 0


def _port(args: argparse.Namespace, ctx: Context, engine: Engine) -> int:
    """Docker's `port`: the host address each published container port is served on (the
    actual port, for ephemeral ones); nothing for a container that is not running."""
    from engine.errors import NotFound

    container = engine.containers.get(args.container)
    shown = 0
    for port in engine.containers.published_ports(container):
        key = f"{port.container_port}/{port.protocol}"
        if args.private_port and args.private_port not in (key, str(port.container_port)):
            continue
        prefix = "" if args.private_port else f"{key} -> "
        print(f"{prefix}{port.host}", file=ctx.stdout)
        shown += 1
    if args.private_port and not shown:
        wanted = args.private_port if "/" in args.private_port else f"{args.private_port}/tcp"
        raise NotFound(f"no public port '{wanted}' published for {container.name}")
    return 0
