"""One contract for every ledger backend: the JSON Lines file and the metadata database.

Append, find, verify, checkpoints and consistency behave the same; tampering with the
stored entries is caught the same way; concurrent appenders form one chain (flock for the
file, compare-and-set on `seq` for the database).
"""

from __future__ import annotations

import json
import multiprocessing
from collections.abc import Callable
from pathlib import Path
from typing import Any

import blake3
import pymongo
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from lucid.errors import Conflict, KeyMaterialError, LedgerError
from lucid.integrity.ledger import (
    ZERO_HASH,
    Ledger,
    LedgerEntry,
    SignedLedger,
    entry_hash_of,
    verify_consistency,
)
from lucid.integrity.ledger_db import DbLedger
from lucid.storage.metadata import MetadataStore

KEY = Ed25519PrivateKey.generate()
Db = pymongo.database.Database[dict[str, Any]]
Open = Callable[[Ed25519PrivateKey | None], SignedLedger]


def _root(n: int) -> bytes:
    return blake3.blake3(n.to_bytes(4, "big")).digest()


@pytest.fixture(params=["file", "db"])
def open_ledger(request: pytest.FixtureRequest, tmp_path: Path) -> Open:
    """Open the same ledger (one per test) with a given signing key."""
    if request.param == "file":
        return lambda key: Ledger(tmp_path / "ledger.jsonl", key, KEY.public_key())
    db: Db = request.getfixturevalue("mongo_db")
    store = MetadataStore(db)
    store.ensure_indexes()
    return lambda key: DbLedger(store, key, KEY.public_key())


@pytest.fixture
def filled(open_ledger: Open) -> SignedLedger:
    ledger = open_ledger(KEY)
    for i in range(5):
        ledger.append(f"session-{i}", _root(i), i + 1)
    return ledger


def _stored(ledger: SignedLedger) -> list[dict[str, Any]]:
    if isinstance(ledger, Ledger):
        return [json.loads(line) for line in ledger.path.read_text().splitlines()]
    assert isinstance(ledger, DbLedger)
    return ledger.rows.ledger_range(0)


def _store(ledger: SignedLedger, docs: list[dict[str, Any]]) -> None:
    """Replace the stored entries with `docs`, as a tamperer with write access would."""
    if isinstance(ledger, Ledger):
        ledger.path.write_text("".join(json.dumps(doc) + "\n" for doc in docs))
        return
    assert isinstance(ledger, DbLedger)
    assert isinstance(ledger.rows, MetadataStore)
    ledger.rows.ledger.delete_many({})
    for doc in docs:
        ledger.rows.ledger.insert_one(dict(doc))


def test_entries_chain_from_zeros_and_are_found_verified(filled: SignedLedger) -> None:
    entries = list(filled.entries())
    assert [e.seq for e in entries] == [0, 1, 2, 3, 4]
    assert entries[0].prev_hash == ZERO_HASH
    assert [e.prev_hash for e in entries[1:]] == [e.entry_hash for e in entries[:-1]]
    assert filled.find("session-3") == entries[3]
    assert filled.find("nobody") is None
    assert filled.verify() == 5


def test_the_same_root_again_is_the_same_entry_and_another_root_a_conflict(
    filled: SignedLedger,
) -> None:
    first = filled.find("session-1")
    assert filled.append("session-1", _root(1), 2) == first
    with pytest.raises(Conflict, match="already anchored"):
        filled.append("session-1", _root(99), 2)
    assert filled.verify() == 5


def test_a_ledger_opened_without_the_signing_key_reads_but_cannot_append(
    filled: SignedLedger, open_ledger: Open
) -> None:
    reader = open_ledger(None)
    assert reader.verify() == 5
    with pytest.raises(KeyMaterialError, match="without its signing key"):
        reader.append("session-new", _root(50), 1)


def test_an_edited_entry_fails_verify_and_find(filled: SignedLedger) -> None:
    docs = _stored(filled)
    docs[2]["root"] = "ab" * 32
    _store(filled, docs)
    with pytest.raises(LedgerError, match="seq 2\\): expected entry_hash"):
        filled.verify()
    with pytest.raises(LedgerError, match="expected entry_hash"):
        filled.find("session-2")
    assert filled.find("session-1") is not None  # entries before it still verify


def test_an_entry_rehashed_without_the_key_fails_its_signature(filled: SignedLedger) -> None:
    docs = _stored(filled)
    docs[2]["root"] = "ab" * 32
    docs[2]["entry_hash"] = entry_hash_of(LedgerEntry.from_dict(docs[2]).body())
    _store(filled, docs)
    with pytest.raises(LedgerError, match="seq 2\\): expected a signature"):
        filled.find("session-2")


def test_a_removed_entry_fails_find_of_every_later_session(filled: SignedLedger) -> None:
    docs = _stored(filled)
    del docs[1]
    _store(filled, docs)
    assert filled.find("session-0") is not None
    with pytest.raises(LedgerError, match="expected seq 1, got 2"):
        filled.find("session-3")


def test_append_refuses_to_chain_onto_a_forged_head(filled: SignedLedger) -> None:
    docs = _stored(filled)
    docs[-1]["tree_size"] = 999
    _store(filled, docs)
    with pytest.raises(LedgerError, match="expected entry_hash"):
        filled.append("session-new", _root(50), 1)


def test_every_append_checkpoints_the_head_and_the_growth_is_provable(
    open_ledger: Open,
) -> None:
    ledger = open_ledger(KEY)
    assert ledger.checkpoint() is None
    ledger.append("a", _root(1), 1)
    ledger.append("b", _root(2), 1)
    kept = ledger.checkpoint()
    assert kept is not None and kept.size == 2
    assert kept.head == ledger.find("b").entry_hash  # type: ignore[union-attr]
    for i in range(3, 6):
        ledger.append(f"s{i}", _root(i), 1)
    reader = open_ledger(None)
    head, entries = reader.consistency(kept.size)
    assert head.size == 5
    verify_consistency(kept, head, entries)


def test_a_rewritten_history_does_not_extend_a_kept_checkpoint(open_ledger: Open) -> None:
    ledger = open_ledger(KEY)
    for i in range(3):
        ledger.append(f"s{i}", _root(i), 1)
    kept = ledger.checkpoint()
    assert kept is not None
    docs = _stored(ledger)
    entry = LedgerEntry.from_dict(docs[2])
    body = {**entry.body(), "root": "cd" * 32}
    digest = entry_hash_of(body)
    docs[2] = LedgerEntry(
        **body, entry_hash=digest, signature=KEY.sign(bytes.fromhex(digest)).hex()
    ).to_dict()
    _store(ledger, docs)
    ledger.append("s3", _root(3), 1)
    head, entries = ledger.consistency(kept.size)
    with pytest.raises(LedgerError, match="ledger rewritten"):
        verify_consistency(kept, head, entries)


def _append_many(kind: str, where: str, db_name: str, private: bytes, worker: int) -> None:
    key = Ed25519PrivateKey.from_private_bytes(private)
    ledger: SignedLedger
    if kind == "file":
        ledger = Ledger(Path(where), key, key.public_key())
    else:
        client: pymongo.MongoClient[dict[str, Any]] = pymongo.MongoClient(where)
        ledger = DbLedger(MetadataStore(client[db_name]), key, key.public_key())
    for i in range(10):
        ledger.append(f"w{worker}-s{i}", _root(worker * 100 + i), i + 1)


def test_concurrent_appenders_form_one_chain(
    open_ledger: Open, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    ledger = open_ledger(None)
    if isinstance(ledger, Ledger):
        kind, where, db_name = "file", str(ledger.path), ""
    else:
        assert isinstance(ledger, DbLedger) and isinstance(ledger.rows, MetadataStore)
        kind, where, db_name = "db", request.getfixturevalue("mongodb_url"), ledger.rows.db.name
    private = KEY.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    ctx = multiprocessing.get_context("spawn")
    workers = [
        ctx.Process(target=_append_many, args=(kind, where, db_name, private, w)) for w in range(3)
    ]
    for p in workers:
        p.start()
    for p in workers:
        p.join(timeout=120)
    assert [p.exitcode for p in workers] == [0, 0, 0]
    assert ledger.verify() == 30
    assert len({e.session_id for e in ledger.entries()}) == 30
    head = ledger.checkpoint()
    assert head is not None and head.size == 30
