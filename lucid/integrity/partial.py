"""Part of a sealed recording, failing closed like a whole restore: one chunk, or a byte
range (what a player seeking in the recording asks for).

Both check the sealed leaves against the root and the anchor first, then only the chunks
they will read: a chunk's stored ciphertext against its leaf before the first byte is
returned. A record or session field that disagrees with the leaves is refused when it
concerns a chunk being read or the session as a whole; a bad record of another chunk
does not stop a read that never touches it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from lucid.errors import NotFound
from lucid.integrity.leaves import LeafRecord
from lucid.integrity.restore import (
    Sealed,
    check_anchor,
    check_stored,
    open_chunk,
    sealed_chunks,
    session_key_for,
)
from lucid.runtime import Runtime
from lucid.storage import layout

__all__ = [
    "ByteRange",
    "chunk_ciphertext",
    "chunk_plaintext",
    "prepare_range",
    "read_range",
    "sealed_chunks",
]


def _check(rt: Runtime, sealed: Sealed, indexes: range) -> None:
    for problem in sealed.problems:
        if problem.chunk_index is None or problem.chunk_index in indexes:
            raise problem
    check_anchor(rt, sealed.session)


def _leaf(sealed: Sealed, index: int) -> LeafRecord:
    if not 0 <= index < len(sealed.leaves):
        raise NotFound(
            f"session {sealed.session['session_id']} has chunks 0..{len(sealed.leaves) - 1}, "
            f"not {index}"
        )
    return sealed.leaves[index]


def chunk_plaintext(rt: Runtime, session_id: str, index: int) -> tuple[LeafRecord, bytes]:
    """Chunk `index` decrypted, after its leaf, the root, the anchor and its stored
    ciphertext were checked; with the sealed leaf it was checked against."""
    sealed = sealed_chunks(rt, session_id)
    leaf = _leaf(sealed, index)
    _check(rt, sealed, range(index, index + 1))
    key = session_key_for(rt, sealed.session, None)
    return leaf, open_chunk(rt, session_id, leaf, key)


def chunk_ciphertext(rt: Runtime, session_id: str, index: int) -> tuple[Sealed, bytes]:
    """Chunk `index` exactly as stored, for verifying offline with its inclusion proof.

    Not checked against the leaf: the point is to let the caller find out for itself."""
    sealed = sealed_chunks(rt, session_id)
    leaf = _leaf(sealed, index)
    try:
        return sealed, rt.blobs.get(layout.encrypted_key(session_id, leaf.index))
    except FileNotFoundError:
        raise NotFound(f"session {session_id}: chunk {index} has no stored ciphertext") from None


@dataclass(frozen=True)
class ByteRange:
    """Bytes `first`..`last` (inclusive) of a recording of `size` bytes."""

    first: int
    last: int
    size: int

    @property
    def length(self) -> int:
        return self.last - self.first + 1


def prepare_range(rt: Runtime, sealed: Sealed, wanted: ByteRange) -> X25519PrivateKey:
    """Every check a read of `wanted` makes before its first byte; raise the first failure.
    Returns the session key `read_range` decrypts with: unwrapped here, so a process that
    may not decrypt refuses before a response has begun.

    `sealed` is `sealed_chunks` of the session (its size decides which ranges exist)."""
    session_id = sealed.session["session_id"]
    touched = _chunks_of(sealed, wanted)
    _check(rt, sealed, touched)
    for index in touched:
        check_stored(rt, session_id, sealed.leaves[index])
    return session_key_for(rt, sealed.session, None)


def _chunks_of(sealed: Sealed, wanted: ByteRange) -> range:
    """The indexes of the chunks holding bytes first..last."""
    start = end = None
    offset = 0
    for leaf in sealed.leaves:
        following = offset + leaf.plaintext_len
        if start is None and wanted.first < following:
            start = leaf.index
        if wanted.last < following:
            end = leaf.index
            break
        offset = following
    if start is None or end is None:
        raise NotFound(f"bytes {wanted.first}-{wanted.last} lie outside the {offset} recorded")
    return range(start, end + 1)


def read_range(
    rt: Runtime, sealed: Sealed, wanted: ByteRange, key: X25519PrivateKey
) -> Iterator[bytes]:
    """Yield bytes first..last of a recording `prepare_range` checked (`key`: what it
    returned): from the chunk holding the first byte (skipping into it) to the last one."""
    session_id = sealed.session["session_id"]
    offset = 0
    for leaf in sealed.leaves:
        following = offset + leaf.plaintext_len
        if following > wanted.first and offset <= wanted.last:
            data = open_chunk(rt, session_id, leaf, key)
            yield data[max(wanted.first - offset, 0) : wanted.last - offset + 1]
        if following > wanted.last:
            return
        offset = following
