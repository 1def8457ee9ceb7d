"""Cut a byte stream into fixed-size chunks with bounded memory.

Every chunk but the last has exactly `chunk_size` bytes; the last has 1..chunk_size bytes
and is flagged `final` (a zero-byte stream gives one empty final chunk). Because the final
flag is bound into each chunk's encryption and Merkle leaf, a chunk is only emitted once
we know whether more data follows: we read one byte past each full chunk as lookahead.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

from lucid.errors import InvalidInput

__all__ = ["Chunk", "iter_chunks"]


@dataclass(frozen=True)
class Chunk:
    """One piece of a recording: its position, its bytes and whether it is the last."""

    index: int
    data: bytes
    final: bool

    def __post_init__(self) -> None:
        if self.index < 0:
            raise InvalidInput(f"chunk index must be >= 0, got {self.index}")


def _read_into(stream: BinaryIO, view: memoryview) -> int:
    """One read into `view`; returns the byte count (0 at end of stream)."""
    readinto = getattr(stream, "readinto", None)
    if readinto is not None:
        try:
            got = readinto(view)
        except (NotImplementedError, io.UnsupportedOperation):
            pass  # advertised but not implemented (some wrappers): fall back to read()
        else:
            if got is None:
                raise InvalidInput("non-blocking streams are not supported")
            return int(got)
    data = stream.read(len(view))
    if len(data) > len(view):
        raise InvalidInput(f"stream returned {len(data)} bytes when asked for {len(view)}")
    view[: len(data)] = data
    return len(data)


def _read_full(stream: BinaryIO, buffer: bytearray, start: int) -> int:
    """Fill `buffer[start:]` from `stream`, looping over short reads; return bytes read."""
    view = memoryview(buffer)
    filled = start
    while filled < len(buffer):
        got = _read_into(stream, view[filled:])
        if got == 0:
            break
        filled += got
    return filled - start


def iter_chunks(stream: BinaryIO, chunk_size: int) -> Iterator[Chunk]:
    """Yield the chunks of `stream`; at most one chunk plus one lookahead byte is buffered."""
    # Validate now, not at the first next(): a bad size should fail where it was passed.
    if not isinstance(chunk_size, int) or isinstance(chunk_size, bool) or chunk_size <= 0:
        raise InvalidInput(f"chunk_size must be a positive integer, got {chunk_size!r}")
    return _generate(stream, chunk_size)


def _generate(stream: BinaryIO, chunk_size: int) -> Iterator[Chunk]:
    # One byte of room beyond the chunk holds the lookahead that tells us "not final".
    buffer = bytearray(chunk_size + 1)
    view = memoryview(buffer)  # slicing a view copies once; slicing the bytearray twice
    filled = 0
    index = 0
    while True:
        filled += _read_full(stream, buffer, filled)
        if filled <= chunk_size:
            # Short of a full chunk plus lookahead: the stream is exhausted.
            yield Chunk(index, bytes(view[:filled]), final=True)
            return
        yield Chunk(index, bytes(view[:chunk_size]), final=False)
        index += 1
        buffer[0] = buffer[chunk_size]
        filled = 1
