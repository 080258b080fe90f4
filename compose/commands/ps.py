"""`shipyard ps`: the project's containers, as `docker compose ps` lists them.

Fast by design (the goal is under 100 ms for a 20-service stack): the project's name is all
it needs, found without the YAML parser in the common cases (`project.quick_project_name`),
and the containers are read straight from the engine's records and state files, without
building the engine's typed container objects (whose modules cost more to import than all
of `ps`). The COMMAND column is the effective command, as Docker shows it: the request's
entrypoint and cmd merged with the image's (its config blob, read once per image). Named
services are checked against the loaded project.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from compose.cli import Context
    from engine import Engine
    from engine.ports import Published

HELP = "List containers"
STATUSES = ("paused", "restarting", "removing", "running", "dead", "created", "exited")
ACTIVE = ("running", "paused", "restarting")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-a", "--all", action="store_true",
                        help="show all stopped containers (including those created by run)")
    parser.add_argument("-q", "--quiet", action="store_true", help="only display IDs")
    parser.add_argument("--services", action="store_true", help="display services")
    parser.add_argument("--status", action="append", default=[], choices=STATUSES,
                        help="filter services by status")
    parser.add_argument("--filter", action="append", default=[], metavar="KEY=VALUE",
                        help="filter services by a property (status=...)")
    parser.add_argument("--format", default="table", help="table or json")
    parser.add_argument("--no-trunc", action="store_true", help="don't truncate output")
    parser.add_argument("services_args", nargs="*", metavar="SERVICE")


@dataclass(frozen=True, slots=True)
class Health:
    """A container's health status."""

    status: str


@dataclass(frozen=True, slots=True)
class State:
    """What `humanize.status` reads from a container's state."""

    status: str
    exit_code: int
    started_at: str
    finished_at: str
    health: Health | None


@dataclass(frozen=True, slots=True)
class Row:
    """One container as `ps` lists it."""

    id: str
    name: str
    image: str
    created: float
    labels: dict[str, str]
    command: str
    service: str
    oneoff: bool
    state: State
    ports: tuple[Published, ...]


def _state(directory: str) -> State:
    """The container's state file, read as `launch.state` reads it (a running container
    whose monitor is gone is "dead")."""
    from engine.runtime import state as st

    d = st.read(directory) or {"status": "created"}
    status = d.get("status", "created")
    if status in ACTIVE and not st.alive(d.get("shim_pid"), d.get("shim_start")):
        status = "dead"
    health = d.get("health")
    return State(status, d.get("exit_code") or 0, d.get("started_at", ""),
                 d.get("finished_at", ""), Health(health["status"]) if health else None)


def effective_command(entrypoint: list[str] | None, cmd: list[str] | None,
                      image_config: dict[str, Any]) -> list[str]:
    """The argv a container runs: Docker's merge, as engine.spec.command does it (that
    module costs `ps` too much to import). An entrypoint given by the container replaces the
    image's and drops the image's Cmd; without one, Cmd falls back to the image's; `[""]`
    clears the entrypoint. `image_config` is the config blob's "config" object."""
    if entrypoint == [""]:
        return list(cmd or [])
    if entrypoint:
        return [*entrypoint, *(cmd or [])]
    if not cmd:
        cmd = image_config.get("Cmd") or []
    image_entrypoint = (image_config.get("Entrypoint") or []) if entrypoint is None else []
    return [*image_entrypoint, *cmd]


def image_command_config(blobs: str, image_id: str) -> dict[str, Any]:
    """The "config" object of the image's config blob in the content store at `blobs`
    (empty when the blob is gone or unreadable: the request's command is all there is)."""
    import os

    try:
        with open(os.path.join(blobs, image_id.partition(":")[2]), "rb") as f:
            return json.load(f).get("config") or {}
    except (OSError, ValueError, AttributeError):
        return {}


def rows(engine: Engine, project: str, services: tuple[str, ...] = ()) -> list[Row]:
    """Every container of `project` (one-offs too), by name."""
    import os

    from compose.project import LABEL_ONEOFF, LABEL_PROJECT, LABEL_SERVICE
    from engine.store import OperationalError

    store = engine.store
    try:
        records = store.query(
            "SELECT id, name, image, image_id, created, labels, request FROM containers")
    except OperationalError:  # no container was ever created in this root
        return []
    out = []
    base = os.fspath(engine.layout.containers)
    blobs = os.fspath(engine.layout.blobs)
    image_configs: dict[str, dict[str, Any]] = {}
    for record in records:
        labels = json.loads(record["labels"])
        if labels.get(LABEL_PROJECT) != project:
            continue
        service = labels.get(LABEL_SERVICE, "")
        if services and service not in services:
            continue
        config = json.loads(record["request"]).get("config") or {}
        image_id = record["image_id"]
        if image_id not in image_configs:
            image_configs[image_id] = image_command_config(blobs, image_id)
        command = " ".join(effective_command(config.get("entrypoint"), config.get("cmd"),
                                             image_configs[image_id]))
        state = _state(os.path.join(base, record["id"]))
        ports: tuple[Published, ...] = ()
        if state.status in ACTIVE:
            try:
                rows = store.query(
                    "SELECT container_port, protocol, host_ip, host_port FROM port_bindings"
                    " WHERE container_id = ? ORDER BY rowid", (record["id"],))
            except OperationalError:  # no port was ever published here
                rows = []
            if rows:  # (the engine's port module is imported only when there are some)
                from engine.ports import Published

                ports = tuple(Published(*r) for r in rows)
        out.append(Row(record["id"], record["name"], record["image"], record["created"],
                       labels, command, service,
                       labels.get(LABEL_ONEOFF, "False").lower() == "true", state, ports))
    out.sort(key=lambda r: r.name)
    return out


def run(args: argparse.Namespace, ctx: Context) -> int:
    from compose.project import target
    from engine.errors import InvalidArgument

    statuses = list(args.status)
    for item in args.filter:
        key, sep, value = item.partition("=")
        if key != "status" or not sep:
            raise InvalidArgument(f'invalid filter "{item}": only status=STATUS is supported')
        if value not in STATUSES:
            raise InvalidArgument(f'invalid filter "{item}": status is one of '
                                  + ", ".join(STATUSES))
        statuses.append(value)
    if args.format not in ("table", "json"):
        raise InvalidArgument(f'unsupported --format "{args.format}": table or json')
    name, _, services = target(args, ctx, args.services_args)
    found = rows(ctx.engine(), name, services)
    # A status filter reaches stopped containers even without -a, as in Docker Compose;
    # one-off (`run`) containers show only with -a.
    if not args.all:
        found = [r for r in found if not r.oneoff]
        if not statuses:
            found = [r for r in found if r.state.status in ACTIVE]
    if statuses:
        found = [r for r in found if r.state.status in statuses]
    if args.services:
        for service in dict.fromkeys(r.service for r in found):
            print(service, file=ctx.stdout)
    elif args.quiet:
        for row in found:
            print(row.id, file=ctx.stdout)
    elif args.format == "json":
        for row in found:
            print(json.dumps(summary(name, row)), file=ctx.stdout)
    else:
        print_table(ctx, found, truncate=not args.no_trunc)
    return 0


def ports_text(ports: tuple[Published, ...]) -> str:
    return ", ".join(f"{p.host}->{p.container_port}/{p.protocol}" for p in ports)


def summary(project: str, row: Row) -> dict[str, Any]:
    """One container as `docker compose ps --format json` prints it."""
    from compose.commands import humanize

    state = row.state
    return {
        "Command": f'"{row.command}"', "CreatedAt": humanize.iso(row.created),
        "ExitCode": state.exit_code, "Health": state.health.status if state.health else "",
        "ID": row.id, "Image": row.image,
        "Labels": ",".join(f"{k}={v}" for k, v in row.labels.items()),
        "Name": row.name, "Names": row.name, "Project": project,
        "Ports": ports_text(row.ports),
        "Publishers": [{"URL": p.host_ip or "0.0.0.0", "TargetPort": p.container_port,
                        "PublishedPort": p.host_port, "Protocol": p.protocol}
                       for p in row.ports],
        "RunningFor": humanize.ago(row.created), "Service": row.service,
        "State": state.status, "Status": humanize.status(state),
    }


def truncated(command: str, width: int = 20) -> str:
    """Docker's cut of a command for tables: `docker-entrypoint.s…` (20 characters)."""
    return command if len(command) <= width else command[:width - 1] + "…"


def print_table(ctx: Context, found: list[Row], *, truncate: bool = True) -> None:
    from compose.commands import humanize

    table = [("NAME", "IMAGE", "COMMAND", "SERVICE", "CREATED", "STATUS", "PORTS")]
    for row in found:
        command = truncated(row.command) if truncate else row.command
        table.append((row.name, row.image, f'"{command}"', row.service,
                      humanize.ago(row.created), humanize.status(row.state),
                      ports_text(row.ports)))
    widths = [max(len(r[i]) for r in table) for i in range(len(table[0]))]
    for r in table:
        print("   ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip(),
              file=ctx.stdout)
