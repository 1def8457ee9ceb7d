"""Signed checkpoints of the ledger head and the proof that a ledger extends a kept one."""

from __future__ import annotations

import json
from pathlib import Path

import blake3
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from lucid.errors import InvalidInput, LedgerError
from lucid.integrity.checkpoint import Checkpoint, sign_checkpoint
from lucid.integrity.ledger import ZERO_HASH, Ledger, verify_consistency

KEY = Ed25519PrivateKey.generate()


def _root(n: int) -> bytes:
    return blake3.blake3(n.to_bytes(4, "big")).digest()


@pytest.fixture
def ledger(tmp_path: Path) -> Ledger:
    return Ledger(tmp_path / "ledger.jsonl", KEY, KEY.public_key())


def _fill(ledger: Ledger, start: int, stop: int) -> None:
    for i in range(start, stop):
        ledger.append(f"session-{i}", _root(i), i + 1)


def _head(ledger: Ledger) -> Checkpoint:
    checkpoint = ledger.checkpoint()
    assert checkpoint is not None
    return checkpoint


def test_every_append_publishes_a_signed_checkpoint_of_the_head(ledger: Ledger) -> None:
    assert ledger.checkpoint() is None
    _fill(ledger, 0, 3)
    head = _head(ledger)
    assert head.size == 3
    assert head.head == list(ledger.entries())[-1].entry_hash
    head.verify(KEY.public_key())
    assert Checkpoint.from_dict(json.loads(json.dumps(head.to_dict()))) == head


@pytest.mark.parametrize("kept_size", [0, 1, 3, 6])
def test_a_ledger_that_only_grew_extends_every_kept_checkpoint(
    ledger: Ledger, kept_size: int
) -> None:
    _fill(ledger, 0, kept_size)
    kept = _head(ledger) if kept_size else sign_checkpoint(KEY, 0, ZERO_HASH)
    _fill(ledger, kept_size, 6)
    new, entries = ledger.consistency(kept.size)
    assert new.size == 6
    assert len(entries) == 6 - max(kept_size - 1, 0)
    verify_consistency(kept, new, entries)


def _rewrite_history(ledger: Ledger, index: int) -> None:
    """What a forger with the ledger key does: change one root and re-sign the chain."""
    entries = list(ledger.entries())
    ledger.path.unlink()
    ledger.checkpoint_path.unlink()
    for i, entry in enumerate(entries):
        root = _root(1000) if i == index else bytes.fromhex(entry.root)
        ledger.append(entry.session_id, root, entry.tree_size)


@pytest.mark.parametrize("index", [0, 2, 3])
def test_a_history_rewritten_with_the_ledger_key_does_not_extend_a_kept_checkpoint(
    ledger: Ledger, index: int
) -> None:
    _fill(ledger, 0, 4)
    kept = _head(ledger)
    _fill(ledger, 4, 6)
    _rewrite_history(ledger, index)
    ledger.verify()  # on its own the rewritten ledger is perfectly consistent
    new, entries = ledger.consistency(kept.size)
    with pytest.raises(LedgerError, match="ledger rewritten: entry seq 3: expected entry_hash"):
        verify_consistency(kept, new, entries)


def test_a_shrunk_ledger_does_not_extend_a_kept_checkpoint(ledger: Ledger) -> None:
    _fill(ledger, 0, 4)
    kept = _head(ledger)
    with pytest.raises(LedgerError, match="expected at least 5 entries"):
        ledger.consistency(5)
    new = sign_checkpoint(KEY, 2, list(ledger.entries())[1].entry_hash)
    with pytest.raises(LedgerError, match="ledger size: expected at least 4, got 2"):
        verify_consistency(kept, new, [])


def test_a_checkpoint_signed_by_another_key_is_refused(ledger: Ledger) -> None:
    _fill(ledger, 0, 2)
    kept = _head(ledger)
    other = Ed25519PrivateKey.generate()
    new, entries = ledger.consistency(kept.size)
    forged = sign_checkpoint(other, new.size, new.head)
    with pytest.raises(LedgerError, match="checkpoint key: expected"):
        verify_consistency(kept, forged, entries)


def test_an_edited_checkpoint_fails_its_signature(ledger: Ledger) -> None:
    _fill(ledger, 0, 2)
    edited = Checkpoint.from_dict({**_head(ledger).to_dict(), "size": 1})
    with pytest.raises(LedgerError, match="does not verify"):
        edited.verify()


def test_checkpoint_from_dict_rejects_bad_input() -> None:
    with pytest.raises(InvalidInput, match="expected keys"):
        Checkpoint.from_dict({"size": 1})
    good = sign_checkpoint(KEY, 0, ZERO_HASH).to_dict()
    with pytest.raises(InvalidInput, match="checkpoint head"):
        Checkpoint.from_dict({**good, "head": "XY"})


def test_consistency_can_start_at_an_older_entry_to_tie_it_to_the_kept_head(
    ledger: Ledger,
) -> None:
    _fill(ledger, 0, 4)
    kept = _head(ledger)
    _fill(ledger, 4, 6)
    new, entries = ledger.consistency(kept.size, start=1)
    assert [e.seq for e in entries] == [1, 2, 3, 4, 5]
    verify_consistency(kept, new, entries)
    _rewrite_history(ledger, 1)
    new, entries = ledger.consistency(kept.size, start=1)
    with pytest.raises(LedgerError, match="ledger rewritten: entry seq 3"):
        verify_consistency(kept, new, entries)
    with pytest.raises(LedgerError, match="consistency entries: expected seq"):
        verify_consistency(kept, new, [entries[0], *entries[2:]])


def test_consistency_start_must_lie_before_the_kept_head(ledger: Ledger) -> None:
    _fill(ledger, 0, 3)
    with pytest.raises(InvalidInput, match=r"start entry in 0\.\.1"):
        ledger.consistency(2, start=2)
