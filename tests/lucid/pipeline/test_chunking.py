from __future__ import annotations

import io
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lucid.errors import InvalidInput
from lucid.pipeline.chunking import Chunk, iter_chunks


class ShortReads(io.RawIOBase):
    """A socket-like stream: every read returns at most `step` bytes."""

    def __init__(self, data: bytes, step: int) -> None:
        self._data, self._pos, self._step = data, 0, step

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        take = min(len(buffer), self._step, len(self._data) - self._pos)
        buffer[:take] = self._data[self._pos : self._pos + take]
        self._pos += take
        return take


class ReadOnly:
    """A wsgi-input-like object with only read(), returning short reads."""

    def __init__(self, data: bytes, step: int) -> None:
        self._data, self._pos, self._step = data, 0, step

    def read(self, size: int = -1) -> bytes:
        take = min(size, self._step)
        out = self._data[self._pos : self._pos + take]
        self._pos += len(out)
        return out


def check_chunks(chunks: list[Chunk], data: bytes, chunk_size: int) -> None:
    assert b"".join(c.data for c in chunks) == data
    assert [c.index for c in chunks] == list(range(len(chunks)))
    assert [c.final for c in chunks] == [False] * (len(chunks) - 1) + [True]
    assert all(len(c.data) == chunk_size for c in chunks[:-1])
    if data:
        assert 1 <= len(chunks[-1].data) <= chunk_size
    assert len(chunks) == max(1, -(-len(data) // chunk_size))


@settings(max_examples=200, deadline=None)
@given(data=st.binary(max_size=300), chunk_size=st.integers(1, 64))
def test_chunks_reassemble_and_are_well_formed(data: bytes, chunk_size: int) -> None:
    check_chunks(list(iter_chunks(io.BytesIO(data), chunk_size)), data, chunk_size)


@settings(max_examples=100, deadline=None)
@given(data=st.binary(max_size=300), chunk_size=st.integers(1, 64), step=st.integers(1, 70))
def test_short_reads_give_the_same_chunks(data: bytes, chunk_size: int, step: int) -> None:
    expected = list(iter_chunks(io.BytesIO(data), chunk_size))
    assert list(iter_chunks(ShortReads(data, step), chunk_size)) == expected  # type: ignore[arg-type]
    assert list(iter_chunks(ReadOnly(data, step), chunk_size)) == expected  # type: ignore[arg-type]


def test_empty_stream_yields_one_empty_final_chunk() -> None:
    assert list(iter_chunks(io.BytesIO(b""), 8)) == [Chunk(0, b"", final=True)]


def test_exact_multiple_ends_with_a_full_final_chunk() -> None:
    chunks = list(iter_chunks(io.BytesIO(b"abcdefgh"), 4))
    assert chunks == [Chunk(0, b"abcd", final=False), Chunk(1, b"efgh", final=True)]


def test_chunk_is_emitted_before_the_stream_ends() -> None:
    # Bounded memory means streaming: the first chunk must arrive after ~one chunk is read.
    stream = ShortReads(b"x" * 1000, 1000)
    first = next(iter_chunks(stream, 10))  # type: ignore[arg-type]
    assert first == Chunk(0, b"x" * 10, final=False)
    assert stream._pos <= 11


@pytest.mark.parametrize("bad", [0, -1])
def test_non_positive_chunk_size_is_rejected(bad: int) -> None:
    with pytest.raises(InvalidInput, match="chunk_size"):
        iter_chunks(io.BytesIO(b"x"), bad)
