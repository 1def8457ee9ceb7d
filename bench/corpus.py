"""A generated recording that mixes what remote-desktop sessions contain.

Video-like segments are incompressible; screen frames (mostly unchanged pixels between
frames) and keystroke/window event logs compress well. Deterministic for a given seed.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path

__all__ = ["corpus_blocks", "write_corpus"]

_BLOCK = 1 << 20


def _video(rng: random.Random) -> bytes:
    return rng.randbytes(_BLOCK)


def _frames(rng: random.Random) -> bytes:
    width = 1920 * 4
    row = bytes(rng.randrange(256) for _ in range(64)) * (width // 64)
    frame = bytearray(row * (_BLOCK // width + 1))[:_BLOCK]
    for _ in range(200):  # a cursor, a clock, a little window movement
        at = rng.randrange(_BLOCK - 256)
        frame[at : at + 256] = rng.randbytes(256)
    return bytes(frame)


def _events(rng: random.Random) -> bytes:
    kinds = ("key_down", "key_up", "mouse_move", "window_focus", "clipboard")
    lines = []
    size = 0
    t = rng.randrange(10**9)
    while size < _BLOCK:
        t += rng.randrange(1, 50)
        line = (
            f'{{"t":{t},"type":"{rng.choice(kinds)}","x":{rng.randrange(1920)},'
            f'"y":{rng.randrange(1080)},"win":"{rng.choice(("term", "browser", "ide"))}"}}\n'
        )
        lines.append(line)
        size += len(line)
    return "".join(lines).encode()[:_BLOCK]


def corpus_blocks(size: int, seed: int = 7) -> Iterator[bytes]:
    """`size` bytes in 1 MiB blocks: about half video, a third frames, the rest events."""
    rng = random.Random(seed)
    makers = (_video, _video, _video, _frames, _frames, _events)
    left = size
    while left > 0:
        block = rng.choice(makers)(rng)[:left]
        left -= len(block)
        yield block


def write_corpus(path: Path, size: int, seed: int = 7) -> Path:
    """Write a generated recording of `size` bytes to `path`."""
    with open(path, "wb") as out:
        for block in corpus_blocks(size, seed):
            out.write(block)
    return path
