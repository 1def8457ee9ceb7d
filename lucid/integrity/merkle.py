"""Merkle tree hashes and inclusion proofs, RFC 9162 §2.1 (the RFC 6962 tree shape).

Leaves and nodes are domain-separated (RFC 9162 §2.1.1):

    MTH({})    = HASH()
    MTH({d0})  = HASH(0x00 || d0)
    MTH(D[n])  = HASH(0x01 || MTH(D[0:k]) || MTH(D[k:n])),  k = largest power of 2 < n

The functions here take leaf *hashes* (already HASH(0x00 || record)), so callers hash
each leaf once and keep it. Lucid uses BLAKE3; SHA-256 is kept for the RFC 6962 test
vectors. Everything is iterative and O(n): a session can have thousands of chunks.

A proof does not authenticate the tree size on its own (a leaf left of the last full
subtree has the same path in neighbouring sizes), so verifiers must take `tree_size`
from the anchored record that commits to root and size together.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Sequence

import blake3

from lucid.errors import ProofError

__all__ = [
    "BLAKE3",
    "SHA256",
    "TreeHasher",
    "inclusion_proof",
    "inclusion_proofs",
    "root",
    "verify_inclusion",
]

_LEAF_PREFIX = b"\x00"
_NODE_PREFIX = b"\x01"


class TreeHasher:
    """A hash function with the RFC 9162 leaf/node domain separation."""

    def __init__(self, digest: Callable[[bytes], bytes], name: str) -> None:
        self._digest = digest
        self.name = name
        self.digest_size = len(digest(b""))

    def __repr__(self) -> str:
        return f"TreeHasher({self.name!r})"

    def hash_leaf(self, data: bytes) -> bytes:
        """HASH(0x00 || data)."""
        return self._digest(_LEAF_PREFIX + data)

    def hash_children(self, left: bytes, right: bytes) -> bytes:
        """HASH(0x01 || left || right)."""
        return self._digest(_NODE_PREFIX + left + right)

    def empty_root(self) -> bytes:
        """MTH({}) = HASH() — the root of a tree with no leaves."""
        return self._digest(b"")


def _blake3(data: bytes) -> bytes:
    return blake3.blake3(data).digest()


def _sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


BLAKE3 = TreeHasher(_blake3, "blake3")
SHA256 = TreeHasher(_sha256, "sha256")


def _next_level(hasher: TreeHasher, level: Sequence[bytes]) -> list[bytes]:
    # Pairing left to right and carrying an odd last node up unchanged gives exactly the
    # RFC's "split at the largest power of two" shape, without recursion.
    paired = [hasher.hash_children(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
    if len(level) % 2:
        paired.append(level[-1])
    return paired


def root(hasher: TreeHasher, leaf_hashes: Sequence[bytes]) -> bytes:
    """MTH over already-hashed leaves (RFC 9162 §2.1.1)."""
    if not leaf_hashes:
        return hasher.empty_root()
    level: Sequence[bytes] = leaf_hashes
    while len(level) > 1:
        level = _next_level(hasher, level)
    return level[0]


def _levels(hasher: TreeHasher, leaf_hashes: Sequence[bytes]) -> list[Sequence[bytes]]:
    levels: list[Sequence[bytes]] = [leaf_hashes]
    while len(levels[-1]) > 1:
        levels.append(_next_level(hasher, levels[-1]))
    return levels


def _path(levels: Sequence[Sequence[bytes]], index: int) -> list[bytes]:
    proof: list[bytes] = []
    for level in levels[:-1]:
        sibling = index ^ 1
        # A node without a right sibling is carried up, contributing nothing to PATH.
        if sibling < len(level):
            proof.append(level[sibling])
        index >>= 1
    return proof


def inclusion_proof(hasher: TreeHasher, leaf_hashes: Sequence[bytes], index: int) -> list[bytes]:
    """PATH(index, D[n]) of RFC 9162 §2.1.3.1, the sibling hashes from leaf to root."""
    if not 0 <= index < len(leaf_hashes):
        raise ProofError(
            f"expected a leaf index in 0..{len(leaf_hashes) - 1}, got {index}", chunk_index=index
        )
    return _path(_levels(hasher, leaf_hashes), index)


def inclusion_proofs(hasher: TreeHasher, leaf_hashes: Sequence[bytes]) -> list[list[bytes]]:
    """PATH for every leaf at once: O(n log n) instead of O(n) per proof."""
    levels = _levels(hasher, leaf_hashes)
    return [_path(levels, index) for index in range(len(leaf_hashes))]


def _proof_length(index: int, tree_size: int) -> int:
    length, fn, sn = 0, index, tree_size - 1
    while sn:
        if fn & 1 or fn != sn:
            length += 1
        fn >>= 1
        sn >>= 1
    return length


def verify_inclusion(
    hasher: TreeHasher,
    leaf_hash: bytes,
    index: int,
    tree_size: int,
    proof: Sequence[bytes],
    expected_root: bytes,
) -> None:
    """Check an inclusion proof by RFC 9162 §2.1.3.2; return None or raise ProofError."""
    # Step 1: the index must lie inside the tree.
    if not 0 <= index < tree_size:
        raise ProofError(
            f"expected leaf index < tree size {tree_size}, got {index}", chunk_index=index
        )
    want_length = _proof_length(index, tree_size)
    if len(proof) != want_length:
        raise ProofError(
            f"expected a proof of {want_length} hashes for tree size {tree_size}, got {len(proof)}",
            chunk_index=index,
        )
    for position, node in enumerate(proof):
        if len(node) != hasher.digest_size:
            raise ProofError(
                f"expected proof hash {position} of {hasher.digest_size} bytes, got {len(node)}",
                chunk_index=index,
            )
    # Step 2: fn is the leaf's position, sn the position of the last leaf.
    fn, sn = index, tree_size - 1
    # Step 3.
    r = leaf_hash
    # Step 4.
    for p in proof:
        # 4a: a proof longer than the path (already excluded above; kept to mirror the RFC).
        if sn == 0:
            raise ProofError("proof is longer than the path to the root", chunk_index=index)
        # 4b.
        if fn & 1 or fn == sn:
            r = hasher.hash_children(p, r)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            r = hasher.hash_children(r, p)
        # 4c.
        fn >>= 1
        sn >>= 1
    # Step 5.
    if sn != 0:
        raise ProofError("proof is shorter than the path to the root", chunk_index=index)
    if not hmac.compare_digest(r, expected_root):
        raise ProofError(f"expected root {expected_root.hex()}, got {r.hex()}", chunk_index=index)
