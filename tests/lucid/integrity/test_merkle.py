"""RFC 6962 reference vectors plus properties of inclusion proofs."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lucid.errors import ProofError
from lucid.integrity.merkle import (
    BLAKE3,
    SHA256,
    TreeHasher,
    inclusion_proof,
    inclusion_proofs,
    root,
    verify_inclusion,
)

# certificate-transparency cpp/merkletree/merkle_tree_test.cc: kInputs, kSHA256Roots,
# kSHA256Paths (the same values as transparency-dev/merkle testonly/constants.go).
CT_INPUTS = [
    bytes.fromhex(h)
    for h in (
        "",
        "00",
        "10",
        "2021",
        "3031",
        "40414243",
        "5051525354555657",
        "606162636465666768696a6b6c6d6e6f",
    )
]
CT_ROOTS = [
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]
# (leaf index, tree size, path) — the C++ table is 1-based in the leaf, this is 0-based.
CT_PATHS = [
    (0, 1, []),
    (
        0,
        8,
        [
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
    ),
    (
        5,
        8,
        [
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
    (2, 3, ["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"]),
    (
        1,
        5,
        [
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ],
    ),
]
CT_LEAF_HASHES = [SHA256.hash_leaf(d) for d in CT_INPUTS]


def _reference_mth(hasher: TreeHasher, leaves: list[bytes]) -> bytes:
    """The RFC's recursive definition, for cross-checking the iterative one."""
    if not leaves:
        return hasher.empty_root()
    if len(leaves) == 1:
        return leaves[0]
    k = 1 << ((len(leaves) - 1).bit_length() - 1)
    return hasher.hash_children(
        _reference_mth(hasher, leaves[:k]), _reference_mth(hasher, leaves[k:])
    )


def _leaves(n: int) -> list[bytes]:
    return [BLAKE3.hash_leaf(i.to_bytes(4, "big")) for i in range(n)]


def _flip(data: bytes, position: int) -> bytes:
    out = bytearray(data)
    out[position % len(out)] ^= 0x01
    return bytes(out)


def test_empty_tree_root_is_hash_of_nothing() -> None:
    assert root(SHA256, []) == hashlib.sha256(b"").digest()
    assert root(BLAKE3, []) == BLAKE3.empty_root()


def test_leaf_and_node_hashes_are_domain_separated() -> None:
    assert SHA256.hash_leaf(b"") == hashlib.sha256(b"\x00").digest()
    assert SHA256.hash_children(b"a", b"b") == hashlib.sha256(b"\x01ab").digest()


@pytest.mark.parametrize("size", range(1, 9))
def test_roots_match_rfc6962_reference_vectors(size: int) -> None:
    assert root(SHA256, CT_LEAF_HASHES[:size]).hex() == CT_ROOTS[size - 1]


@pytest.mark.parametrize(("index", "size", "path"), CT_PATHS)
def test_paths_match_rfc6962_reference_vectors(index: int, size: int, path: list[str]) -> None:
    leaves = CT_LEAF_HASHES[:size]
    assert [h.hex() for h in inclusion_proof(SHA256, leaves, index)] == path
    verify_inclusion(
        SHA256,
        leaves[index],
        index,
        size,
        [bytes.fromhex(h) for h in path],
        bytes.fromhex(CT_ROOTS[size - 1]),
    )


@pytest.mark.parametrize("size", [1, 2, 3, 5, 7, 8, 9, 31, 64, 100])
def test_iterative_root_matches_recursive_definition(size: int) -> None:
    leaves = _leaves(size)
    assert root(BLAKE3, leaves) == _reference_mth(BLAKE3, leaves)


def test_all_proofs_at_once_equal_single_proofs() -> None:
    leaves = _leaves(37)
    assert inclusion_proofs(BLAKE3, leaves) == [
        inclusion_proof(BLAKE3, leaves, i) for i in range(37)
    ]


def test_large_tree_is_fast_enough() -> None:
    leaves = _leaves(5000)
    top = root(BLAKE3, leaves)
    proofs = inclusion_proofs(BLAKE3, leaves)
    verify_inclusion(BLAKE3, leaves[4321], 4321, 5000, proofs[4321], top)


@settings(max_examples=150, deadline=None)
@given(st.integers(1, 300).flatmap(lambda n: st.tuples(st.just(n), st.integers(0, n - 1))))
def test_every_generated_proof_verifies(case: tuple[int, int]) -> None:
    n, index = case
    leaves = _leaves(n)
    verify_inclusion(
        BLAKE3,
        leaves[index],
        index,
        n,
        inclusion_proof(BLAKE3, leaves, index),
        root(BLAKE3, leaves),
    )


@settings(max_examples=150, deadline=None)
@given(
    st.integers(2, 200).flatmap(lambda n: st.tuples(st.just(n), st.integers(0, n - 1))),
    st.integers(0, 10_000),
    st.sampled_from(["leaf", "proof", "root"]),
)
def test_flipping_any_byte_fails(case: tuple[int, int], position: int, target: str) -> None:
    n, index = case
    leaves = _leaves(n)
    leaf, proof, top = leaves[index], inclusion_proof(BLAKE3, leaves, index), root(BLAKE3, leaves)
    if target == "leaf":
        leaf = _flip(leaf, position)
    elif target == "root":
        top = _flip(top, position)
    else:
        which = position % len(proof)
        proof[which] = _flip(proof[which], position // len(proof))
    with pytest.raises(ProofError, match=f"chunk {index}: expected"):
        verify_inclusion(BLAKE3, leaf, index, n, proof, top)


@settings(max_examples=150, deadline=None)
@given(st.integers(2, 200), st.data())
def test_proof_for_one_index_fails_at_another(n: int, data: st.DataObject) -> None:
    i = data.draw(st.integers(0, n - 1))
    j = data.draw(st.integers(0, n - 1).filter(lambda x: x != i))
    leaves = _leaves(n)
    proof, top = inclusion_proof(BLAKE3, leaves, i), root(BLAKE3, leaves)
    with pytest.raises(ProofError):
        verify_inclusion(BLAKE3, leaves[i], j, n, proof, top)


def test_index_outside_tree_is_rejected() -> None:
    leaves = _leaves(4)
    with pytest.raises(ProofError, match="expected leaf index < tree size 4, got 4"):
        verify_inclusion(BLAKE3, leaves[0], 4, 4, [], root(BLAKE3, leaves))
    with pytest.raises(ProofError, match=r"expected a leaf index in 0\.\.3, got 4"):
        inclusion_proof(BLAKE3, leaves, 4)


def test_wrong_proof_length_is_rejected() -> None:
    leaves = _leaves(8)
    proof, top = inclusion_proof(BLAKE3, leaves, 3), root(BLAKE3, leaves)
    with pytest.raises(ProofError, match="expected a proof of 3 hashes for tree size 8, got 2"):
        verify_inclusion(BLAKE3, leaves[3], 3, 8, proof[:2], top)
    with pytest.raises(ProofError, match="got 4"):
        verify_inclusion(BLAKE3, leaves[3], 3, 8, [*proof, top], top)


def test_proof_against_a_different_tree_shape_fails() -> None:
    # Only a size that changes the path's shape can be caught here; the tree size itself is
    # authenticated by the anchor record, which commits to root and size together.
    leaves = _leaves(6)
    proof = inclusion_proof(BLAKE3, leaves, 4)
    with pytest.raises(ProofError, match="expected a proof of 1 hashes for tree size 5, got 2"):
        verify_inclusion(BLAKE3, leaves[4], 4, 5, proof, root(BLAKE3, leaves))


def test_root_mismatch_message_names_both_roots() -> None:
    leaves = _leaves(3)
    bad_root = b"\x00" * 32
    with pytest.raises(ProofError) as caught:
        verify_inclusion(BLAKE3, leaves[1], 1, 3, inclusion_proof(BLAKE3, leaves, 1), bad_root)
    assert f"expected root {bad_root.hex()}, got {root(BLAKE3, leaves).hex()}" in str(caught.value)
    assert caught.value.chunk_index == 1
