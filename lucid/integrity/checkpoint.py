"""Signed checkpoints of the ledger head, in the style of C2SP tlog-checkpoint.

A checkpoint commits to the ledger's first `size` entries through the `entry_hash` of
entry `size - 1` (the hash chain makes that one hash commit to every earlier entry). The
signed text is a C2SP-style note body:

    <origin>\\n<size>\\n<head entry_hash, hex>\\n<time>\\n

signed with the ledger's Ed25519 key. The JSON form carries the raw public key (hex) so
a kept checkpoint pins the key too. Only the anchor role, which holds the signing key,
writes checkpoints; anyone can verify them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from lucid.errors import InvalidInput, LedgerError

__all__ = ["ORIGIN", "Checkpoint", "sign_checkpoint"]

ORIGIN = "lucid-ledger/v1"
_RAW = serialization.Encoding.Raw, serialization.PublicFormat.Raw


def _hex(value: object, length: int) -> bool:
    return (
        isinstance(value, str)
        and len(value) == length
        and all(c in "0123456789abcdef" for c in value)
    )


@dataclass(frozen=True)
class Checkpoint:
    """The ledger head at `size` entries, signed by the ledger key."""

    origin: str
    size: int
    head: str
    time: str
    key: str
    signature: str

    def __post_init__(self) -> None:
        if not isinstance(self.origin, str) or not self.origin or "\n" in self.origin:
            raise InvalidInput(f"checkpoint origin: expected one line, got {self.origin!r}")
        if isinstance(self.size, bool) or not isinstance(self.size, int) or self.size < 0:
            raise InvalidInput(f"checkpoint size: expected an integer >= 0, got {self.size!r}")
        if not isinstance(self.time, str) or "\n" in self.time:
            raise InvalidInput(f"checkpoint time: expected one line, got {self.time!r}")
        for name, length in (("head", 64), ("key", 64), ("signature", 128)):
            if not _hex(getattr(self, name), length):
                raise InvalidInput(
                    f"checkpoint {name}: expected {length} lowercase hex chars, "
                    f"got {getattr(self, name)!r}"
                )

    def note(self) -> bytes:
        """The signed text."""
        return f"{self.origin}\n{self.size}\n{self.head}\n{self.time}\n".encode()

    def public_key(self) -> Ed25519PublicKey:
        return Ed25519PublicKey.from_public_bytes(bytes.fromhex(self.key))

    def verify(self, key: Ed25519PublicKey | None = None) -> None:
        """Check the signature (by `key`, else by the key the checkpoint names)."""
        signer = key or self.public_key()
        if key is not None and key.public_bytes(*_RAW).hex() != self.key:
            raise LedgerError(
                f"checkpoint key: expected {key.public_bytes(*_RAW).hex()}, got {self.key}"
            )
        try:
            signer.verify(bytes.fromhex(self.signature), self.note())
        except InvalidSignature:
            raise LedgerError(
                f"checkpoint of size {self.size}: expected a signature by key {self.key}, "
                "got one that does not verify"
            ) from None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Any) -> Checkpoint:
        """Build from `to_dict()` output; bad input raises InvalidInput."""
        names = set(cls.__dataclass_fields__)
        if not isinstance(data, dict) or data.keys() != names:
            got = sorted(data) if isinstance(data, dict) else type(data).__name__
            raise InvalidInput(f"checkpoint: expected keys {sorted(names)}, got {got}")
        return cls(**data)


def sign_checkpoint(signing_key: Ed25519PrivateKey, size: int, head: str) -> Checkpoint:
    """A checkpoint of the ledger head at `size` entries, signed now."""
    unsigned = Checkpoint(
        origin=ORIGIN,
        size=size,
        head=head,
        time=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        key=signing_key.public_key().public_bytes(*_RAW).hex(),
        signature="0" * 128,
    )
    signature = signing_key.sign(unsigned.note()).hex()
    return Checkpoint(**{**unsigned.to_dict(), "signature": signature})
