"""The sealed leaf list: the leaf records a seal committed to, kept beside the chunks.

Chunk records are working state that any stage may rewrite; the root alone cannot say
which record went wrong. So the seal also stores the leaf records it hashed, as one
write-once blob (JSON Lines, one `LeafRecord.to_dict()` per line, in index order). The
list is trusted only after it rebuilds the sealed root (see `lucid.integrity.restore`); from then on
every chunk record can be compared with it field by field, and a refusal names the
chunk and the field.
"""

from __future__ import annotations

import json

from lucid.errors import IntegrityError, InvalidInput
from lucid.integrity.leaves import LeafRecord
from lucid.storage.blobs import BlobStore
from lucid.storage.layout import check_session_id

__all__ = ["load_sealed_leaves", "sealed_leaves_key", "store_sealed_leaves"]


def sealed_leaves_key(session_id: str) -> str:
    """Blob key of a session's sealed leaf list."""
    return f"sessions/{check_session_id(session_id)}/leaves.jsonl"


def _encode(leaves: list[LeafRecord]) -> bytes:
    lines = (json.dumps(leaf.to_dict(), sort_keys=True, separators=(",", ":")) for leaf in leaves)
    return "".join(line + "\n" for line in lines).encode()


def store_sealed_leaves(blobs: BlobStore, session_id: str, leaves: list[LeafRecord]) -> None:
    """Store the leaf list before the seal commits (durable; a stale list is replaced)."""
    key, data = sealed_leaves_key(session_id), _encode(leaves)
    if blobs.put(key, data):
        return
    # An earlier seal attempt that never committed may have left another list behind;
    # until the seal commits, the list is not yet authoritative, so it is replaced.
    if blobs.get(key) != data:
        blobs.delete(key)
        blobs.put(key, data)


def load_sealed_leaves(blobs: BlobStore, session_id: str) -> list[LeafRecord] | None:
    """The stored leaf list (unverified: check it rebuilds the root), or None if absent."""
    try:
        data = blobs.get(sealed_leaves_key(session_id))
    except FileNotFoundError:
        return None
    leaves = []
    for number, line in enumerate(data.decode("utf-8", "replace").splitlines(), start=1):
        try:
            leaves.append(LeafRecord.from_dict(json.loads(line)))
        except (ValueError, TypeError, InvalidInput) as exc:
            raise IntegrityError(
                f"sealed leaf list line {number}: expected a leaf record, got {exc}",
                session_id=session_id,
            ) from None
    return leaves
