"""The content-addressed blob store: dedup, ranges, limits and crash safety."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from fleet.store.blobs import READ_CHUNK, BlobStore
from fleet.store.errors import BlobNotFound, BlobTooLarge, RangeNotSatisfiable

DATA = bytes(range(256)) * 1000  # spans several read chunks
SHA = hashlib.sha256(DATA).hexdigest()


@pytest.fixture
def store(tmp_path: Path) -> BlobStore:
    return BlobStore(tmp_path / "blobs")


def _chunks(data: bytes, size: int = 4096) -> Iterator[bytes]:
    for offset in range(0, len(data), size):
        yield data[offset : offset + size]


def _stored_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


def test_a_blob_is_stored_under_its_sha256(store: BlobStore, tmp_path: Path) -> None:
    assert store.put_stream(_chunks(DATA), max_length=len(DATA)) == (SHA, len(DATA))
    assert store.exists(SHA)
    assert store.length(SHA) == len(DATA)
    assert _stored_files(tmp_path / "blobs") == [tmp_path / "blobs" / SHA[:2] / SHA[2:4] / SHA]


def test_the_same_content_is_stored_once(store: BlobStore, tmp_path: Path) -> None:
    store.put_stream(_chunks(DATA), max_length=len(DATA))
    assert store.put_stream(_chunks(DATA, size=999), max_length=len(DATA)) == (SHA, len(DATA))
    assert len(_stored_files(tmp_path / "blobs")) == 1


def test_an_empty_blob_is_a_blob(store: BlobStore) -> None:
    sha, length = store.put_stream(iter(()), max_length=0)
    assert (sha, length) == (hashlib.sha256(b"").hexdigest(), 0)
    assert b"".join(store.open_range(sha)) == b""


def test_ranges_read_like_slices(store: BlobStore) -> None:
    store.put_stream(_chunks(DATA), max_length=len(DATA))
    assert b"".join(store.open_range(SHA)) == DATA
    assert b"".join(store.open_range(SHA, 100, 200)) == DATA[100:200]
    assert (
        b"".join(store.open_range(SHA, READ_CHUNK - 1, READ_CHUNK + 1))
        == DATA[READ_CHUNK - 1 : READ_CHUNK + 1]
    )
    assert b"".join(store.open_range(SHA, len(DATA) - 10)) == DATA[-10:]
    assert b"".join(store.open_range(SHA, 5, len(DATA) + 100)) == DATA[5:]


@pytest.mark.parametrize(("start", "end"), [(-1, 10), (10, 5), (len(DATA) + 1, None)])
def test_a_range_outside_the_blob_is_refused_before_reading(
    store: BlobStore, start: int, end: int | None
) -> None:
    store.put_stream(_chunks(DATA), max_length=len(DATA))
    with pytest.raises(RangeNotSatisfiable):
        store.open_range(SHA, start, end)


def test_a_stream_over_the_limit_is_refused_and_nothing_is_kept(
    store: BlobStore, tmp_path: Path
) -> None:
    consumed = []

    def endless() -> Iterator[bytes]:
        while True:
            consumed.append(1)
            yield b"\0" * 1024

    with pytest.raises(BlobTooLarge):
        store.put_stream(endless(), max_length=10_000)
    assert len(consumed) == 10  # stopped at the first chunk past the limit
    assert _stored_files(tmp_path / "blobs") == []


def test_a_stream_that_breaks_midway_leaves_no_file(store: BlobStore, tmp_path: Path) -> None:
    def crashing() -> Iterator[bytes]:
        yield DATA[:5000]
        raise ConnectionResetError("client went away")

    with pytest.raises(ConnectionResetError):
        store.put_stream(crashing(), max_length=len(DATA))
    assert _stored_files(tmp_path / "blobs") == []
    assert not store.exists(hashlib.sha256(DATA[:5000]).hexdigest())


@pytest.mark.parametrize("name", ["0" * 64, "../" * 20 + "etc", "A" * 64, SHA[:63]])
def test_unknown_or_malformed_names_are_not_found(store: BlobStore, name: str) -> None:
    store.put_stream(_chunks(DATA), max_length=len(DATA))
    assert not store.exists(name)
    with pytest.raises(BlobNotFound):
        store.length(name)
    with pytest.raises(BlobNotFound):
        store.open_range(name)
