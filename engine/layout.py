"""Every on-disk path the engine uses, derived from one root directory.

The root (default /var/lib/shipyard, `SHIPYARD_ROOT` overrides; the CLI passes it in) holds
persistent state. Runtime state that must not survive a reboot (netns bind mounts, sockets,
pid files) lives under a run directory in /run that is unique per root, so two engines with
different roots (e.g. tests side by side) never share one.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from engine import sha256

DEFAULT_ROOT = "/var/lib/shipyard"
RUN_BASE = "/run/shipyard"


@dataclass(frozen=True, slots=True)
class Layout:
    """Every path of one engine root."""

    root: Path
    # Per-root runtime directory in /run (tmpfs on most hosts), named by a digest of the
    # root: made once here (a release asks for it ~5 times per container).
    run: Path = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "run", Path(RUN_BASE) / sha256.hexdigest(str(self.root))[:12])

    @classmethod
    def at(cls, root: str | os.PathLike[str]) -> Layout:
        return cls(Path(root).absolute())

    @property
    def database(self) -> Path:
        return self.root / "shipyard.db"

    @property
    def blobs(self) -> Path:
        return self.root / "blobs" / "sha256"

    @property
    def ingest(self) -> Path:
        return self.root / "ingest"

    @property
    def layers(self) -> Path:
        """Unpacked layers, one directory per layer chain id (hex)."""
        return self.root / "layers"

    @property
    def containers(self) -> Path:
        return self.root / "containers"

    def container(self, container_id: str) -> Path:
        return self.containers / container_id

    @property
    def volumes(self) -> Path:
        return self.root / "volumes"

    def volume(self, name: str) -> Path:
        return self.volumes / name

    @property
    def tmp(self) -> Path:
        """Scratch space on the same filesystem as the root (for atomic renames)."""
        return self.root / "tmp"

    @property
    def netns(self) -> Path:
        return self.run / "netns"

    def ensure(self) -> Layout:
        """Creates the persistent directory skeleton (idempotent) and returns self. The run
        directory is made by the parts that need it (netns, DNS, locks), so read-only
        commands such as `ps` leave nothing in /run."""
        for path in (self.root, self.blobs, self.ingest, self.layers, self.containers,
                     self.volumes, self.tmp):
            path.mkdir(parents=True, exist_ok=True, mode=0o711)
        return self
