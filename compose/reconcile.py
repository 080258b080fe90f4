"""Pure: (desired `Project`, `Observed` state, options) -> `Plan`. No I/O, no engine calls.

`up` ensures networks and volumes, pulls or builds missing images, creates the replicas a
service lacks, recreates those whose configuration or image changed (saying which key), starts
stopped ones, removes the highest-numbered replicas beyond the scale and (if asked) orphans,
and waits for `depends_on` conditions before starting dependents. `down` removes containers
(dependents first), then the project's networks and, if asked, volumes and images.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from compose import graph as graphs
from compose import translate as t
from compose.imageplan import image_nodes
from compose.model import EMPTY, Network, Project, Service, Volume
from compose.observe import Observed, ObservedContainer, ObservedNetwork, ObservedVolume
from compose.plan import Plan, PlanNode, ordered
from engine.errors import Error, InvalidArgument, NotFound


@dataclass(frozen=True, slots=True)
class UpOptions:
    """The flags of `up` that shape its plan."""

    services: tuple[str, ...] = ()      # only these (and, unless no_deps, their dependencies)
    no_deps: bool = False
    force_recreate: bool = False
    no_recreate: bool = False
    always_recreate_deps: bool = False
    no_start: bool = False
    remove_orphans: bool = False
    renew_anon_volumes: bool = False
    scale: Mapping[str, int] = EMPTY
    pull: str | None = None             # always | missing | never | build; None: each pull_policy
    build: bool = False
    no_build: bool = False
    wait: bool = False                  # also wait for every service to be running/healthy
    source_dir: str | None = None       # where secret/config files live (see translate)


@dataclass(frozen=True, slots=True)
class DownOptions:
    """The flags of `down` that shape its plan."""

    remove_orphans: bool = False
    volumes: bool = False
    rmi: str | None = None              # local | all


def _id(kind: str, action: str, target: str) -> str:
    return f"{kind} {action} {target}"


def selected_services(project: Project, services: tuple[str, ...], no_deps: bool
                      ) -> tuple[frozenset[str], graphs.Graph]:
    graph = graphs.build(project)
    for name in services:
        project.service(name)  # NotFound naming the known services
    if not services:
        return frozenset(project.services), graph
    chosen = frozenset(services) if no_deps else graph.dependencies_of(services)
    return chosen, graph


def _dependency_conditions(service: Service) -> dict[str, tuple[str, bool, bool]]:
    """Dependency -> (condition, required, restart), counting links, volumes_from and
    `service:` namespaces as `service_started`."""
    out = {name: (d.condition, d.required, d.restart) for name, d in service.depends_on.items()}
    for name in graphs.service_dependencies(service):
        out.setdefault(name, ("service_started", True, False))
    return out


def _namespace_parents(service: Service) -> set[str]:
    """Services whose container this one's is built on (network/ipc/pid namespace,
    volumes_from): when they are recreated, this one must be too."""
    out = {source.split(":", 1)[0] for source in service.volumes_from
           if not source.startswith("container:")}
    for mode in (service.network_mode, service.ipc, service.pid):
        if mode and mode.startswith("service:"):
            out.add(mode.removeprefix("service:"))
    return out


def up(project: Project, observed: Observed, options: UpOptions = UpOptions()) -> Plan:
    chosen, graph = selected_services(project, options.services, options.no_deps)
    nodes: list[PlanNode] = []
    warnings: list[str] = []
    network_ids = _networks(project, observed, chosen, nodes)
    volume_ids = _volumes(project, observed, chosen, nodes)
    image_ids = image_nodes(project, observed, chosen, options, nodes)
    changed: dict[str, str] = {}     # service -> node id that (re)starts it, if any
    starts: dict[str, list[str]] = {}
    creates: dict[str, list[str]] = {}
    for name in graph.order():
        if name not in chosen:
            continue
        svc = project.services[name]
        deps = _dependency_conditions(svc)
        force = options.force_recreate or (
            options.always_recreate_deps and bool(options.services)
            and name not in options.services)
        parents = _namespace_parents(svc)
        parents_recreated = sorted(p for p in parents if creates.get(p) and p in changed)
        # Creating a container needs its image and volumes; only starting it needs networks.
        requires = [*volume_ids.get(name, ()), *image_ids.get(name, ())]
        networks_needed = tuple(network_ids.get(name, ()))
        requires += [c for p in parents for c in creates.get(p, ())]
        waits, soft_waits = _wait_nodes(project, name, deps, chosen, starts, nodes, options)
        service_creates, service_starts = [], []
        current = list(observed.service_containers(name))
        scale = options.scale.get(name, svc.scale)
        if scale < 0:
            raise InvalidArgument(f'--scale {name}={scale}: must be 0 or more')
        keep, extra = current[:scale], current[scale:]
        for c in extra:
            nodes.append(PlanNode("container", "remove", c.name, name, c.number,
                                  f"scale {len(current)} -> {scale}", old=c.id))
        used = {c.number for c in keep}
        free = (n for n in range(1, scale + len(current) + 2) if n not in used)
        todo: list[tuple[int, ObservedContainer | None]] = [(c.number, c) for c in keep]
        todo += [(next(free), None) for _ in range(scale - len(keep))]
        if svc.container_name and scale > 1:
            raise InvalidArgument(f'service "{name}" sets container_name "{svc.container_name}"'
                                  f", so it cannot have {scale} replicas")
        expected_hash = t.config_hash(project, name)
        for number, old in sorted(todo, key=lambda x: x[0]):
            cname = t.container_name(project, svc, number)
            action, reason = _decide(project, svc, number, old, observed, expected_hash,
                                     force, parents_recreated, options)
            if action == "keep" and old is not None and image_ids.get(name) and \
                    not options.no_recreate:
                # Its image is built or pulled first: whether that yields a new image is
                # known only then, so the executor compares ids and recreates if they differ.
                _refresh(old, cname, name, number, options,
                         (*requires, *networks_needed, *waits), soft_waits, nodes,
                         service_starts)
                continue
            create_id = _id("container", action, cname) if action in (
                "create", "recreate") else None
            if create_id:
                data = {} if old is None or options.renew_anon_volumes else dict(
                    old.anonymous_volumes)
                nodes.append(PlanNode("container", action, cname, name, number, reason,
                                      after=tuple(requires), old=old.id if old else "",
                                      data=data))
                service_creates.append(create_id)
            needs_start = create_id is not None or (old is not None and not old.running)
            if options.no_start or not needs_start:
                continue
            start_reason = "" if create_id else f"was {old.status}"  # type: ignore[union-attr]
            nodes.append(PlanNode("container", "start", cname, name, number, start_reason,
                                  after=(*([create_id] if create_id else []),
                                         *networks_needed, *waits),
                                  soft=tuple(soft_waits), old=old.id if old else ""))
            service_starts.append(_id("container", "start", cname))
        # Dependents with `restart: true` restart when a dependency was (re)started.
        if not options.no_start:
            _restarts(project, name, deps, current[:scale], service_starts, changed, waits,
                      soft_waits, nodes)
        creates[name] = service_creates
        starts[name] = service_starts
        # A refresh may well change nothing: it does not restart `restart: true` dependents.
        sure = [i for i in service_starts if not i.startswith("container refresh ")]
        if sure or service_creates:
            changed[name] = (sure or service_creates)[0]
        one_shot = any(d.condition == "service_completed_successfully"
                       for other in project.services.values()
                       for dep, d in other.depends_on.items() if dep == name)
        if options.wait and not options.no_start and not one_shot:
            action = "healthy" if _has_healthcheck(svc) else "running"
            nodes.append(PlanNode("wait", action, name, name, reason="--wait",
                                  after=tuple(service_starts)))
    _orphans(project, observed, options.remove_orphans, nodes, warnings)
    return ordered(project.name, _prune_waits(nodes), warnings)


def _prune_waits(nodes: list[PlanNode]) -> list[PlanNode]:
    """Drops waits nothing needs (a dependency checked for a dependent with nothing to
    start), so an up-to-date project plans nothing at all."""
    used = {d for n in nodes for d in (*n.after, *n.soft)}
    return [n for n in nodes if n.kind != "wait" or n.id in used or "--wait" in n.reason]


def _refresh(old: ObservedContainer, cname: str, service: str, number: int,
             options: UpOptions, after: tuple[str, ...], soft: list[str],
             nodes: list[PlanNode], starts: list[str]) -> None:
    """A kept replica whose image is built or pulled in this plan: `container refresh`
    recreates it (keeping its anonymous volumes) if the image id then differs from its own,
    and starts the new one if the old one was running; a stopped one is started after."""
    data = {} if options.renew_anon_volumes else dict(old.anonymous_volumes)
    node = PlanNode("container", "refresh", cname, service, number,
                    "recreated if the image changed", after=after, soft=tuple(soft),
                    old=old.id, data=data)
    nodes.append(node)
    if old.running:
        starts.append(node.id)
    elif not options.no_start:
        nodes.append(PlanNode("container", "start", cname, service, number,
                              f"was {old.status}", after=(node.id, *after), soft=tuple(soft),
                              old=old.id))
        starts.append(_id("container", "start", cname))


def _has_healthcheck(svc: Service) -> bool:
    hc = svc.healthcheck
    return hc is not None and not hc.disable and bool(hc.test) and hc.test[0] != "NONE"


def _decide(project: Project, svc: Service, number: int, old: ObservedContainer | None,
            observed: Observed, expected_hash: str, force: bool, parents: list[str],
            options: UpOptions) -> tuple[str, str]:
    """("create" | "recreate" | "keep", reason) for one replica."""
    if old is None:
        return "create", ""
    if options.no_recreate:
        return "keep", ""
    if force:
        return "recreate", "forced"
    if old.config_hash != expected_hash:
        return "recreate", _what_changed(project, svc, number, old, options)
    image = t.default_image(project, svc)
    present = observed.images.get(image)
    if present and old.image == image and old.image_id and present != old.image_id:
        return "recreate", "image changed"
    if parents:
        return "recreate", f"{', '.join(parents)} recreated"
    return "keep", ""


_FIELD_NAMES = {"env": "environment", "cmd": "command", "resources": "resources",
                "working_dir": "working_dir", "restart": "restart"}


def _what_changed(project: Project, svc: Service, number: int, old: ObservedContainer,
                  options: UpOptions) -> str:
    """Which keys differ between the old container's request and the one we would make."""
    before = getattr(old.record, "request", None)
    if before is None:
        return "config changed"
    try:
        after = t.service_request(project, svc, number, anonymous_volumes=old.anonymous_volumes,
                                  source_dir=options.source_dir)
    except Error:  # an invalid new config is reported when it is created
        return "config changed"
    keys: list[str] = []
    for f in dataclasses.fields(after.config):
        if f.name in ("id", "labels", "image_id", "mounts"):
            continue
        a, b = getattr(before.config, f.name), getattr(after.config, f.name)
        if a == b:
            continue
        name = _FIELD_NAMES.get(f.name, f.name)
        if f.name == "env":
            diff = sorted(k for k in {*a, *b} if a.get(k) != b.get(k))
            keys.append(f"{name} ({', '.join(diff)})")
        else:
            keys.append(name)
    for f in dataclasses.fields(after):
        if f.name in ("config", "labels"):
            continue
        a, b = getattr(before, f.name), getattr(after, f.name)
        if f.name == "mounts":
            a, b = _normal_mounts(a), _normal_mounts(b)
        if a != b:
            keys.append({"mounts": "volumes"}.get(f.name, f.name))
    if not keys:
        return "config changed"
    return "config changed: " + ", ".join(keys)


def _normal_mounts(mounts: tuple) -> tuple:
    """Mounts with anonymous volume names blanked (they are kept, not configured)."""
    out = []
    for m in mounts:
        if m.type == "volume" and (not m.source or t.ANONYMOUS_RE.match(m.source)):
            m = dataclasses.replace(m, source="")
        out.append(dataclasses.replace(m, volume_labels={}))
    return tuple(sorted(out, key=lambda m: m.target))


def _wait_nodes(project: Project, name: str, deps: dict[str, tuple[str, bool, bool]],
                chosen: frozenset[str], starts: dict[str, list[str]], nodes: list[PlanNode],
                options: UpOptions) -> tuple[list[str], list[str]]:
    """Wait nodes for `name`'s dependencies; (hard ids, soft ids)."""
    hard, soft = [], []
    if options.no_start:
        return hard, soft
    for dep, (condition, required, _restart) in sorted(deps.items()):
        if dep not in chosen or dep not in project.services:
            continue
        action = {"service_started": "started", "service_healthy": "healthy",
                  "service_completed_successfully": "completed"}.get(condition)
        if action is None:
            raise InvalidArgument(f'service "{name}": depends_on.{dep}.condition '
                                  f'"{condition}" is not valid')
        if action == "started" and not starts.get(dep):
            continue  # already running: nothing to wait for
        node = PlanNode("wait", action, dep, dep, after=tuple(starts.get(dep, ())))
        nodes.append(node)
        (hard if required else soft).append(node.id)
    return hard, soft


def _restarts(project: Project, name: str, deps: dict[str, tuple[str, bool, bool]],
              current: list[ObservedContainer], own_starts: list[str],
              changed: dict[str, str], waits: list[str], soft: list[str],
              nodes: list[PlanNode]) -> None:
    triggers = sorted(d for d, (_c, _r, restart) in deps.items() if restart and d in changed)
    if not triggers:
        return
    touched = {n.target for n in nodes if n.service == name and n.kind == "container"}
    for c in current:
        if c.name in touched or not c.running:
            continue
        nodes.append(PlanNode("container", "restart", c.name, name, c.number,
                              f"{', '.join(triggers)} restarted",
                              after=(*waits, *(changed[d] for d in triggers)),
                              soft=tuple(soft), old=c.id))
        own_starts.append(_id("container", "restart", c.name))


def _networks(project: Project, observed: Observed, chosen: frozenset[str],
              nodes: list[PlanNode]) -> dict[str, list[str]]:
    """Network nodes; service -> ids of the network nodes it needs."""
    out: dict[str, list[str]] = {}
    for name in sorted(chosen):
        svc = project.services[name]
        if svc.network_mode:
            continue
        for key in svc.networks:
            net = project.networks.get(key)
            if net is None:
                raise InvalidArgument(f'service "{name}" uses network "{key}", which is '
                                      "not defined")
            seen = observed.networks.get(net.name)
            if seen is not None and (seen.complete or net.external):
                continue
            if net.external and seen is None:
                raise NotFound(f'network "{net.name}" is declared as external, but could '
                               "not be found (create it first)")
            nodes.append(PlanNode("network", "create", net.name, reason="" if seen is None
                                  else "left half-made by an interrupted run"))
            out.setdefault(name, []).append(_id("network", "create", net.name))
    return out


def _volumes(project: Project, observed: Observed, chosen: frozenset[str],
             nodes: list[PlanNode]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for name in sorted(chosen):
        for mount in project.services[name].volumes:
            if mount.type != "volume" or not mount.source:
                continue
            vol = project.volumes.get(mount.source)
            if vol is None or vol.name in observed.volumes:
                continue
            if vol.external:
                raise NotFound(f'volume "{vol.name}" is declared as external, but could not '
                               "be found (create it first)")
            nodes.append(PlanNode("volume", "create", vol.name))
            out.setdefault(name, []).append(_id("volume", "create", vol.name))
    return out


def orphans(project: Project | None, observed: Observed) -> list[ObservedContainer]:
    """Containers labelled with the project whose service the project no longer has."""
    if project is None:
        return []
    return [c for c in observed.containers if not c.oneoff and c.service not in
            project.services]


def _orphans(project: Project, observed: Observed, remove: bool, nodes: list[PlanNode],
             warnings: list[str]) -> None:
    found = orphans(project, observed)
    if not found:
        return
    if not remove:
        names = ", ".join(c.name for c in found)
        warnings.append(f"found orphan containers ({names}) for this project; if you removed "
                        "or renamed their service, run this command with --remove-orphans")
        return
    for c in found:
        nodes.append(PlanNode("container", "remove", c.name, c.service, c.number, "orphan",
                              old=c.id))


# ---- down --------------------------------------------------------------------------------

def down(project_name: str, observed: Observed, project: Project | None = None,
         options: DownOptions = DownOptions()) -> Plan:
    """Remove the project's containers (dependents before their dependencies), then its
    networks (never external ones), and with `volumes` its named and anonymous volumes,
    with `rmi` its images. Without a project (no Compose file), everything labelled."""
    nodes: list[PlanNode] = []
    warnings: list[str] = []
    graph = graphs.build(project) if project else None
    stray = {c.id for c in orphans(project, observed)}
    if stray and not options.remove_orphans:
        names = ", ".join(c.name for c in observed.containers if c.id in stray)
        warnings.append(f"found orphan containers ({names}) for this project; run with "
                        "--remove-orphans to remove them")
    removed: dict[str, list[str]] = {}
    anonymous: set[str] = set()
    for c in observed.containers:
        if c.id in stray and not options.remove_orphans:
            continue
        removed.setdefault(c.service, []).append(_id("container", "remove", c.name))
        anonymous.update(v for v in c.volumes if observed.volumes.get(v) and
                         observed.volumes[v].anonymous)
    all_removes = [i for ids in removed.values() for i in ids]
    users = graph.dependents() if graph else {}
    for c in observed.containers:
        if c.id in stray and not options.remove_orphans:
            continue
        after = [i for user in users.get(c.service, ()) for i in removed.get(user, ())]
        nodes.append(PlanNode("container", "remove", c.name, c.service, c.number,
                              "orphan" if c.id in stray else "", after=tuple(after), old=c.id))
    for name in sorted(_owned(project_name, observed.networks,
                              project.networks.values() if project else ())):
        nodes.append(PlanNode("network", "remove", name, after=tuple(all_removes)))
    if options.volumes:
        owned = _owned(project_name, observed.volumes, project.volumes.values() if project else ())
        for name in sorted(owned | anonymous):
            nodes.append(PlanNode("volume", "remove", name, after=tuple(all_removes)))
    if options.rmi:
        if options.rmi not in ("local", "all"):
            raise InvalidArgument(f'--rmi "{options.rmi}": expected local or all')
        for image in _project_images(project, observed, options.rmi):
            nodes.append(PlanNode("image", "remove", image, after=tuple(all_removes)))
    return ordered(project_name, nodes, warnings)


def _owned(name: str, seen: Mapping[str, ObservedNetwork | ObservedVolume],
           declared: Iterable[Network | Volume]) -> set[str]:
    """The names of the engine's networks/volumes that belong to project `name`: those
    labelled with it, and those it declares that exist, never external ones."""
    declared = list(declared)
    out = {x.name for x in seen.values() if x.labels.get(t.PROJECT) == name}
    out |= {d.name for d in declared if not d.external and d.name in seen}
    return out - {d.name for d in declared if d.external}


def _project_images(project: Project | None, observed: Observed, rmi: str) -> list[str]:
    refs: set[str] = set()
    if project:
        for svc in project.services.values():
            if rmi == "all" or not svc.image:
                refs.add(t.default_image(project, svc))
    else:
        refs |= {c.labels.get(t.IMAGE, c.image) for c in observed.containers}
    return sorted(r for r in refs if r in observed.images)


def stop(project: Project, observed: Observed, services: tuple[str, ...] = ()) -> Plan:
    """Stop the running containers (of `services`), dependents before their dependencies."""
    graph = graphs.build(project)
    users = graph.dependents()
    running = [c for c in observed.containers if c.running and not c.oneoff
               and (not services or c.service in services)]
    ids: dict[str, list[str]] = {}
    for c in running:
        ids.setdefault(c.service, []).append(_id("container", "stop", c.name))
    nodes = [PlanNode("container", "stop", c.name, c.service, c.number, old=c.id,
                      after=tuple(i for u in users.get(c.service, ()) for i in ids.get(u, ())))
             for c in running]
    return ordered(project.name, nodes)
