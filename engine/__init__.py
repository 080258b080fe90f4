"""Shipyard's embedded container engine. It knows nothing about Compose.

`Engine(root)` is the facade: `engine.images`, `engine.containers`, `engine.networks`,
`engine.volumes`. Each part is built on first use, so a command pays only for what it
touches (the registry client's httpx, for one, costs ~100 ms to import).
"""

from __future__ import annotations

import os
from functools import cached_property
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from engine.containers import Containers
    from engine.content import ContentStore
    from engine.images import Images
    from engine.layout import Layout
    from engine.networks import Networks
    from engine.store import Store
    from engine.volumes import Volumes


class Engine:
    """One engine root. Cheap to construct; parts are created lazily."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        from engine.layout import Layout

        self.layout: Layout = Layout.at(root)

    @cached_property
    def store(self) -> Store:
        from engine.store import Store

        self.layout.ensure()
        return Store(self.layout.database)

    @cached_property
    def content(self) -> ContentStore:
        from engine.content import ContentStore

        return ContentStore(self.layout)

    @cached_property
    def images(self) -> Images:
        from engine.images import Images

        return Images(self.layout, self.store)

    @cached_property
    def volumes(self) -> Volumes:
        from engine.volumes import Volumes

        return Volumes(self.layout, self.store,
                       users=lambda name: self.containers.using_volume(name))

    @cached_property
    def networks(self) -> Networks:
        from engine.networks import Networks

        return Networks(self.layout, self.store)

    @cached_property
    def containers(self) -> Containers:
        from engine.containers import Containers

        return Containers(self)
