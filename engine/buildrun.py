"""A build step's sandbox: the image so far as an overlay with a fresh upper directory, and
RUN as a container of the engine's own runtime on it.

    with Sandbox(engine, layer_dirs) as box:
        code, tail = box.run(argv, env=..., user=..., workdir=..., output=print)
        box.finish()                    # unmount, drop runtime mount points from upper/
        layer = layerdiff.store_layer(box.upper, content)

The bundle is a directory under the engine's tmp/ that the builder manages itself (no
container record): config.json from `spec.build_spec`, the shim from `runtime.launch`, the
network from `prepare` (a namespace on the engine's default bridge, egress masqueraded),
"host", "none", or a named engine network. Everything is undone on exit, also on errors and
Ctrl-C: the process, its cgroup, the network namespace and veth, the mount, the directory.
"""

from __future__ import annotations

import collections
import os
import secrets
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from engine import snapshots

if TYPE_CHECKING:
    from engine import Engine
    from engine.containers import Container

# What the runtime creates in a root filesystem when the image lacks it (mount points);
# files before their directories, so empty ones can be dropped from the layer again.
RUNTIME_MOUNTPOINTS = ("etc/hosts", "etc/hostname", "etc/resolv.conf", "etc", "proc", "sys",
                       "dev")
TAIL_LINES = 10


class Sandbox:
    def __init__(self, engine: Engine, layer_dirs: Sequence[Path]) -> None:
        self.engine = engine
        self.id = secrets.token_hex(32)
        self.dir = engine.layout.tmp / f"build-{self.id[:16]}"
        self.layer_dirs = list(layer_dirs)
        self._present: set[str] = set()
        self._network: Container | None = None

    @property
    def rootfs(self) -> Path:
        return snapshots.rootfs_path(self.dir)

    @property
    def upper(self) -> Path:
        return self.dir / "upper"

    def __enter__(self) -> Sandbox:
        self.engine.layout.tmp.mkdir(parents=True, exist_ok=True)
        self.dir.mkdir(mode=0o700)
        try:
            dirs = self.layer_dirs
            if not dirs:  # FROM scratch: one empty lower directory
                empty = self.dir / "empty"
                empty.mkdir(mode=0o755)
                dirs = [empty]
            snapshots.mount_rootfs(self.dir, dirs)
            self._present = {p for p in RUNTIME_MOUNTPOINTS
                             if os.path.lexists(self.rootfs / p)}
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        from engine.layers import force_rmtree

        try:
            self._stop()
        finally:
            snapshots.unmount_rootfs(self.dir)
            force_rmtree(self.dir)

    def finish(self) -> None:
        """Unmounts the root and removes from upper/ the empty mount points the runtime had
        to create, so they do not end up in the layer."""
        snapshots.unmount_rootfs(self.dir)
        for rel in RUNTIME_MOUNTPOINTS:
            if rel in self._present:
                continue
            path = self.upper / rel
            try:
                if path.is_dir() and not path.is_symlink():
                    path.rmdir()  # only when empty
                elif path.is_file() and path.stat().st_size == 0:
                    path.unlink()
            except OSError:
                pass

    def mkdir(self, path: str) -> None:
        """Creates directory `path` (and its parents) in the root unless it exists, resolving
        the image's links inside the root."""
        from engine.prepare import in_root

        target = in_root(self.rootfs, path)
        if not target.exists():
            target.mkdir(parents=True, mode=0o755)

    # -- RUN -------------------------------------------------------------------------------

    def run(self, argv: Sequence[str], *, env: Mapping[str, str], user: str = "",
            workdir: str = "/", network: str | None = None,
            extra_hosts: Sequence[tuple[str, str]] = (), shm_size: int | None = None,
            output: Callable[[str], None] | None = None) -> tuple[int, list[str]]:
        """Runs argv to its end; (exit code, its last output lines). Output lines go to
        `output` as they come."""
        from engine import spec
        from engine.prepare import user_files
        from engine.runtime import launch, logs

        workdir = workdir or "/"
        self.mkdir(workdir)  # Docker creates a missing WORKDIR for RUN
        netns, etc = self._setup_network(network, extra_hosts)
        config = spec.ContainerConfig(
            id=self.id, entrypoint=("",), cmd=tuple(argv), env=dict(env), working_dir=workdir,
            user=user, hostname=self.id[:12], network=netns,
            resources=spec.Resources(shm_size=shm_size), hosts_file=etc["hosts"],
            resolv_conf=etc["resolv.conf"], hostname_file=etc["hostname"])
        document = spec.build_spec(config, {}, str(self.rootfs), *user_files(self.rootfs))
        launch.create(self.dir, document, spec.shim_options(config))
        launch.start(self.dir)
        tail: collections.deque[str] = collections.deque(maxlen=TAIL_LINES)
        for entry in logs.follow(self.dir):
            tail.append(entry.text.rstrip("\n"))
            if output is not None:
                output(entry.text)
        code = launch.wait(self.dir)
        self._stop()
        return code, list(tail)

    def _setup_network(self, network: str | None, extra_hosts: Sequence[tuple[str, str]]
                       ) -> tuple[str | None, dict[str, str]]:
        from engine import prepare
        from engine.containers import Container
        from engine.requests import CreateRequest, NetworkAttachment
        from engine.spec import ContainerConfig

        mode = network or "default"
        attachments: tuple[NetworkAttachment, ...] = ()
        if mode in ("default", "bridge"):
            mode = "bridge"
        elif mode not in ("host", "none"):
            attachments = (NetworkAttachment(network=mode),)
            mode = "bridge"
        request = CreateRequest(image="", config=ContainerConfig(id="", hostname=self.id[:12]),
                                network_mode=mode, networks=attachments,
                                extra_hosts=tuple(extra_hosts))
        container = Container(id=self.id, name=f"build-{self.id[:12]}", image="", image_id="",
                              created=0.0, labels={}, request=request, volumes=(),
                              directory=self.dir)
        self._network = container
        # prepare's steps 3 and 4 (network, /etc files), as a container start does them.
        path, ips, gateway = prepare.join_networks(self.engine, container)
        etc = prepare.etc_files(container, ips, gateway, self.dir)
        return path, etc

    def _stop(self) -> None:
        from engine import prepare
        from engine.runtime import launch

        if (self.dir / "config.json").exists():
            try:
                if launch.state(self.dir).running:
                    launch.stop(self.dir, 0)
            finally:
                launch.delete(self.dir)
        if self._network is not None:
            container, self._network = self._network, None
            prepare.leave_networks(self.engine, container)
