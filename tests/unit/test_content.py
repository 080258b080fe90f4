"""Content store: digests verified before blobs appear; mismatches leave nothing."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import pytest

from engine.content import ContentStore, parse_digest
from engine.errors import InvalidArgument, NotFound
from engine.layout import Layout


@pytest.fixture
def store(tmp_path: Path) -> ContentStore:
    return ContentStore(Layout.at(tmp_path))


def digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def test_write_read_exists_size_delete_iterate(store: ContentStore) -> None:
    blob = store.write(b"hello")
    assert blob.digest == digest(b"hello") and blob.size == 5
    assert store.exists(blob.digest) and store.size(blob.digest) == 5
    assert store.read(blob.digest) == b"hello"
    assert store.path(blob.digest) == store.layout.blobs / blob.digest[7:]
    other = store.write_stream(io.BytesIO(b"x" * 3_000_000), expected=digest(b"x" * 3_000_000))
    assert sorted(store) == sorted([blob.digest, other.digest])
    assert store.delete(blob.digest) and not store.delete(blob.digest)
    assert not store.exists(blob.digest)
    with pytest.raises(NotFound):
        store.read(blob.digest)
    assert list(store.layout.ingest.iterdir()) == []


def test_digest_mismatch_raises_and_leaves_nothing(store: ContentStore) -> None:
    wrong = digest(b"something else")
    with pytest.raises(InvalidArgument, match="digest mismatch"):
        store.write_stream(io.BytesIO(b"actual"), expected=wrong)
    with pytest.raises(InvalidArgument, match="size mismatch"):
        store.write_stream(io.BytesIO(b"actual"), expected=digest(b"actual"), expected_size=7)
    assert list(store) == []
    assert list(store.layout.ingest.iterdir()) == []


def test_aborted_ingest_leaves_nothing(store: ContentStore) -> None:
    with pytest.raises(RuntimeError), store.ingest() as ingest:
        ingest.write(b"partial")
        raise RuntimeError("reader failed")
    assert list(store.layout.ingest.iterdir()) == [] and list(store) == []


@pytest.mark.parametrize("bad", ["sha256:abc", "md5:" + "0" * 32, "sha256:" + "G" * 64, "",
                                 "sha256:" + "A" * 64])
def test_bad_digests_are_refused(store: ContentStore, bad: str) -> None:
    with pytest.raises(InvalidArgument, match="invalid digest"):
        parse_digest(bad)
    with pytest.raises(InvalidArgument):
        store.exists(bad)
