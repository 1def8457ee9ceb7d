"""One chunk and byte ranges of a sealed recording: exactly the bytes asked for, and
nothing at all when a chunk that would be read disagrees with its sealed leaf."""

from __future__ import annotations

import os

import pytest

from lucid.errors import Conflict, Gone, IntegrityError, NotFound
from lucid.integrity.leaves import ciphertext_digest_of
from lucid.integrity.partial import (
    ByteRange,
    chunk_ciphertext,
    chunk_plaintext,
    prepare_range,
    read_range,
    sealed_chunks,
)
from lucid.lifecycle.shred import shred_session
from lucid.runtime import Runtime
from lucid.storage import layout
from tests.lucid.conftest import CHUNK, incompressible, record, sealed_session

SIZE = 3 * CHUNK + 100


@pytest.fixture
def sealed(rt: Runtime) -> tuple[str, bytes]:
    data = incompressible(SIZE)
    return sealed_session(rt, data), data


def _read(rt: Runtime, sid: str, first: int, last: int) -> bytes:
    sealed = sealed_chunks(rt, sid)
    wanted = ByteRange(first, last, sealed.size)
    key = prepare_range(rt, sealed, wanted)
    return b"".join(read_range(rt, sealed, wanted, key))


@pytest.mark.parametrize(
    ("first", "last"),
    [(0, 0), (0, SIZE - 1), (CHUNK - 1, CHUNK), (5, 2 * CHUNK + 7), (3 * CHUNK, SIZE - 1),
     (CHUNK, 2 * CHUNK - 1), (SIZE - 1, SIZE - 1)],
)  # fmt: skip
def test_a_range_is_exactly_its_slice(
    rt: Runtime, sealed: tuple[str, bytes], first: int, last: int
) -> None:
    sid, data = sealed
    assert _read(rt, sid, first, last) == data[first : last + 1]


def test_a_chunk_is_its_plaintext_and_its_stored_ciphertext(
    rt: Runtime, sealed: tuple[str, bytes]
) -> None:
    sid, data = sealed
    leaf, plain = chunk_plaintext(rt, sid, 3)
    assert plain == data[3 * CHUNK :] and leaf.final
    whole, stored = chunk_ciphertext(rt, sid, 2)
    assert ciphertext_digest_of(stored) == whole.leaves[2].ciphertext_digest
    with pytest.raises(NotFound, match=r"chunks 0\.\.3, not 4"):
        chunk_plaintext(rt, sid, 4)


def test_a_tampered_chunk_stops_reads_that_touch_it_and_only_those(
    rt: Runtime, sealed: tuple[str, bytes]
) -> None:
    sid, data = sealed
    path = rt.settings.blobs_path / layout.encrypted_key(sid, 1)
    os.chmod(path, 0o600)
    path.write_bytes(path.read_bytes()[:-1] + b"\x00")
    with pytest.raises(IntegrityError, match="chunk 1: stored ciphertext") as caught:
        chunk_plaintext(rt, sid, 1)
    assert caught.value.chunk_index == 1
    with pytest.raises(IntegrityError, match="chunk 1"):
        _read(rt, sid, CHUNK - 1, CHUNK)
    assert _read(rt, sid, 0, CHUNK - 1) == data[:CHUNK]
    assert chunk_plaintext(rt, sid, 2)[1] == data[2 * CHUNK : 3 * CHUNK]


def test_unsealed_and_shredded_sessions_are_refused(rt: Runtime) -> None:
    sid, _ = record(rt, b"x" * 10)
    with pytest.raises(Conflict, match="not sealed"):
        chunk_plaintext(rt, sid, 0)
    shred_session(rt, sid, by="test")
    with pytest.raises(Gone):
        chunk_ciphertext(rt, sid, 0)
