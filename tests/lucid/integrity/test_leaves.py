"""The canonical leaf record: invariants, encoding, JSON form."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import blake3
import pytest
from hypothesis import given
from hypothesis import strategies as st

from lucid.errors import InvalidInput
from lucid.integrity.leaves import LEAF_DOMAIN, LeafRecord, ciphertext_digest_of
from lucid.integrity.merkle import BLAKE3, SHA256


def _record(**changes: Any) -> LeafRecord:
    base: dict[str, Any] = {
        "session_id": "0123456789abcdef0123456789abcdef",
        "index": 3,
        "final": False,
        "plaintext_len": 10_485_760,
        "compressed_len": 4_000_000,
        "ciphertext_len": 4_000_053,
        "compression": "zstd",
        "encryption": "AES-256-GCM",
        "ciphertext_digest": ciphertext_digest_of(b"blob"),
    }
    return LeafRecord(**{**base, **changes})


records = st.builds(
    LeafRecord,
    session_id=st.text(min_size=1, max_size=40),
    index=st.integers(0, 2**64 - 1),
    final=st.booleans(),
    plaintext_len=st.integers(0, 2**64 - 1),
    compressed_len=st.integers(0, 2**64 - 1),
    ciphertext_len=st.integers(0, 2**64 - 1),
    compression=st.text(min_size=1, max_size=10),
    encryption=st.text(min_size=1, max_size=20),
    ciphertext_digest=st.binary(min_size=32, max_size=32),
)


def test_ciphertext_digest_is_blake3() -> None:
    assert ciphertext_digest_of(b"abc") == blake3.blake3(b"abc").digest()


def test_encoding_layout_is_pinned() -> None:
    record = _record(session_id="s", index=1, final=True, compression="z", encryption="e")
    expected = (
        LEAF_DOMAIN
        + b"\x00\x01s"
        + (1).to_bytes(8, "big")
        + b"\x01"
        + (10_485_760).to_bytes(8, "big")
        + (4_000_000).to_bytes(8, "big")
        + (4_000_053).to_bytes(8, "big")
        + b"\x00\x01z\x00\x01e"
        + ciphertext_digest_of(b"blob")
    )
    assert record.encode() == expected


def test_leaf_hash_is_domain_separated_hash_of_encoding() -> None:
    record = _record()
    assert record.leaf_hash() == blake3.blake3(b"\x00" + record.encode()).digest()
    assert record.leaf_hash(SHA256) == SHA256.hash_leaf(record.encode())
    assert record.leaf_hash() == record.leaf_hash(BLAKE3)


@pytest.mark.parametrize(
    "change",
    [
        {"session_id": "0123456789abcdef0123456789abcdee"},
        {"index": 4},
        {"final": True},
        {"plaintext_len": 10_485_761},
        {"compressed_len": 4_000_001},
        {"ciphertext_len": 4_000_054},
        {"compression": "gzip"},
        {"encryption": "XChaCha20-Poly1305"},
        {"ciphertext_digest": ciphertext_digest_of(b"blob2")},
    ],
)
def test_every_field_changes_the_leaf_hash(change: dict[str, Any]) -> None:
    assert _record(**change).leaf_hash() != _record().leaf_hash()


def test_moving_bytes_between_strings_changes_the_encoding() -> None:
    a = _record(compression="ab", encryption="c")
    b = _record(compression="a", encryption="bc")
    assert a.encode() != b.encode()


@given(records, records)
def test_encoding_is_injective(a: LeafRecord, b: LeafRecord) -> None:
    assert (a.encode() == b.encode()) == (a == b)


@given(records)
def test_dict_round_trip_through_json(record: LeafRecord) -> None:
    data = json.loads(json.dumps(record.to_dict()))
    assert LeafRecord.from_dict(data) == record


def test_to_dict_uses_lowercase_hex_digest() -> None:
    record = _record()
    assert record.to_dict()["ciphertext_digest"] == record.ciphertext_digest.hex()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"index": -1}, "leaf index: expected an integer"),
        ({"index": True}, "leaf index"),
        ({"plaintext_len": -5}, "leaf plaintext_len"),
        ({"ciphertext_len": 2**64}, "leaf ciphertext_len"),
        ({"final": 1}, "leaf final: expected a bool"),
        ({"session_id": ""}, "leaf session_id"),
        ({"compression": ""}, "leaf compression"),
        ({"encryption": 7}, "leaf encryption"),
        ({"ciphertext_digest": b"\x00" * 31}, "expected 32 bytes, got 31 bytes"),
        ({"ciphertext_digest": "00" * 32}, "leaf ciphertext_digest"),
    ],
)
def test_invalid_records_are_refused(change: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        _record(**change)


@pytest.mark.parametrize(
    "mutate",
    [
        lambda d: d.pop("index"),
        lambda d: d.update(extra=1),
        lambda d: d.update(ciphertext_digest="zz" * 32),
        lambda d: d.update(ciphertext_digest="AB" * 32),
        lambda d: d.update(ciphertext_digest="ab" * 31),
        lambda d: d.update(final="yes"),
        lambda d: d.update(index="3"),
    ],
)
def test_from_dict_refuses_bad_input(mutate: Any) -> None:
    data = _record().to_dict()
    mutate(data)
    with pytest.raises(InvalidInput):
        LeafRecord.from_dict(data)


def test_from_dict_refuses_non_objects() -> None:
    with pytest.raises(InvalidInput, match="expected an object, got list"):
        LeafRecord.from_dict([])  # type: ignore[arg-type]


def test_records_are_immutable() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        _record().index = 9  # type: ignore[misc]
