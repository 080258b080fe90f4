"""The build cache: step key -> the layer that step made (or "no change"), in the store.

A step's key is a digest over its parent's key (the chain starts at the base image id), the
instruction after substitution, the build args in scope, and for COPY/ADD a checksum of the
sources. An entry is only trusted while its layer blob is still in the content store (image
removal may delete it); a stale entry reads as a miss and is dropped.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

from engine.content import ContentStore
from engine.store import Store

SCHEMA = """
CREATE TABLE IF NOT EXISTS build_cache (
    key TEXT PRIMARY KEY,
    layer TEXT NOT NULL,
    created TEXT NOT NULL
)
"""


@dataclass(frozen=True, slots=True)
class Layer:
    """One layer of an image being built (as the manifest and config will list it)."""

    digest: str
    media_type: str
    size: int
    diff_id: str


@dataclass(frozen=True, slots=True)
class Entry:
    """One cached build step: its key and the layer it made."""

    key: str
    layer: Layer | None        # None: the step changed no file
    created: str               # when the step first ran (keeps rebuilt configs identical)


def step_key(parent: str, *parts: object) -> str:
    data = json.dumps([parent, *parts], sort_keys=True, separators=(",", ":"))
    return "sha256:" + hashlib.sha256(data.encode()).hexdigest()


class BuildCache:
    def __init__(self, store: Store, content: ContentStore) -> None:
        self.store = store
        self.content = content
        store.ensure_schema(SCHEMA)

    def get(self, key: str) -> Entry | None:
        rows = self.store.query("SELECT layer, created FROM build_cache WHERE key = ?", (key,))
        if not rows:
            return None
        raw = json.loads(rows[0]["layer"])
        layer = Layer(**raw) if raw else None
        if layer is not None and not self.content.exists(layer.digest):
            self.drop(key)
            return None
        return Entry(key, layer, rows[0]["created"])

    def put(self, key: str, layer: Layer | None, created: str) -> Entry:
        raw = None if layer is None else {"digest": layer.digest, "media_type": layer.media_type,
                                          "size": layer.size, "diff_id": layer.diff_id}
        with self.store.tx() as conn:
            conn.execute("INSERT OR REPLACE INTO build_cache(key, layer, created) VALUES (?,?,?)",
                         (key, json.dumps(raw), created))
        return Entry(key, layer, created)

    def drop(self, key: str) -> None:
        with self.store.tx() as conn:
            conn.execute("DELETE FROM build_cache WHERE key = ?", (key,))

    def clear(self) -> int:
        with self.store.tx() as conn:
            return conn.execute("DELETE FROM build_cache").rowcount
