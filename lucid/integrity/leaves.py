"""The canonical leaf record: what one chunk commits to in the session's Merkle tree.

A leaf commits to the session id, the chunk index, the final-chunk flag, the three
lengths, the codec and cipher names and the BLAKE3 digest of the stored *ciphertext*
blob — never a bare plaintext hash, which would leak equality of recordings.

Binary encoding (version 1), all integers big-endian:

    b"lucid.leaf.v1\\x00"
    u16 len || session_id (UTF-8)
    u64 index || u8 final
    u64 plaintext_len || u64 compressed_len || u64 ciphertext_len
    u16 len || compression (UTF-8) || u16 len || encryption (UTF-8)
    32 bytes ciphertext_digest
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, fields
from typing import Any

import blake3

from lucid.errors import InvalidInput
from lucid.integrity.merkle import BLAKE3, TreeHasher

__all__ = ["DIGEST_SIZE", "LEAF_DOMAIN", "LeafRecord", "ciphertext_digest_of"]

LEAF_DOMAIN = b"lucid.leaf.v1\x00"
DIGEST_SIZE = 32
_U64_MAX = 2**64 - 1
_U16_MAX = 2**16 - 1


def ciphertext_digest_of(data: bytes | memoryview) -> bytes:
    """The 32-byte BLAKE3 digest of a stored ciphertext blob."""
    return blake3.blake3(data).digest()


def _text(value: bytes) -> bytes:
    return struct.pack(">H", len(value)) + value


def _check_name(field: str, value: object) -> None:
    if not isinstance(value, str) or not value:
        raise InvalidInput(f"leaf {field}: expected a non-empty string, got {value!r}")
    if len(value.encode()) > _U16_MAX:
        raise InvalidInput(f"leaf {field}: expected at most {_U16_MAX} bytes, got {len(value)}")


def _check_count(field: str, value: object) -> None:
    # bool is an int subclass; True as a length is a caller bug, not a 1.
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= _U64_MAX:
        raise InvalidInput(f"leaf {field}: expected an integer in 0..2**64-1, got {value!r}")


@dataclass(frozen=True)
class LeafRecord:
    """One chunk's commitment; checks its invariants when built."""

    session_id: str
    index: int
    final: bool
    plaintext_len: int
    compressed_len: int
    ciphertext_len: int
    compression: str
    encryption: str
    ciphertext_digest: bytes

    def __post_init__(self) -> None:
        for name in ("session_id", "compression", "encryption"):
            _check_name(name, getattr(self, name))
        for name in ("index", "plaintext_len", "compressed_len", "ciphertext_len"):
            _check_count(name, getattr(self, name))
        if not isinstance(self.final, bool):
            raise InvalidInput(f"leaf final: expected a bool, got {self.final!r}")
        if not isinstance(self.ciphertext_digest, bytes) or len(self.ciphertext_digest) != 32:
            got = (
                f"{len(self.ciphertext_digest)} bytes"
                if isinstance(self.ciphertext_digest, bytes)
                else repr(self.ciphertext_digest)
            )
            raise InvalidInput(f"leaf ciphertext_digest: expected {DIGEST_SIZE} bytes, got {got}")

    def encode(self) -> bytes:
        """The canonical, unambiguous binary form that the leaf hash covers."""
        return b"".join(
            (
                LEAF_DOMAIN,
                _text(self.session_id.encode()),
                struct.pack(
                    ">QBQQQ",
                    self.index,
                    1 if self.final else 0,
                    self.plaintext_len,
                    self.compressed_len,
                    self.ciphertext_len,
                ),
                _text(self.compression.encode()),
                _text(self.encryption.encode()),
                self.ciphertext_digest,
            )
        )

    def leaf_hash(self, hasher: TreeHasher = BLAKE3) -> bytes:
        """HASH(0x00 || encode()), the Merkle leaf of this chunk."""
        return hasher.hash_leaf(self.encode())

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form; the digest is lowercase hex."""
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["ciphertext_digest"] = self.ciphertext_digest.hex()
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LeafRecord:
        """Build from `to_dict()` output; exactly those keys, else InvalidInput."""
        if not isinstance(data, dict):
            raise InvalidInput(f"leaf record: expected an object, got {type(data).__name__}")
        names = {f.name for f in fields(cls)}
        missing, extra = names - data.keys(), data.keys() - names
        if missing or extra:
            raise InvalidInput(
                f"leaf record: expected keys {sorted(names)}, "
                f"missing {sorted(missing)}, unexpected {sorted(map(str, extra))}"
            )
        digest = data["ciphertext_digest"]
        if (
            not isinstance(digest, str)
            or len(digest) != 2 * DIGEST_SIZE
            or digest != digest.lower()
        ):
            raise InvalidInput(
                f"leaf ciphertext_digest: expected {2 * DIGEST_SIZE} lowercase hex chars, "
                f"got {digest!r}"
            )
        try:
            raw = bytes.fromhex(digest)
        except ValueError:
            raise InvalidInput(f"leaf ciphertext_digest: expected hex, got {digest!r}") from None
        return cls(**{**data, "ciphertext_digest": raw})
