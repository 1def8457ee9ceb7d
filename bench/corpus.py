"""A generated recording that mixes what remote-desktop sessions contain.

The default mix follows a real screen-capture + text recording: H.264-like video (NAL
units of incompressible slice data behind start codes), raw screen frames (mostly
unchanged pixels between frames, a cursor and a clock moving, a window scrolled now and
then), terminal/console text and keystroke/window event logs. Deterministic for a seed.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path

__all__ = ["MIX", "corpus_blocks", "write_corpus"]

_BLOCK = 1 << 20
_WIDTH = 1920 * 4  # one BGRA row


def _video(rng: random.Random) -> bytes:
    """H.264 Annex-B-like: start code, NAL header, then entropy-coded (random) slice data."""
    out = bytearray()
    while len(out) < _BLOCK:
        nal_type = 5 if rng.random() < 0.03 else 1  # an IDR now and then, P slices between
        size = rng.randrange(2_000, 60_000) if nal_type == 1 else rng.randrange(60_000, 200_000)
        out += b"\x00\x00\x00\x01" + bytes((0x60 | nal_type,)) + rng.randbytes(size)
    return bytes(out[:_BLOCK])


def _frames(rng: random.Random) -> bytes:
    """Raw BGRA screen rows: a desktop of flat areas and text lines, small changes."""
    palette = [rng.randbytes(4) for _ in range(8)]
    rows = []
    for _ in range(16):  # a few distinct rows: background, title bar, text lines
        pattern = b"".join(rng.choice(palette) * rng.randrange(1, 40) for _ in range(120))
        rows.append((pattern * (_WIDTH // max(1, len(pattern)) + 1))[:_WIDTH])
    frame = bytearray()
    while len(frame) < _BLOCK:
        frame += rng.choice(rows) * rng.randrange(1, 12)
    frame = frame[:_BLOCK]
    for _ in range(300):  # a cursor, a clock, anti-aliased glyphs
        at = rng.randrange(_BLOCK - 512)
        frame[at : at + 512] = rng.randbytes(512)
    return bytes(frame)


_TEXT_WORDS = (
    "ls cd git status commit diff grep error warning info debug ssh sudo systemctl restart "
    "journalctl tail -f /var/log/syslog python3 import def return None True False kubectl "
    "get pods deployment service nginx postgres SELECT FROM WHERE user_id = 42 ok done"
)
_WORDS = tuple(_TEXT_WORDS.split())


def _text(rng: random.Random) -> bytes:
    """Terminal output and typed commands."""
    lines = []
    size = 0
    while size < _BLOCK:
        words = rng.choices(_WORDS, k=rng.randrange(3, 16))
        line = f"[{rng.randrange(10**6):06d}] {' '.join(words)} {rng.randbytes(4).hex()}\n"
        lines.append(line)
        size += len(line)
    return "".join(lines).encode()[:_BLOCK]


def _events(rng: random.Random) -> bytes:
    kinds = ("key_down", "key_up", "mouse_move", "window_focus", "clipboard")
    lines = []
    size = 0
    t = rng.randrange(10**9)
    wins = ("term", "browser", "ide")
    while size < _BLOCK:
        t += int(rng.random() * 49) + 1
        kind, win = rng.choice(kinds), rng.choice(wins)
        x, y = int(rng.random() * 1920), int(rng.random() * 1080)
        line = f'{{"t":{t},"type":"{kind}","x":{x},"y":{y},"win":"{win}"}}\n'
        lines.append(line)
        size += len(line)
    return "".join(lines).encode()[:_BLOCK]


# Blocks out of 20: video 9, raw frames 6, text 3, events 2.
MIX = (_video,) * 9 + (_frames,) * 6 + (_text,) * 3 + (_events,) * 2


def corpus_blocks(size: int, seed: int = 7) -> Iterator[bytes]:
    """`size` bytes in 1 MiB blocks drawn from MIX (about 45 % video, 30 % raw frames,
    15 % text, 10 % events)."""
    rng = random.Random(seed)
    left = size
    while left > 0:
        block = rng.choice(MIX)(rng)[:left]
        left -= len(block)
        yield block


def write_corpus(path: Path, size: int, seed: int = 7) -> Path:
    """Write a generated recording of `size` bytes to `path`."""
    with open(path, "wb") as out:
        for block in corpus_blocks(size, seed):
            out.write(block)
    return path
