"""COPY and ADD steps of the builder: sources from the context (minus `.dockerignore`), an
earlier stage or an image (`--from`, mounted read-only while the step runs), a checksum of
them for the cache key, and the copy itself (`buildcopy`). ADD also unpacks local tar
archives; remote URLs are refused (download in a RUN step, or into the context).
"""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine import buildcontext
from engine import dockerfile as df
from engine.errors import InvalidArgument, NotFound

if TYPE_CHECKING:
    from engine.build import _Builder, _State


def copy_step(builder: _Builder, state: _State, ins: df.Instruction) -> None:
    from engine.buildcopy import Copier, resolve_owner

    filename = builder.df.filename
    env = builder._env(state)
    argv = ins.json_args()
    items = [df.word(ins, a, env, filename) for a in argv] if argv is not None \
        else df.words(ins, ins.args, env, filename)
    if len(items) < 2:
        raise builder.df.error(ins, f"{ins.keyword} requires at least two arguments: "
                               "SOURCE... DEST")
    patterns, dest = items[:-1], items[-1]
    what = f"{filename}:{ins.line}: {ins.keyword}"
    for pattern in patterns:
        if "://" in pattern or pattern.startswith("git@"):
            raise InvalidArgument(f"{what}: remote sources ({pattern}) are not supported; "
                                  "download it in a RUN step or into the build context")
    chown = ins.flag("chown")
    chown = df.word(ins, chown, env, filename) if chown else None
    chmod_text = ins.flag("chmod")
    chmod = None
    if chmod_text:
        try:
            chmod = int(chmod_text, 8)
            if not 0 <= chmod <= 0o7777:
                raise ValueError(chmod_text)
        except ValueError:
            raise InvalidArgument(f"{what}: --chmod={chmod_text}: expected an octal mode such "
                                  "as 755") from None
    source_from = ins.flag("from")
    if source_from:
        source_from = df.word(ins, source_from, {**builder.meta_args, **env}, filename)
    workdir = state.config.get("WorkingDir") or "/"
    with _source_root(builder, state, source_from, ins) as (root, ignore, origin):
        sources: list[buildcontext.Source] = []
        for pattern in patterns:
            try:
                found = buildcontext.select(root, pattern, ignore, what)
            except NotFound as error:
                raise NotFound(f"{error}" if source_from is None else
                               f'{what}: "{pattern}" not found in {source_from}') from None
            sources += found
        if not sources:
            raise NotFound(f"{what}: no source files were specified ({' '.join(patterns)} "
                           "matched nothing)")
        digest = buildcontext.checksum(sources, ignore)
        flags = [f"--{k}={v}" for k, v in ins.flags if k in ("from", "chown", "chmod")]
        text = " ".join([ins.keyword, *flags, *patterns, dest])

        def act(box: Any) -> None:
            owner = resolve_owner(chown, box.rootfs, what) if chown else None
            copier = Copier(box.rootfs, owner=owner, chmod=chmod, what=what,
                            tmp=builder.engine.layout.tmp)
            copier.copy(sources, dest, workdir, ignore, unpack_archives=ins.keyword == "ADD")

        builder._fs_step(state, ins, text, [digest, origin, workdir, chown or "",
                                            chmod_text or ""], act)


@contextlib.contextmanager
def _source_root(builder: _Builder, state: _State, source_from: str | None,
                 ins: df.Instruction) -> Iterator[tuple[Path, buildcontext.Ignore, str]]:
    """(root to take sources from, the ignore rules there, a name for the cache key)."""
    if not source_from:
        yield builder.context, builder.ignore, "context"
        return
    from engine import snapshots
    from engine.layers import force_rmtree

    other = builder.df.stage(source_from)
    if other is not None:
        if other.index not in builder.states:
            raise builder.df.error(ins, f'{ins.keyword} --from={source_from}: stage '
                                   f'"{source_from}" is not built before this one')
        other_state = builder.states[other.index]
        dirs = builder._layer_dirs(other_state.layers)
        origin = f"stage:{other_state.key}"
    else:
        image = builder._image(source_from, ins.line)
        dirs = builder.engine.images.layer_dirs(image.id)
        origin = f"image:{image.id}"
    layout = builder.engine.layout
    layout.tmp.mkdir(parents=True, exist_ok=True)
    work = layout.tmp / f"from-{secrets.token_hex(8)}"
    work.mkdir(mode=0o700)
    target = work / "root"
    try:
        if not dirs:
            target.mkdir()
            yield target, buildcontext.Ignore(), origin
            return
        snapshots.mount_readonly(dirs, target)
        try:
            yield target, buildcontext.Ignore(), origin
        finally:
            snapshots.unmount(target)
    finally:
        force_rmtree(work)
