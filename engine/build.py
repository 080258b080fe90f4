"""The Dockerfile builder: a context directory + a Dockerfile -> an image in the store.

    image = build(engine, "app/", tags=["app:dev"], build_args={"V": "1"}, progress=print)

Only the stages the target needs are built, in order. Each stage starts from an image (pulled
when missing, or always with `pull`), an earlier stage, or `scratch`. Instructions that
change files (RUN, COPY, ADD, WORKDIR) run in a `buildrun.Sandbox` (the layers so far as an
overlay with a fresh upper directory); the upper directory becomes the step's layer
(`layerdiff`), unless it is empty. The others change only the config (`buildconfig`).

Cache: each step's key chains its parent's key (from the base image id), the instruction
after substitution, the build args in scope, and for COPY/ADD a checksum of the sources
(`buildcache`). A hit reuses the layer and the time the step first ran, so an unchanged
rebuild yields the very same image id. `no_cache` skips lookups (results are still saved).

The result has an OCI config (history entries, rootfs diff_ids) and an OCI manifest, is
committed with `Images.commit` and tagged with `tags`. A failing RUN raises `BuildError`:
`RUN make: exit code 2` and the last lines of its output.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine import buildconfig, buildcontext
from engine import dockerfile as df
from engine.buildcache import BuildCache, Layer, step_key
from engine.errors import Error, InvalidArgument, NotFound

if TYPE_CHECKING:
    from engine import Engine
    from engine.images import Image

HISTORY_COMMENT = "shipyard build"


class BuildError(Error):
    """A build step failed (a RUN's non-zero exit): the step, the code, the last output."""


@dataclass(frozen=True, slots=True)
class BuildEvent:
    """Progress: `step` (an instruction starts), `cached`, `output` (RUN's text), `note`,
    `done` (text = image id)."""

    kind: str
    text: str
    stage: str = ""
    step: int = 0
    total: int = 0


Progress = Callable[[BuildEvent], None]


@dataclass
class _State:
    """A stage while it is built (internal, mutable)."""

    name: str
    key: str
    layers: list[Layer] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    platform: dict[str, str] = field(default_factory=dict)
    created: str = ""
    author: str = ""
    args: dict[str, str] = field(default_factory=dict)
    cmd_set: bool = False


def build(engine: Engine, context_dir: str | os.PathLike[str], dockerfile: str = "Dockerfile",
          *, dockerfile_inline: str | None = None, tags: Iterable[str] = (),
          build_args: Mapping[str, str] | None = None, target: str | None = None,
          labels: Mapping[str, str] | None = None, network: str | None = None,
          extra_hosts: Iterable[tuple[str, str]] = (), shm_size: int | None = None,
          no_cache: bool = False, pull: bool = False, progress: Progress | None = None,
          registry: Callable[[], Any] | None = None) -> Image:
    """Builds and returns the image (see module doc). `dockerfile` is relative to the
    context; `registry` makes a `RegistryClient` for base images that must be pulled."""
    from engine import reference

    context = Path(context_dir).absolute()
    if not context.is_dir():
        raise NotFound(f"build context {context} is not a directory")
    if dockerfile_inline is not None:
        text, filename, df_path = dockerfile_inline, "Dockerfile", None
    else:
        df_path = Path(dockerfile) if os.path.isabs(dockerfile) else context / dockerfile
        filename = dockerfile
        try:
            text = df_path.read_text()
        except FileNotFoundError:
            raise NotFound(f"no Dockerfile at {df_path}") from None
        except (OSError, UnicodeDecodeError) as error:
            raise InvalidArgument(f"cannot read the Dockerfile {df_path} "
                                  f"({getattr(error, 'strerror', None) or error})") from None
    tag_list = [str(reference.parse(t)) for t in tags]  # bad tags fail before any work
    parsed = df.parse(text, filename)
    builder = _Builder(engine, context, parsed, dict(build_args or {}), network,
                       tuple(extra_hosts), shm_size, no_cache, pull, progress, registry,
                       buildcontext.load_ignore(context, str(df_path) if df_path else None))
    return builder.run(target, dict(labels or {}), tag_list)


class _Builder:
    def __init__(self, engine: Engine, context: Path, parsed: df.Dockerfile,
                 build_args: dict[str, str], network: str | None,
                 extra_hosts: tuple[tuple[str, str], ...], shm_size: int | None,
                 no_cache: bool, pull: bool, progress: Progress | None,
                 registry: Callable[[], Any] | None, ignore: buildcontext.Ignore) -> None:
        self.engine = engine
        self.context = context
        self.df = parsed
        self.build_args = build_args
        self.network = network
        self.extra_hosts = extra_hosts
        self.shm_size = shm_size
        self.no_cache = no_cache
        self.pull = pull
        self.progress = progress
        self.registry = registry
        self.ignore = ignore
        self.cache = BuildCache(engine.store, engine.content)
        self.used_args: set[str] = set()
        self.meta_args = self._meta_args()
        self.states: dict[int, _State] = {}

    def emit(self, kind: str, text: str, stage: str = "", step: int = 0, total: int = 0) -> None:
        if self.progress is not None:
            self.progress(BuildEvent(kind, text, stage, step, total))

    # -- stages --------------------------------------------------------------------------

    def _meta_args(self) -> dict[str, str]:
        from engine.imageformat import host_platform

        plat = host_platform()
        values = {"TARGETPLATFORM": str(plat), "TARGETOS": plat.os,
                  "TARGETARCH": plat.architecture, "TARGETVARIANT": plat.variant,
                  "BUILDPLATFORM": str(plat), "BUILDOS": plat.os,
                  "BUILDARCH": plat.architecture, "BUILDVARIANT": plat.variant}
        for ins in self.df.global_args:
            for name, default in self._arg_pairs(ins, values):
                if name in self.build_args:
                    values[name] = self.build_args[name]
                    self.used_args.add(name)
                elif default is not None:
                    values[name] = default
                else:
                    values.setdefault(name, "")
        return values

    def _arg_pairs(self, ins: df.Instruction, env: Mapping[str, str]
                   ) -> list[tuple[str, str | None]]:
        out = []
        for item in df.words(ins, ins.args, env, self.df.filename):
            name, sep, default = item.partition("=")
            if not name or not (name[0].isalpha() or name[0] == "_"):
                raise self.df.error(ins, f"ARG: invalid name {name!r}")
            out.append((name, default if sep else None))
        return out

    def run(self, target: str | None, labels: dict[str, str], tags: list[str]) -> Image:
        stages = self.df.stages
        if target is not None:
            chosen = self.df.stage(target)
            if chosen is None:
                raise InvalidArgument(f'target stage "{target}" could not be found')
        else:
            chosen = stages[-1]
        needed = self._needed(chosen)
        for stage in stages:
            if stage.index in needed:
                self.states[stage.index] = self._stage(stage)
        unused = sorted(set(self.build_args) - self.used_args - set(self.meta_args))
        if unused:
            self.emit("note", f"[Warning] One or more build-args {unused} were not consumed")
        state = self.states[chosen.index]
        if labels:
            state.config["Labels"] = {**(state.config.get("Labels") or {}), **labels}
        image = self._commit(state, tags)
        self.emit("done", image.id)
        return image

    def _base_of(self, stage: df.Stage) -> str:
        ins = df.Instruction("FROM", stage.base, stage.line)
        return df.word(ins, stage.base, self.meta_args, self.df.filename)

    def _needed(self, stage: df.Stage) -> set[int]:
        out: set[int] = set()
        todo = [stage]
        while todo:
            current = todo.pop()
            if current.index in out:
                continue
            out.add(current.index)
            refs = [self._base_of(current)]
            refs += [df.word(i, i.flag("from") or "", self.meta_args, self.df.filename)
                     for i in current.instructions if i.keyword == "COPY" and i.flag("from")]
            for ref in refs:
                other = self.df.stage(ref)
                if other is not None and other.index < current.index:
                    todo.append(other)
        return out

    def _stage(self, stage: df.Stage) -> _State:
        base = self._base_of(stage)
        total = len(stage.instructions) + 1
        self.emit("step", f"FROM {base}" + (f" AS {stage.name}" if stage.name else ""),
                  stage.label, 1, total)
        if stage.platform:
            self.emit("note", f"{self.df.filename}:{stage.line}: FROM --platform="
                      f"{stage.platform} is ignored (building for this host)")
        state = self._from(base, stage)
        for number, ins in enumerate(stage.instructions, start=2):
            self.emit("step", ins.original, stage.label, number, total)
            self._instruction(state, ins)
        return state

    def _from(self, base: str, stage: df.Stage) -> _State:
        other = self.df.stage(base)
        if other is not None and other.index < stage.index:
            prev = self.states[other.index]
            return _State(stage.label, prev.key, list(prev.layers), json.loads(
                json.dumps(prev.config)), list(prev.history), dict(prev.platform),
                prev.created, prev.author)
        if base == "scratch":
            from engine.imageformat import host_platform
            plat = host_platform()
            platform = {"architecture": plat.architecture, "os": plat.os}
            if plat.variant:
                platform["variant"] = plat.variant
            return _State(stage.label, step_key("scratch"), platform=platform)
        image = self._image(base, stage.line)
        config = self.engine.images.config(image.id)
        container = dict(config.get("config") or {})
        if container.get("OnBuild"):
            self.emit("note", f"{base}: its ONBUILD triggers are not run (recorded only)")
            container["OnBuild"] = None
        layers = [Layer(ref.digest, _oci(ref.media_type), ref.size, ref.diff_id)
                  for ref in image.layers]
        platform = {k: config[k] for k in ("architecture", "os", "variant") if config.get(k)}
        return _State(stage.label, step_key("image", image.id), layers, container,
                      list(config.get("history") or []), platform,
                      config.get("created", ""), config.get("author", ""))

    def _image(self, ref: str, line: int) -> Image:
        images = self.engine.images
        if not self.pull:
            try:
                return images.resolve(ref)
            except NotFound:
                pass
        if self.registry is None:
            raise NotFound(f"{self.df.filename}:{line}: image {ref!r} is not in the store "
                           "(and no registry client was given to pull it)")
        from engine.pull import pull

        self.emit("note", f"pulling {ref}")
        return pull(ref, images, self.registry)

    # -- instructions --------------------------------------------------------------------

    def _env(self, state: _State) -> dict[str, str]:
        """What `$VAR` means now: build args in scope, then ENV (which wins)."""
        return {**state.args, **buildconfig.env_map(state.config)}

    def _instruction(self, state: _State, ins: df.Instruction) -> None:
        key = ins.keyword
        env = self._env(state)
        if key == "ARG":
            for name, default in self._arg_pairs(ins, env):
                if name in self.build_args:
                    value = self.build_args[name]
                    self.used_args.add(name)
                elif default is not None:
                    value = default
                else:
                    value = self.meta_args.get(name, "")
                state.args[name] = value
            state.key = step_key(state.key, "ARG", sorted(state.args.items()))
            return
        if key in buildconfig.METADATA:
            state.config = buildconfig.apply(state.config, ins, env, self.df.filename,
                                             cmd_set=state.cmd_set)
            state.cmd_set = state.cmd_set or key == "CMD"
            if key == "MAINTAINER":
                state.author = ins.args.strip()
            text = _describe(ins, env, self.df.filename)
            state.key = step_key(state.key, text)
            self._history(state, text, None)
            return
        if key == "WORKDIR":
            path = buildconfig.workdir(state.config.get("WorkingDir") or "/", ins, env,
                                       self.df.filename)
            state.config["WorkingDir"] = path
            self._fs_step(state, ins, f"WORKDIR {path}", [path],
                          lambda box: box.mkdir(path))
            return
        if key == "RUN":
            self._run(state, ins)
            return
        if key in ("COPY", "ADD"):
            from engine.buildsteps import copy_step

            copy_step(self, state, ins)
            return
        raise self.df.error(ins, f"{key} is not supported")

    def _run(self, state: _State, ins: df.Instruction) -> None:
        argv = buildconfig.command_argv(ins, state.config)
        network = ins.flag("network") or self.network
        run_env = self._env(state)
        user = state.config.get("User") or ""
        workdir = state.config.get("WorkingDir") or "/"
        shown = " ".join(argv[len(buildconfig.shell_of(state.config)):]) \
            if ins.json_args() is None else json.dumps(argv)

        def act(box: Any) -> None:
            code, tail = box.run(argv, env=run_env, user=user, workdir=workdir,
                                 network=network, extra_hosts=self.extra_hosts,
                                 shm_size=self.shm_size,
                                 output=lambda text: self.emit("output", text))
            if code != 0:
                lines = "\n".join(tail)
                raise BuildError(f"{self.df.filename}:{ins.line}: RUN {shown}: exit code "
                                 f"{code}" + (f"\n{lines}" if lines else ""))

        self._fs_step(state, ins, f"RUN {shown}",
                      [argv, sorted(state.args.items()), user, workdir, network or ""], act)

    def _fs_step(self, state: _State, ins: df.Instruction, text: str, key_parts: list,
                 act: Callable[[Any], None]) -> None:
        """A step that may change files: a cache hit, or `act` in a sandbox + its diff."""
        from engine import layerdiff
        from engine.buildrun import Sandbox
        from engine.images import now_rfc3339

        key = step_key(state.key, text, *key_parts)
        entry = None if self.no_cache else self.cache.get(key)
        if entry is not None:
            self.emit("cached", "CACHED")
        else:
            with Sandbox(self.engine, self._layer_dirs(state.layers)) as box:
                act(box)
                box.finish()
                layer = None
                if not layerdiff.is_empty(box.upper):
                    blob = layerdiff.store_layer(box.upper, self.engine.content)
                    layer = Layer(blob.digest, blob.media_type, blob.size, blob.diff_id)
            entry = self.cache.put(key, layer, now_rfc3339())
        state.key = key
        state.created = entry.created
        if entry.layer is not None:
            state.layers.append(entry.layer)
        self._history(state, text, entry.layer)

    def _history(self, state: _State, text: str, layer: Layer | None) -> None:
        item: dict[str, Any] = {"created": state.created, "created_by": text,
                                "comment": HISTORY_COMMENT}
        if layer is None:
            item["empty_layer"] = True
        state.history.append(item)

    def _layer_dirs(self, layers: list[Layer]) -> list[Path]:
        from engine import layers as layerstore

        chain = layerstore.ensure_chain(self.engine.content, [x.digest for x in layers],
                                        [x.diff_id for x in layers])
        return [layer.diff for layer in chain]

    # -- result --------------------------------------------------------------------------

    def _commit(self, state: _State, tags: list[str]) -> Image:
        from engine.imagecommit import store_image
        from engine.imageformat import Descriptor

        config: dict[str, Any] = {"created": state.created or "1970-01-01T00:00:00Z"}
        if state.author:
            config["author"] = state.author
        config.update(state.platform)
        config["config"] = state.config
        config["rootfs"] = {"type": "layers", "diff_ids": [x.diff_id for x in state.layers]}
        config["history"] = state.history
        return store_image(self.engine.images, config,
                           [Descriptor(x.media_type, x.digest, x.size) for x in state.layers],
                           tags)


def _oci(media_type: str) -> str:
    from engine.imageformat import convert_media_type

    return convert_media_type(media_type, "oci")


def _describe(ins: df.Instruction, env: Mapping[str, str], filename: str) -> str:
    """The instruction as the cache and the history see it: variables substituted where
    Docker substitutes them."""
    if ins.keyword in ("CMD", "ENTRYPOINT", "SHELL", "HEALTHCHECK", "ONBUILD", "MAINTAINER"):
        return f"{ins.keyword} {ins.args}"
    return f"{ins.keyword} {' '.join(df.words(ins, ins.args, env, filename))}"
