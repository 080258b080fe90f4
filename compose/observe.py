"""What exists now for one project, read from the engine by Docker Compose's labels.

`observe` returns a frozen snapshot (`Observed`) that `reconcile` compares with the desired
`Project`. It only reads: the store's records and each container's state file.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from compose import translate as t
from compose.model import EMPTY

if TYPE_CHECKING:
    from compose.project import ProjectContainer
    from engine import Engine


@dataclass(frozen=True, slots=True)
class ObservedContainer:
    """One of the project's containers as the engine has it now."""

    id: str
    name: str
    service: str
    number: int
    config_hash: str
    image: str                     # the reference it was created from
    image_id: str
    status: str                    # created | running | paused | restarting | exited | dead
    exit_code: int = 0
    health: str | None = None      # starting | healthy | unhealthy; None: no healthcheck
    oneoff: bool = False
    created: float = 0.0
    labels: Mapping[str, str] = EMPTY
    anonymous_volumes: Mapping[str, str] = EMPTY   # target -> anonymous volume name
    volumes: tuple[str, ...] = ()                  # every volume its mounts use
    record: Any = field(default=None, compare=False, repr=False)  # engine Container

    @property
    def running(self) -> bool:
        return self.status in ("running", "paused", "restarting")


@dataclass(frozen=True, slots=True)
class ObservedNetwork:
    """An engine network (any project's: desired ones are found by name)."""

    name: str
    id: str
    labels: Mapping[str, str] = EMPTY
    complete: bool = True   # the engine completes an interrupted create on its own


@dataclass(frozen=True, slots=True)
class ObservedVolume:
    """An engine volume (found by name, like networks)."""

    name: str
    labels: Mapping[str, str] = EMPTY
    anonymous: bool = False


@dataclass(frozen=True, slots=True)
class Observed:
    """A project's containers (all, one-offs included, oldest first), the engine's networks
    and volumes that matter to it (by name), and which image references resolve (to ids)."""

    project: str
    containers: tuple[ObservedContainer, ...] = ()
    networks: Mapping[str, ObservedNetwork] = EMPTY
    volumes: Mapping[str, ObservedVolume] = EMPTY
    images: Mapping[str, str] = EMPTY   # reference -> image id (only those present)

    def service_containers(self, service: str, *, oneoff: bool = False
                           ) -> tuple[ObservedContainer, ...]:
        return tuple(sorted((c for c in self.containers
                             if c.service == service and c.oneoff == oneoff),
                            key=lambda c: (c.number, c.created)))


def describe(item: ProjectContainer) -> ObservedContainer:
    """One of the project's containers (labels and state already read) as the reconciler
    sees it."""
    container, state = item.container, item.state
    return ObservedContainer(
        id=container.id, name=container.name, service=item.service, number=item.number,
        config_hash=container.labels.get(t.CONFIG_HASH, ""), image=container.image,
        image_id=container.image_id, status=state.status, exit_code=state.exit_code,
        health=state.health.status if state.health else None, oneoff=item.oneoff,
        created=container.created, labels=container.labels,
        anonymous_volumes=t.anonymous_volumes_of(container.request, container.volumes),
        volumes=tuple(v for v in container.volumes if v), record=container)


def project_containers(engine: Engine, project_name: str, services: Iterable[str] = (),
                       oneoff: bool | None = False) -> list[ObservedContainer]:
    """The project's containers (of `services`, if given), ordered by service and number
    (then age). `oneoff=None` includes both kinds. The selection is
    `compose.project.project_containers`'s."""
    from compose import project

    found = project.project_containers(engine, project_name, services=services, oneoff=oneoff)
    return sorted(map(describe, found), key=lambda c: (c.service, c.oneoff, c.number, c.created))


def observe(engine: Engine, project_name: str, images: Iterable[str] = (),
            containers: Iterable[ObservedContainer] | None = None) -> Observed:
    """Everything of `project_name` the engine holds: its containers (one-offs too; or
    `containers`, when the caller has just listed them with `project_containers`), every
    network and volume (by name: desired ones may predate the labels, e.g. external), and
    the ids of those `images` that are present."""
    if containers is None:
        containers = project_containers(engine, project_name, oneoff=None)
    networks = {n.name: ObservedNetwork(n.name, n.id, n.labels)
                for n in engine.networks.list()}
    volumes = {v.name: ObservedVolume(v.name, v.labels, v.anonymous)
               for v in engine.volumes.list()}
    return Observed(project=project_name, containers=tuple(containers), networks=networks,
                    volumes=volumes, images=present_images(engine, images))


def present_images(engine: Engine, images: Iterable[str]) -> dict[str, str]:
    """Reference -> image id, for those of `images` the engine has."""
    from engine.errors import NotFound

    present = {}
    for ref in dict.fromkeys(images):
        try:
            present[ref] = engine.images.resolve_id(ref)
        except NotFound:
            continue
    return present
