"""Offline restore: the bundle is checked against the pinned ledger key and the anchored
root, every chunk against its leaf, and decryption happens with the user's key only."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from lucid.crypto.keys import load_ledger_verify_key, load_recipient_private
from lucid.errors import IntegrityError
from lucid.integrity.offline import Bundle, decrypt_chunks
from lucid.integrity.sealed import load_sealed_leaves
from lucid.runtime import Runtime
from lucid.storage import layout
from tests.lucid.conftest import CHUNK, compressible, sealed_session

DATA = compressible(3 * CHUNK + 999, seed=5)
_RAW = serialization.Encoding.Raw, serialization.PublicFormat.Raw


def _bundle(rt: Runtime, sid: str) -> dict[str, Any]:
    """What GET /sessions/{id}/bundle answers, built from the same stores."""
    session = rt.meta.get_session(sid)
    entry = rt.ledger.find(sid)
    assert entry is not None
    leaves = load_sealed_leaves(rt.blobs, sid)
    assert leaves is not None
    return {
        "session_id": sid,
        "leaves": [leaf.to_dict() for leaf in leaves],
        "key": session["key"],
        "ledger_entry": entry.to_dict(),
        "ledger_key": rt.ledger.verify_key.public_bytes(*_RAW).hex(),
    }


def _restore(rt: Runtime, bundle: Bundle, blobs: dict[int, bytes] | None = None) -> bytes:
    def fetch(index: int) -> bytes:
        if blobs and index in blobs:
            return blobs[index]
        return rt.blobs.get(layout.encrypted_key(bundle.session_id, index))

    keys = rt.settings.keys_path
    chunks = decrypt_chunks(
        bundle, load_ledger_verify_key(keys), load_recipient_private(keys), fetch
    )
    return b"".join(chunks)


def test_a_bundle_restores_byte_identical(rt: Runtime) -> None:
    sid = sealed_session(rt, DATA)
    assert _restore(rt, Bundle.from_dict(_bundle(rt, sid))) == DATA


def test_a_tampered_chunk_is_refused_naming_it(rt: Runtime) -> None:
    sid = sealed_session(rt, DATA)
    blob = bytearray(rt.blobs.get(layout.encrypted_key(sid, 1)))
    blob[5] ^= 1
    with pytest.raises(IntegrityError, match=r"chunk 1.*ciphertext_digest: expected"):
        _restore(rt, Bundle.from_dict(_bundle(rt, sid)), {1: bytes(blob)})


def test_a_leaf_list_that_does_not_rebuild_the_anchored_root_is_refused(rt: Runtime) -> None:
    sid = sealed_session(rt, DATA)
    bundle = Bundle.from_dict(_bundle(rt, sid))
    leaves = list(bundle.leaves)
    leaves[0] = replace(leaves[0], plaintext_len=leaves[0].plaintext_len + 1)
    with pytest.raises(IntegrityError, match=r"rebuilds root .* expected .* \(anchored\)"):
        _restore(rt, replace(bundle, leaves=leaves))


def test_an_entry_signed_by_another_key_is_refused(rt: Runtime) -> None:
    sid = sealed_session(rt, DATA)
    data = _bundle(rt, sid)
    forger = Ed25519PrivateKey.generate()
    entry = data["ledger_entry"]
    entry["signature"] = forger.sign(bytes.fromhex(entry["entry_hash"])).hex()
    with pytest.raises(IntegrityError, match="signature: expected one by the pinned ledger key"):
        _restore(rt, Bundle.from_dict(data))
    data["ledger_key"] = forger.public_key().public_bytes(*_RAW).hex()
    with pytest.raises(IntegrityError, match=r"ledger key: expected .* \(pinned\)"):
        _restore(rt, Bundle.from_dict(data))


def test_an_entry_of_another_session_is_refused(rt: Runtime) -> None:
    sid = sealed_session(rt, DATA)
    other = sealed_session(rt, DATA[:1000])
    data = _bundle(rt, sid)
    data["ledger_entry"] = _bundle(rt, other)["ledger_entry"]
    with pytest.raises(IntegrityError, match="ledger entry session_id: expected"):
        _restore(rt, Bundle.from_dict(data))
