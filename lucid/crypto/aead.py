"""Chunk encryption: a fresh X25519-derived key per chunk, AES-256-GCM or XChaCha20-Poly1305.

For every chunk the sender makes an ephemeral X25519 key pair e and derives

    shared       = X25519(e, session_public)
    key || nonce = HKDF-SHA256(shared, salt = e_pub || session_public,
                               info = b"lucid.chunk.v1" || ctx.aad())

so each key encrypts exactly one message and a nonce can never repeat. The ingest side
holds only `session_public`; decrypting needs the session private key.

Blob layout (overhead 53 bytes for both algorithms):

    b"LCE1" || u8 algorithm id (1 = AES-256-GCM, 2 = XChaCha20-Poly1305) || e_pub (32)
    || ciphertext || tag (16)

The AEAD associated data is header || ctx.aad(), so a flipped header bit, a chunk moved
to another index or session, or a final flag that no longer matches (truncation) fails
authentication.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from lucid.crypto._xchacha import XChaCha20Poly1305
from lucid.errors import DecryptionError, InvalidInput

__all__ = [
    "ALGORITHMS",
    "HEADER_SIZE",
    "MAGIC",
    "TAG_SIZE",
    "ChunkContext",
    "decrypt_chunk",
    "encrypt_chunk",
    "encryption_overhead",
]

ALGORITHMS = ("AES-256-GCM", "XChaCha20-Poly1305")
MAGIC = b"LCE1"
HEADER_SIZE = len(MAGIC) + 1 + 32
TAG_SIZE = 16
_ALGORITHM_IDS = {"AES-256-GCM": 1, "XChaCha20-Poly1305": 2}
_NONCE_SIZES = {1: 12, 2: 24}
_AAD_DOMAIN = b"lucid.chunk.aad.v1\x00"
_KDF_INFO = b"lucid.chunk.v1"
_RAW = serialization.Encoding.Raw, serialization.PublicFormat.Raw


def _text(value: str) -> bytes:
    raw = value.encode()
    return struct.pack(">H", len(raw)) + raw


@dataclass(frozen=True)
class ChunkContext:
    """What a chunk's ciphertext is bound to: its session, position and codecs."""

    session_id: str
    index: int
    final: bool
    compression: str
    encryption: str

    def __post_init__(self) -> None:
        if not isinstance(self.session_id, str) or not 0 < len(self.session_id.encode()) < 2**16:
            raise InvalidInput(f"chunk context: expected a session id, got {self.session_id!r}")
        if isinstance(self.index, bool) or not isinstance(self.index, int):
            raise InvalidInput(f"chunk context: expected an integer index, got {self.index!r}")
        if not 0 <= self.index < 2**64:
            raise InvalidInput(f"chunk context: expected index in 0..2**64-1, got {self.index}")
        if not isinstance(self.final, bool):
            raise InvalidInput(f"chunk context: expected final to be a bool, got {self.final!r}")
        if not isinstance(self.compression, str) or not 0 < len(self.compression) < 256:
            raise InvalidInput(f"chunk context: expected a codec name, got {self.compression!r}")
        if self.encryption not in ALGORITHMS:
            raise InvalidInput(
                f"chunk context: expected encryption in {ALGORITHMS}, got {self.encryption!r}"
            )

    def aad(self) -> bytes:
        """Canonical encoding of the context (domain-separated from leaf records)."""
        return b"".join(
            (
                _AAD_DOMAIN,
                _text(self.session_id),
                struct.pack(">QB", self.index, 1 if self.final else 0),
                _text(self.compression),
                _text(self.encryption),
            )
        )


def encryption_overhead(algorithm: str) -> int:
    """Bytes a blob adds to its plaintext: header plus tag."""
    if algorithm not in _ALGORITHM_IDS:
        raise InvalidInput(f"expected an algorithm in {ALGORITHMS}, got {algorithm!r}")
    return HEADER_SIZE + TAG_SIZE


def _cipher(
    algorithm_id: int, shared: bytes, salt: bytes, aad: bytes
) -> tuple[AESGCM | XChaCha20Poly1305, bytes]:
    nonce_size = _NONCE_SIZES[algorithm_id]
    okm = HKDF(
        algorithm=hashes.SHA256(), length=32 + nonce_size, salt=salt, info=_KDF_INFO + aad
    ).derive(shared)
    key, nonce = okm[:32], okm[32:]
    return (AESGCM(key) if algorithm_id == 1 else XChaCha20Poly1305(key)), nonce


def encrypt_chunk(plaintext: bytes | memoryview, session_public: bytes, ctx: ChunkContext) -> bytes:
    """Encrypt one chunk to the session public key with a fresh one-time key."""
    try:
        recipient = X25519PublicKey.from_public_bytes(session_public)
    except ValueError:
        raise InvalidInput(
            f"session public key: expected 32 bytes, got {len(session_public)}"
        ) from None
    algorithm_id = _ALGORITHM_IDS[ctx.encryption]
    ephemeral = X25519PrivateKey.generate()
    e_pub = ephemeral.public_key().public_bytes(*_RAW)
    aad = ctx.aad()
    cipher, nonce = _cipher(
        algorithm_id, ephemeral.exchange(recipient), e_pub + session_public, aad
    )
    header = MAGIC + bytes((algorithm_id,)) + e_pub
    return header + cipher.encrypt(nonce, plaintext, header + aad)


def decrypt_chunk(blob: bytes, session_private: X25519PrivateKey, ctx: ChunkContext) -> bytes:
    """Decrypt and authenticate one chunk blob for `ctx`, or raise DecryptionError."""

    def fail(message: str) -> DecryptionError:
        return DecryptionError(message, session_id=ctx.session_id, chunk_index=ctx.index)

    if len(blob) < HEADER_SIZE + TAG_SIZE:
        raise fail(f"expected a blob of at least {HEADER_SIZE + TAG_SIZE} bytes, got {len(blob)}")
    if blob[: len(MAGIC)] != MAGIC:
        raise fail(f"expected magic {MAGIC!r}, got {bytes(blob[: len(MAGIC)])!r}")
    algorithm_id = blob[len(MAGIC)]
    expected_id = _ALGORITHM_IDS[ctx.encryption]
    if algorithm_id != expected_id:
        names = {v: k for k, v in _ALGORITHM_IDS.items()}
        got = names.get(algorithm_id, f"unknown id {algorithm_id}")
        raise fail(f"expected algorithm {ctx.encryption}, got {got}")
    header = bytes(blob[:HEADER_SIZE])
    e_pub = header[len(MAGIC) + 1 :]
    session_public = session_private.public_key().public_bytes(*_RAW)
    aad = ctx.aad()
    try:
        shared = session_private.exchange(X25519PublicKey.from_public_bytes(e_pub))
        cipher, nonce = _cipher(algorithm_id, shared, e_pub + session_public, aad)
        # A memoryview keeps a 10 MiB chunk from being copied before decryption.
        return cipher.decrypt(nonce, memoryview(blob)[HEADER_SIZE:], header + aad)
    except (InvalidTag, ValueError):
        raise fail(
            "authentication failed: wrong session key, tampered bytes, or a chunk that "
            f"does not belong at index {ctx.index} with final={ctx.final}"
        ) from None
