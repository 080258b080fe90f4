"""A service's image, built or pulled: what to ask the engine's builder (pure), and how the
builder's and the registry client's progress events become lines of `compose.progress`.

`build_spec(project, service, ...)` turns a service's `build:` section into the keyword
arguments of `engine.build.build`, with Docker Compose's rules: the image is the service's
`image:` or `<project>-<service>` (`translate.default_image`, the one rule), `build.tags`
become extra tags, args with no value are left out, and the image carries the project and
service labels Compose puts on what it builds. Build features the engine lacks
(`additional_contexts`, `secrets`, `ssh`, a context that is a URL) are refused with one clear
message rather than built wrongly; cache hints (`cache_from`, `cache_to`) and `platforms` are
ignored (the builder has its own cache and builds for this host).

`BuildView` and `PullView` are progress callbacks, called from any thread (builds and pulls
run in the plan's worker threads): `Progress` serialises its callers itself.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from compose import translate as t
from compose.model import EMPTY
from engine.errors import Unavailable

if TYPE_CHECKING:
    from compose.model import Project, Service
    from compose.progress import Progress

_URL_PREFIXES = ("http://", "https://", "git://", "git@", "ssh://", "github.com/")


@dataclass(frozen=True, slots=True)
class BuildSpec:
    """The arguments of one `engine.build.build` call (less the engine, progress and
    registry). `image` is the name the service runs; `tags` includes it first."""

    service: str
    image: str
    context: str
    dockerfile: str = "Dockerfile"
    dockerfile_inline: str | None = None
    tags: tuple[str, ...] = ()
    build_args: Mapping[str, str] = EMPTY
    target: str | None = None
    labels: Mapping[str, str] = EMPTY
    network: str | None = None
    extra_hosts: tuple[tuple[str, str], ...] = ()
    shm_size: int | None = None
    no_cache: bool = False
    pull: bool = False

    def kwargs(self) -> dict[str, Any]:
        return dict(dockerfile_inline=self.dockerfile_inline, tags=self.tags,
                    build_args=dict(self.build_args), target=self.target,
                    labels=dict(self.labels), network=self.network,
                    extra_hosts=self.extra_hosts, shm_size=self.shm_size,
                    no_cache=self.no_cache, pull=self.pull)


def build_spec(project: Project, service: Service | str, *, no_cache: bool = False,
               pull: bool = False, build_args: Mapping[str, str] = EMPTY) -> BuildSpec:
    """What building `service` asks of the builder. `no_cache` and `pull` add to the
    service's own `build.no_cache`/`build.pull`; `build_args` (from the command line) win
    over `build.args`. Raises Unavailable for build features the engine does not have."""
    svc = project.service(service) if isinstance(service, str) else service
    b = svc.build
    if b is None:
        raise Unavailable(f'service "{svc.name}" has no build section')
    where = f'service "{svc.name}": build'
    if b.context.startswith(_URL_PREFIXES):
        raise Unavailable(f"{where}.context {b.context!r}: remote build contexts are not "
                          "supported (clone it and use the local directory)")
    for key, value in (("additional_contexts", b.additional_contexts),
                       ("secrets", b.secrets), ("ssh", b.ssh)):
        if value:
            raise Unavailable(f"{where}.{key} is not supported by shipyard's builder")
    image = t.default_image(project, svc)
    args = {k: v for k, v in b.args.items() if v is not None}
    args.update(build_args)
    labels = {**b.labels, t.PROJECT: project.name, t.SERVICE: svc.name}
    hosts = tuple((host, ip) for host, ips in b.extra_hosts.items() for ip in ips)
    dockerfile = b.dockerfile or "Dockerfile"
    if not os.path.isabs(dockerfile):
        dockerfile = os.path.join(b.context, dockerfile)
    return BuildSpec(
        service=svc.name, image=image, context=b.context, dockerfile=dockerfile,
        dockerfile_inline=b.dockerfile_inline, tags=tuple(dict.fromkeys((image, *b.tags))),
        build_args=args, target=b.target, labels=labels, network=b.network,
        extra_hosts=hosts, shm_size=b.shm_size, no_cache=no_cache or b.no_cache,
        pull=pull or b.pull)


def registry_or_default(factory: Callable[[], Any] | None) -> Callable[[], Any]:
    """`factory`, or one making a RegistryClient without credentials (loopback registries
    over plain HTTP, the rest over HTTPS)."""
    if factory is not None:
        return factory

    def make() -> Any:
        from engine.registry import RegistryClient

        return RegistryClient()

    return make


@dataclass
class BuildView:
    """Builder events -> progress. The service's line reads `Building` and, in the live
    (tty) view, the current step; plain output gets one line per step and per line of RUN
    output (`[web 2/3] COPY run.sh /`, `[web] ...`); json gets each step as an event."""

    progress: Progress
    service: str
    kind: str = "Service"
    last: str = field(default="", init=False)

    def __call__(self, event: Any) -> None:   # engine.build.BuildEvent, from any thread
        mode = self.progress.mode
        if mode == "quiet":
            return
        if event.kind == "step":
            # Unnamed stages are labelled `stage-N` by the builder; Docker shows no label.
            named = event.stage and not event.stage.startswith("stage-")
            stage = f"{event.stage} " if named else ""
            step = f"[{self.service} {stage}{event.step}/{event.total}] {event.text}"
            self.last = step
            if mode == "plain":
                self.progress.message(step)
            else:
                self.progress.event(self.kind, self.service, f"Building {step}")
        elif event.kind == "cached":
            if mode == "plain":
                self.progress.message(f"[{self.service}] CACHED")
        elif event.kind in ("output", "note") and mode == "plain":
            for line in event.text.rstrip("\n").splitlines():
                self.progress.message(f"[{self.service}] {line}")


@dataclass
class PullView:
    """Registry events -> progress: one line per layer (`Layer 3f4d90098f5b`) under the
    image's own line, Docker's statuses (`Downloading 1.2MB/3.4MB`, `Pull complete`,
    `Already exists`); finished states print in plain output, all update the live view.
    `quiet` (`--quiet-pull`) shows nothing but the image's own line."""

    progress: Progress
    quiet: bool = False

    def __call__(self, event: Any) -> None:   # engine.pull.PullEvent, from any thread
        if self.quiet:
            return
        from compose.progress import DONE, WORKING

        finished = event.status in ("Pull complete", "Already exists")
        text = event.status
        if event.status == "Downloading" and event.total:
            from compose.commands.image import human_size

            text = f"Downloading {human_size(event.current)}/{human_size(event.total)}"
        self.progress.event("Layer", event.id, text, DONE if finished else WORKING)

