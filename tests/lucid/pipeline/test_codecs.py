from __future__ import annotations

import os
import subprocess
import sys
import zlib
from pathlib import Path

import pytest
import zstandard
from hypothesis import given, settings
from hypothesis import strategies as st

from lucid.errors import DecompressionBombError, IntegrityError, InvalidInput
from lucid.pipeline.codecs import get_codec

MIB = 1 << 20
GIB = 1 << 30
LEVELS = [("zstd", 1), ("zstd", 3), ("zstd", 19), ("gzip", 0), ("gzip", 6), ("gzip", 9)]
ALL = [*LEVELS, ("none", 0)]


@pytest.mark.parametrize(("name", "level"), ALL)
@settings(max_examples=40, deadline=None)
@given(data=st.binary(max_size=4096))
def test_round_trip(name: str, level: int, data: bytes) -> None:
    codec = get_codec(name, level)
    assert (codec.name, codec.level) == (name, level)
    assert codec.decompress(codec.compress(data), len(data)) == data


@pytest.mark.parametrize(("name", "level"), [lv for lv in LEVELS if lv != ("gzip", 0)])
def test_compressible_data_shrinks(name: str, level: int) -> None:
    data = b"frame 0001 mouse 12,34 key a\n" * 4000
    assert len(get_codec(name, level).compress(data)) < len(data) // 10


@pytest.mark.parametrize(("name", "level"), ALL)
def test_output_one_byte_over_the_bound_is_a_bomb(name: str, level: int) -> None:
    codec = get_codec(name, level)
    blob = codec.compress(b"a" * 1000)
    assert codec.decompress(blob, 1000) == b"a" * 1000
    with pytest.raises(DecompressionBombError):
        codec.decompress(blob, 999)


def test_zstd_frame_without_declared_size_is_still_bounded() -> None:
    blob = zstandard.ZstdCompressor(write_content_size=False).compress(b"\0" * (4 * MIB))
    with pytest.raises(DecompressionBombError):
        get_codec("zstd", 3).decompress(blob, MIB)
    assert get_codec("zstd", 3).decompress(blob, 4 * MIB) == b"\0" * (4 * MIB)


def _zeros_zstd(size: int, declare: bool) -> bytes:
    cobj = zstandard.ZstdCompressor(level=1, write_content_size=declare).compressobj(
        size=size if declare else -1
    )
    piece = bytes(8 * MIB)
    return b"".join(cobj.compress(piece) for _ in range(size // len(piece))) + cobj.flush()


def _zeros_gzip(size: int) -> bytes:
    cobj = zlib.compressobj(1, zlib.DEFLATED, 31)
    piece = bytes(8 * MIB)
    return b"".join(cobj.compress(piece) for _ in range(size // len(piece))) + cobj.flush()


# VmHWM belongs to the new address space; ru_maxrss would carry the parent's peak across exec.
_PROBE = """
import sys
from lucid.pipeline.codecs import get_codec
from lucid.errors import DecompressionBombError
blob = open(sys.argv[1], "rb").read()
try:
    get_codec(sys.argv[2], int(sys.argv[3])).decompress(blob, 1 << 20)
except DecompressionBombError:
    hwm = [l for l in open("/proc/self/status") if l.startswith("VmHWM")][0].split()[1]
    print("bomb", int(hwm) // 1024)
"""


@pytest.mark.parametrize(
    ("name", "level", "make"),
    [
        ("zstd", 3, lambda: _zeros_zstd(GIB, declare=True)),
        ("zstd", 3, lambda: _zeros_zstd(GIB, declare=False)),
        ("gzip", 6, lambda: _zeros_gzip(256 * MIB)),
    ],
    ids=["zstd-declared-1GiB", "zstd-undeclared-1GiB", "gzip-256MiB"],
)
def test_bomb_is_rejected_without_inflating_it(name, level, make, tmp_path: Path) -> None:
    # A fresh process, so its peak RSS measures only this decompression.
    path = tmp_path / "bomb"
    path.write_bytes(make())
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run(
        [sys.executable, "-c", _PROBE, str(path), name, str(level)],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONPATH": str(root)},
        timeout=60,
    ).stdout.split()
    assert out[0] == "bomb"
    assert int(out[1]) < 150, f"peak RSS {out[1]} MiB"


@pytest.mark.parametrize(("name", "level"), LEVELS)
def test_corrupt_truncated_or_padded_data_raises(name: str, level: int) -> None:
    codec = get_codec(name, level)
    blob = codec.compress(os.urandom(500) + b"x" * 5000)
    flipped = bytearray(blob)
    flipped[len(blob) // 2] ^= 0x40
    for bad in (bytes(flipped), blob[:-3], blob + b"junk", blob + blob, b"", b"not compressed"):
        with pytest.raises(IntegrityError):
            codec.decompress(bad, 10_000)


@pytest.mark.parametrize(
    ("name", "level"), [("zstd", 0), ("zstd", 23), ("gzip", -1), ("gzip", 10), ("none", 1)]
)
def test_out_of_range_level_names_the_allowed_range(name: str, level: int) -> None:
    with pytest.raises(InvalidInput, match=rf"{name}.*{level}.*allowed"):
        get_codec(name, level)


def test_unknown_codec_lists_the_allowed_ones() -> None:
    with pytest.raises(InvalidInput, match=r"lz4.*zstd, gzip, none"):
        get_codec("lz4", 1)


def test_codecs_are_shared_per_name_and_level() -> None:
    assert get_codec("zstd", 3) is get_codec("zstd", 3)
    assert get_codec("zstd", 3) is not get_codec("zstd", 4)
