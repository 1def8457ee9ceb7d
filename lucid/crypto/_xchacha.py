"""XChaCha20-Poly1305 from HChaCha20 + IETF ChaCha20-Poly1305 (draft-irtf-cfrg-xchacha-03).

`cryptography` ships ChaCha20-Poly1305 with a 96-bit nonce but not the 192-bit XChaCha
variant. §2.3 of the draft builds it: subkey = HChaCha20(key, nonce[0:16]), then
ChaCha20-Poly1305(subkey) with the nonce 0x00000000 || nonce[16:24]. Only HChaCha20
(one ChaCha20 block without the final addition, on 32 bytes) is done in pure Python;
the bulk encryption stays in OpenSSL.
"""

from __future__ import annotations

import struct

from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

__all__ = ["KEY_SIZE", "NONCE_SIZE", "XChaCha20Poly1305", "hchacha20"]

KEY_SIZE = 32
NONCE_SIZE = 24
_MASK = 0xFFFFFFFF
_SIGMA = struct.unpack("<4I", b"expand 32-byte k")


def _rotl(value: int, count: int) -> int:
    return ((value << count) | (value >> (32 - count))) & _MASK


def _quarter_round(s: list[int], a: int, b: int, c: int, d: int) -> None:
    s[a] = (s[a] + s[b]) & _MASK
    s[d] = _rotl(s[d] ^ s[a], 16)
    s[c] = (s[c] + s[d]) & _MASK
    s[b] = _rotl(s[b] ^ s[c], 12)
    s[a] = (s[a] + s[b]) & _MASK
    s[d] = _rotl(s[d] ^ s[a], 8)
    s[c] = (s[c] + s[d]) & _MASK
    s[b] = _rotl(s[b] ^ s[c], 7)


def hchacha20(key: bytes, nonce16: bytes) -> bytes:
    """HChaCha20 (draft §2.2): a 32-byte subkey from a 32-byte key and 16-byte nonce."""
    if len(key) != KEY_SIZE or len(nonce16) != 16:
        raise ValueError(
            f"expected a 32-byte key and 16-byte nonce, got {len(key)}, {len(nonce16)}"
        )
    state = [*_SIGMA, *struct.unpack("<8I", key), *struct.unpack("<4I", nonce16)]
    for _ in range(10):
        _quarter_round(state, 0, 4, 8, 12)
        _quarter_round(state, 1, 5, 9, 13)
        _quarter_round(state, 2, 6, 10, 14)
        _quarter_round(state, 3, 7, 11, 15)
        _quarter_round(state, 0, 5, 10, 15)
        _quarter_round(state, 1, 6, 11, 12)
        _quarter_round(state, 2, 7, 8, 13)
        _quarter_round(state, 3, 4, 9, 14)
    # No feed-forward addition: the output words are secret-only, which is what makes
    # HChaCha20 a PRF suitable for subkey derivation.
    return struct.pack("<8I", *state[0:4], *state[12:16])


class XChaCha20Poly1305:
    """AEAD with a 24-byte nonce; same call shape as cryptography's AEAD classes."""

    def __init__(self, key: bytes) -> None:
        if len(key) != KEY_SIZE:
            raise ValueError(f"expected a {KEY_SIZE}-byte key, got {len(key)}")
        self._key = bytes(key)

    def _inner(self, nonce: bytes) -> tuple[ChaCha20Poly1305, bytes]:
        if len(nonce) != NONCE_SIZE:
            raise ValueError(f"expected a {NONCE_SIZE}-byte nonce, got {len(nonce)}")
        subkey = hchacha20(self._key, bytes(nonce[:16]))
        return ChaCha20Poly1305(subkey), b"\x00" * 4 + bytes(nonce[16:])

    def encrypt(self, nonce: bytes, data: bytes | memoryview, associated_data: bytes) -> bytes:
        """Return ciphertext || 16-byte tag."""
        cipher, inner_nonce = self._inner(nonce)
        return cipher.encrypt(inner_nonce, data, associated_data)

    def decrypt(self, nonce: bytes, data: bytes | memoryview, associated_data: bytes) -> bytes:
        """Return the plaintext, or raise cryptography.exceptions.InvalidTag."""
        cipher, inner_nonce = self._inner(nonce)
        return cipher.decrypt(inner_nonce, data, associated_data)
