"""`shipyard events [--json] [SERVICE...]`: the project's container events as they happen.

There is no daemon to stream events from, so this polls the containers' records and state
files (every 0.1 s) and reports each change as Docker would name it: create, start, die,
pause, unpause, restart, destroy. Runs until interrupted.
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from compose.cli import Context
    from engine import Engine

HELP = "Receive real time events from containers"
POLL = 0.1


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="output events as a stream of json")
    parser.add_argument("services", nargs="*", metavar="SERVICE")


def _snapshot(engine: Engine, project: str, services: Iterable[str]) -> dict[str, dict]:
    from compose.project import project_containers

    return {c.container.id: {"status": c.state.status, "started": c.state.started_at,
                             "exit": c.state.exit_code, "name": c.name, "service": c.service,
                             "image": c.container.image}
            for c in project_containers(engine, project, services=services, oneoff=None)}


def _changes(before: dict[str, Any] | None, after: dict[str, Any] | None) -> list[str]:
    """Docker's action names for one container going from `before` to `after`."""
    live = ("running", "paused", "restarting")
    if before is None:
        assert after is not None
        return ["create"] + (["start"] if after["status"] in live else [])
    if after is None:
        return (["die"] if before["status"] in live else []) + ["destroy"]
    was, now = before["status"], after["status"]
    if was == now:
        restarted = now == "running" and before["started"] != after["started"]
        return ["restart"] if restarted else []
    if was == "running" and now == "paused":
        return ["pause"]
    if was == "paused" and now == "running":
        return ["unpause"]
    if now == "running":
        return ["start"]
    if was in live and now not in live:
        return ["die"]
    if now == "restarting":
        return ["die"]
    return []


def watch(engine: Engine, project: str, services: Iterable[str] = (), *, poll: float = POLL,
          stop: threading.Event | None = None) -> Iterator[dict[str, Any]]:
    """Yields events (Docker Compose's JSON shape) until `stop` is set. Containers that
    exist when it starts produce no events."""
    from engine.runtime.state import now

    services = tuple(services)
    seen = _snapshot(engine, project, services)
    while stop is None or not stop.is_set():
        time.sleep(poll)
        current = _snapshot(engine, project, services)
        for cid in sorted(set(seen) | set(current),
                          key=lambda i: (current.get(i) or seen[i])["name"]):
            info = current.get(cid) or seen[cid]
            for action in _changes(seen.get(cid), current.get(cid)):
                attributes = {"image": info["image"], "name": info["name"]}
                if action == "die":
                    attributes["exitCode"] = str(info["exit"])
                yield {"action": action, "attributes": attributes, "id": cid,
                       "service": info["service"], "time": now(), "type": "container"}
        seen = current


def run(args: argparse.Namespace, ctx: Context) -> int:
    from compose.project import target

    name, _, services = target(args, ctx, args.services)
    engine = ctx.engine()
    for event in watch(engine, name, services):
        if args.json:
            print(json.dumps(event, sort_keys=True), file=ctx.stdout, flush=True)
        else:
            attrs = ", ".join(f"{k}={v}" for k, v in sorted(event["attributes"].items()))
            print(f"{event['time']} container {event['action']} {event['id']} ({attrs})",
                  file=ctx.stdout, flush=True)
    return 0
