"""Chunk encryption: round trips, every tamper case, and the XChaCha draft vectors."""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import pytest
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from lucid.crypto._xchacha import XChaCha20Poly1305, hchacha20
from lucid.crypto.aead import (
    ALGORITHMS,
    HEADER_SIZE,
    TAG_SIZE,
    ChunkContext,
    decrypt_chunk,
    encrypt_chunk,
    encryption_overhead,
)
from lucid.errors import DecryptionError, InvalidInput

SESSION = "0123456789abcdef0123456789abcdef"
SESSION_KEY = X25519PrivateKey.generate()
SESSION_PUBLIC = SESSION_KEY.public_key().public_bytes(
    serialization.Encoding.Raw, serialization.PublicFormat.Raw
)


def _ctx(algorithm: str = "AES-256-GCM", **changes: Any) -> ChunkContext:
    base = ChunkContext(SESSION, 7, False, "zstd", algorithm)
    return dataclasses.replace(base, **changes)


# draft-irtf-cfrg-xchacha-03 §2.2.1 and §A.3.1.
def test_hchacha20_matches_draft_vector() -> None:
    subkey = hchacha20(bytes(range(32)), bytes.fromhex("000000090000004a0000000031415927"))
    assert subkey.hex() == "82413b4227b27bfed30e42508a877d73a0f9e4d58a74a853c12ec41326d3ecdc"


XCHACHA_PLAINTEXT = (
    b"Ladies and Gentlemen of the class of '99: If I could offer you only one tip for the "
    b"future, sunscreen would be it."
)
XCHACHA_EXPECTED = bytes.fromhex(
    "bd6d179d3e83d43b9576579493c0e939572a1700252bfaccbed2902c21396cbb"
    "731c7f1b0b4aa6440bf3a82f4eda7e39ae64c6708c54c216cb96b72e1213b452"
    "2f8c9ba40db5d945b11b69b982c1bb9e3f3fac2bc369488f76b2383565d3fff9"
    "21f9664c97637da9768812f615c68b13b52e"
    "c0875924c1c7987947deafd8780acf49"
)


def test_xchacha20_poly1305_matches_draft_vector() -> None:
    cipher = XChaCha20Poly1305(bytes(range(0x80, 0xA0)))
    nonce, aad = bytes(range(0x40, 0x58)), bytes.fromhex("50515253c0c1c2c3c4c5c6c7")
    assert cipher.encrypt(nonce, XCHACHA_PLAINTEXT, aad) == XCHACHA_EXPECTED
    assert cipher.decrypt(nonce, XCHACHA_EXPECTED, aad) == XCHACHA_PLAINTEXT
    with pytest.raises(InvalidTag):
        cipher.decrypt(nonce, XCHACHA_EXPECTED, aad + b"x")


@pytest.mark.parametrize("algorithm", ALGORITHMS)
@settings(max_examples=40, deadline=None)
@given(plaintext=st.binary(max_size=4096), index=st.integers(0, 2**20), final=st.booleans())
def test_round_trip(algorithm: str, plaintext: bytes, index: int, final: bool) -> None:
    ctx = _ctx(algorithm, index=index, final=final)
    blob = encrypt_chunk(plaintext, SESSION_PUBLIC, ctx)
    assert len(blob) == len(plaintext) + encryption_overhead(algorithm)
    assert decrypt_chunk(blob, SESSION_KEY, ctx) == plaintext


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_round_trip_of_a_ten_mib_chunk(algorithm: str) -> None:
    plaintext = os.urandom(10 * 1024 * 1024)
    blob = encrypt_chunk(plaintext, SESSION_PUBLIC, _ctx(algorithm))
    assert decrypt_chunk(blob, SESSION_KEY, _ctx(algorithm)) == plaintext


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_blob_layout(algorithm: str) -> None:
    blob = encrypt_chunk(b"x", SESSION_PUBLIC, _ctx(algorithm))
    assert blob[:4] == b"LCE1"
    assert blob[4] == ALGORITHMS.index(algorithm) + 1
    assert HEADER_SIZE == 37
    assert TAG_SIZE == 16
    assert encryption_overhead(algorithm) == 53


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_each_encryption_uses_a_fresh_key(algorithm: str) -> None:
    first = encrypt_chunk(b"same chunk", SESSION_PUBLIC, _ctx(algorithm))
    second = encrypt_chunk(b"same chunk", SESSION_PUBLIC, _ctx(algorithm))
    assert first != second
    assert first[5:37] != second[5:37]
    assert decrypt_chunk(first, SESSION_KEY, _ctx(algorithm)) == b"same chunk"
    assert decrypt_chunk(second, SESSION_KEY, _ctx(algorithm)) == b"same chunk"


def _refused(
    blob: bytes, key: X25519PrivateKey, ctx: ChunkContext, message: str | None = None
) -> None:
    with pytest.raises(DecryptionError, match=message) as caught:
        decrypt_chunk(blob, key, ctx)
    assert caught.value.chunk_index == ctx.index
    assert caught.value.session_id == ctx.session_id
    assert f"session {ctx.session_id}, chunk {ctx.index}: " in str(caught.value)


@pytest.mark.parametrize("algorithm", ALGORITHMS)
@settings(max_examples=60, deadline=None)
@given(position=st.integers(0, 200), bit=st.integers(0, 7))
def test_any_flipped_bit_is_refused(algorithm: str, position: int, bit: int) -> None:
    ctx = _ctx(algorithm)
    blob = bytearray(encrypt_chunk(b"recording bytes" * 7, SESSION_PUBLIC, ctx))
    blob[position % len(blob)] ^= 1 << bit
    _refused(bytes(blob), SESSION_KEY, ctx)


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_wrong_session_key_is_refused(algorithm: str) -> None:
    blob = encrypt_chunk(b"data", SESSION_PUBLIC, _ctx(algorithm))
    _refused(blob, X25519PrivateKey.generate(), _ctx(algorithm), "authentication failed")


@pytest.mark.parametrize("algorithm", ALGORITHMS)
@pytest.mark.parametrize(
    "change",
    [
        {"index": 8},
        {"session_id": "fedcba9876543210fedcba9876543210"},
        {"final": True},
        {"compression": "gzip"},
    ],
    ids=["swapped-index", "other-session", "final-flag", "other-codec"],
)
def test_chunk_in_the_wrong_place_is_refused(algorithm: str, change: dict[str, Any]) -> None:
    blob = encrypt_chunk(b"data", SESSION_PUBLIC, _ctx(algorithm))
    _refused(blob, SESSION_KEY, _ctx(algorithm, **change), "authentication failed")


def test_truncation_by_dropping_the_final_flag_is_refused() -> None:
    last = encrypt_chunk(b"tail", SESSION_PUBLIC, _ctx(final=True))
    middle = encrypt_chunk(b"middle", SESSION_PUBLIC, _ctx(index=6, final=False))
    _refused(middle, SESSION_KEY, _ctx(index=6, final=True))
    assert decrypt_chunk(last, SESSION_KEY, _ctx(final=True)) == b"tail"


def test_algorithm_mismatch_is_refused() -> None:
    blob = encrypt_chunk(b"data", SESSION_PUBLIC, _ctx("XChaCha20-Poly1305"))
    _refused(blob, SESSION_KEY, _ctx("AES-256-GCM"), "expected algorithm AES-256-GCM, got XCh")


def test_bad_magic_is_refused() -> None:
    blob = encrypt_chunk(b"data", SESSION_PUBLIC, _ctx())
    _refused(b"XXXX" + blob[4:], SESSION_KEY, _ctx(), "expected magic b'LCE1', got b'XXXX'")


def test_unknown_algorithm_id_is_refused() -> None:
    blob = encrypt_chunk(b"data", SESSION_PUBLIC, _ctx())
    _refused(blob[:4] + b"\x09" + blob[5:], SESSION_KEY, _ctx(), "got unknown id 9")


def test_short_blob_is_refused() -> None:
    _refused(b"LCE1\x01", SESSION_KEY, _ctx(), "expected a blob of at least 53 bytes, got 5")


def test_low_order_ephemeral_key_is_refused() -> None:
    blob = encrypt_chunk(b"data", SESSION_PUBLIC, _ctx())
    _refused(blob[:5] + bytes(32) + blob[37:], SESSION_KEY, _ctx(), "authentication failed")


def test_bad_session_public_key_is_invalid_input() -> None:
    with pytest.raises(InvalidInput, match="expected 32 bytes, got 31"):
        encrypt_chunk(b"data", SESSION_PUBLIC[:31], _ctx())


def test_aad_is_distinct_from_leaf_encoding_and_binds_every_field() -> None:
    ctx = _ctx()
    assert ctx.aad().startswith(b"lucid.chunk.aad.v1\x00")
    changed = [
        _ctx(index=8),
        _ctx(final=True),
        _ctx(session_id="x"),
        _ctx(compression="gzip"),
        _ctx("XChaCha20-Poly1305"),
    ]
    assert len({c.aad() for c in [ctx, *changed]}) == 6


@pytest.mark.parametrize(
    "change",
    [
        {"index": -1},
        {"index": True},
        {"final": 0},
        {"session_id": ""},
        {"encryption": "ROT13"},
        {"compression": ""},
    ],
)
def test_invalid_context_is_refused(change: dict[str, Any]) -> None:
    with pytest.raises(InvalidInput):
        _ctx(**change)


def test_overhead_of_unknown_algorithm_is_invalid_input() -> None:
    with pytest.raises(InvalidInput, match="got 'DES'"):
        encryption_overhead("DES")
