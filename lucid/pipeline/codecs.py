"""Chunk compression codecs (zstd, gzip, none) with bounded decompression.

Decompression never produces more than `max_size` bytes and never allocates more than
that: a stream that would inflate further raises DecompressionBombError, anything that is
not exactly one well-formed stream (truncated, corrupt, trailing bytes) raises
IntegrityError. zstd frames carry their content size, checked before any allocation.
"""

from __future__ import annotations

import threading
import zlib
from functools import lru_cache
from typing import Protocol

import zstandard

from lucid.errors import DecompressionBombError, IntegrityError, InvalidInput
from lucid.settings import COMPRESSION_LEVELS

__all__ = ["CODEC_NAMES", "Codec", "get_codec"]

CODEC_NAMES: tuple[str, ...] = tuple(COMPRESSION_LEVELS)
_GZIP_WBITS = 31  # deflate with a gzip header and CRC32/ISIZE trailer


class Codec(Protocol):
    """Compresses a chunk and inflates it back, never past a caller-given bound."""

    @property
    def name(self) -> str: ...

    @property
    def level(self) -> int: ...

    def compress(self, data: bytes | memoryview) -> bytes: ...

    def decompress(self, data: bytes, max_size: int) -> bytes: ...


def _check_bound(max_size: int) -> None:
    if max_size < 0:
        raise InvalidInput(f"max_size must be >= 0, got {max_size}")


def _bomb(size: int | str, max_size: int) -> DecompressionBombError:
    return DecompressionBombError(f"would inflate to {size} bytes, more than max {max_size}")


class _Zstd:
    """zstd with content size and checksum in every frame; one context per thread."""

    name = "zstd"

    def __init__(self, level: int) -> None:
        self.level = level
        # ZstdCompressor/ZstdDecompressor are not thread-safe; contexts are costly to build.
        self._local = threading.local()

    def _compressor(self) -> zstandard.ZstdCompressor:
        cctx = getattr(self._local, "cctx", None)
        if cctx is None:
            cctx = zstandard.ZstdCompressor(
                level=self.level, write_content_size=True, write_checksum=True
            )
            self._local.cctx = cctx
        return cctx

    def _decompressor(self) -> zstandard.ZstdDecompressor:
        dctx = getattr(self._local, "dctx", None)
        if dctx is None:
            dctx = zstandard.ZstdDecompressor()
            self._local.dctx = dctx
        return dctx

    def compress(self, data: bytes | memoryview) -> bytes:
        """One zstd frame holding `data`."""
        return bytes(self._compressor().compress(data))

    def decompress(self, data: bytes, max_size: int) -> bytes:
        """Inflate one zstd frame of at most `max_size` bytes."""
        _check_bound(max_size)
        dctx = self._decompressor()
        try:
            # -1 means "not in the header" (not zstandard.CONTENTSIZE_UNKNOWN, a C constant).
            declared = zstandard.frame_content_size(data)
            if declared > max_size:
                raise _bomb(declared, max_size)
            if declared < 0:
                # No size in the header: prove the bound with a capped streaming read first.
                with dctx.stream_reader(data, read_across_frames=False) as reader:
                    if len(reader.read(max_size + 1)) > max_size:
                        raise _bomb(f"more than {max_size}", max_size)
            # From here the output is bounded: the library allocates at most the declared
            # size and rejects frames whose content disagrees with it.
            dobj = dctx.decompressobj()
            out = dobj.decompress(data)
        except zstandard.ZstdError as exc:
            raise IntegrityError(f"corrupt zstd data: {exc}") from None
        if not dobj.eof:
            raise IntegrityError("truncated zstd frame")
        if dobj.unused_data:
            raise IntegrityError(f"{len(dobj.unused_data)} unexpected bytes after the zstd frame")
        if len(out) > max_size:  # belt and braces: never hand back more than allowed
            raise _bomb(len(out), max_size)
        return bytes(out)


class _Gzip:
    """RFC 1952 gzip via zlib (deterministic header: no name, mtime 0)."""

    name = "gzip"

    def __init__(self, level: int) -> None:
        self.level = level

    def compress(self, data: bytes | memoryview) -> bytes:
        """One gzip member holding `data`."""
        cobj = zlib.compressobj(self.level, zlib.DEFLATED, _GZIP_WBITS)
        return cobj.compress(data) + cobj.flush()

    def decompress(self, data: bytes, max_size: int) -> bytes:
        """Inflate one gzip member of at most `max_size` bytes."""
        _check_bound(max_size)
        dobj = zlib.decompressobj(_GZIP_WBITS)
        try:
            # One byte past the bound is enough to know it is a bomb; zlib stops there.
            out = dobj.decompress(data, max_size + 1)
        except zlib.error as exc:
            raise IntegrityError(f"corrupt gzip data: {exc}") from None
        if len(out) > max_size:
            raise _bomb(f"more than {max_size}", max_size)
        if not dobj.eof:
            raise IntegrityError("truncated gzip stream")
        if dobj.unused_data:
            raise IntegrityError(f"{len(dobj.unused_data)} unexpected bytes after the gzip stream")
        return out


class _Identity:
    """No compression; still enforces the size bound so callers can rely on it."""

    name = "none"

    def __init__(self, level: int) -> None:
        self.level = level

    def compress(self, data: bytes | memoryview) -> bytes:
        """`data` unchanged."""
        return bytes(data)

    def decompress(self, data: bytes, max_size: int) -> bytes:
        """`data` unchanged if it fits in `max_size`."""
        _check_bound(max_size)
        if len(data) > max_size:
            raise _bomb(len(data), max_size)
        return bytes(data)


_CODECS: dict[str, type[_Zstd] | type[_Gzip] | type[_Identity]] = {
    "zstd": _Zstd,
    "gzip": _Gzip,
    "none": _Identity,
}


@lru_cache(maxsize=64, typed=True)
def get_codec(name: str, level: int) -> Codec:
    """The codec `name` at `level`; one shared, thread-safe instance per pair."""
    if name not in _CODECS:
        raise InvalidInput(f"unknown codec {name!r}; allowed: {', '.join(CODEC_NAMES)}")
    low, high = COMPRESSION_LEVELS[name]
    if isinstance(level, bool) or not isinstance(level, int) or not low <= level <= high:
        raise InvalidInput(f"codec {name} does not allow level {level!r}; allowed {low}..{high}")
    return _CODECS[name](level)
