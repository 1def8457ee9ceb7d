"""The signed, hash-chained ledger: append, find, verify, tamper detection, concurrency."""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import multiprocessing
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import blake3
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from lucid.errors import AnchorUnavailable, Conflict, KeyMaterialError, LedgerError
from lucid.integrity.ledger import ZERO_HASH, Ledger, LedgerEntry, entry_hash_of

KEY = Ed25519PrivateKey.generate()


def _ledger(path: Path, key: Ed25519PrivateKey | None = KEY) -> Ledger:
    return Ledger(path, key, KEY.public_key())


def _root(n: int) -> bytes:
    return blake3.blake3(n.to_bytes(4, "big")).digest()


@pytest.fixture
def filled(tmp_path: Path) -> Ledger:
    ledger = _ledger(tmp_path / "ledger" / "ledger.jsonl")
    for i in range(5):
        ledger.append(f"session-{i}", _root(i), i + 1)
    return ledger


def _lines(ledger: Ledger) -> list[str]:
    return ledger.path.read_text().splitlines(keepends=True)


def _rewrite(ledger: Ledger, lines: list[str]) -> None:
    ledger.path.write_text("".join(lines))


def test_first_entry_chains_from_zeros(tmp_path: Path) -> None:
    entry = _ledger(tmp_path / "l.jsonl").append("s", _root(0), 3)
    assert (entry.seq, entry.prev_hash, entry.tree_size) == (0, ZERO_HASH, 3)
    assert entry.root == _root(0).hex()
    assert entry.time.endswith("Z")


def test_entry_hash_and_signature_cover_the_body(filled: Ledger) -> None:
    entry = filled.find("session-2")
    assert entry is not None
    canonical = json.dumps(entry.body(), sort_keys=True, separators=(",", ":")).encode()
    assert entry.entry_hash == blake3.blake3(canonical).hexdigest()
    KEY.public_key().verify(bytes.fromhex(entry.signature), bytes.fromhex(entry.entry_hash))


def test_append_find_verify(filled: Ledger) -> None:
    assert filled.verify() == 5
    entries = list(filled.entries())
    assert [e.seq for e in entries] == [0, 1, 2, 3, 4]
    assert all(b.prev_hash == a.entry_hash for a, b in itertools.pairwise(entries))
    assert filled.find("session-3") == entries[3]
    assert filled.find("nope") is None


def test_empty_ledger_verifies_as_zero(tmp_path: Path) -> None:
    assert _ledger(tmp_path / "none.jsonl").verify() == 0


def test_append_is_idempotent_for_the_same_root(filled: Ledger) -> None:
    again = filled.append("session-1", _root(1), 2)
    assert again.seq == 1
    assert filled.verify() == 5


def test_append_with_a_different_root_is_a_conflict(filled: Ledger) -> None:
    with pytest.raises(Conflict, match="already anchored"):
        filled.append("session-1", _root(99), 2)
    with pytest.raises(Conflict):
        filled.append("session-1", _root(1), 7)


def test_append_without_signing_key_is_refused(filled: Ledger) -> None:
    reader = _ledger(filled.path, key=None)
    assert reader.verify() == 5
    with pytest.raises(KeyMaterialError):
        reader.append("new", _root(7), 1)


def test_entry_dict_round_trip(filled: Ledger) -> None:
    entry = next(filled.entries())
    assert LedgerEntry.from_dict(entry.to_dict()) == entry


def _edit(line: str, **changes: object) -> str:
    data = json.loads(line)
    data.update(changes)
    return json.dumps(data) + "\n"


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"root": "ab" * 32}, "line 3 \\(seq 2\\): expected entry_hash"),
        ({"tree_size": 999}, "line 3 \\(seq 2\\): expected entry_hash"),
        ({"session_id": "evil"}, "line 3 \\(seq 2\\): expected entry_hash"),
        ({"time": "2000-01-01T00:00:00.000000Z"}, "expected entry_hash"),
    ],
)
def test_edited_field_is_detected(filled: Ledger, changes: dict[str, object], message: str) -> None:
    lines = _lines(filled)
    lines[2] = _edit(lines[2], **changes)
    _rewrite(filled, lines)
    with pytest.raises(LedgerError, match=message):
        filled.verify()


def test_edited_field_with_recomputed_hash_fails_the_signature(filled: Ledger) -> None:
    lines = _lines(filled)
    data = json.loads(lines[2])
    data["root"] = "ab" * 32
    data["entry_hash"] = entry_hash_of({k: data[k] for k in LedgerEntry.from_dict(data).body()})
    lines[2] = json.dumps(data) + "\n"
    _rewrite(filled, lines)
    with pytest.raises(LedgerError, match="line 3 \\(seq 2\\): expected a signature"):
        filled.verify()
    # find() checks the entry it returns, so a reader is not fooled either.
    with pytest.raises(LedgerError, match="line 3"):
        filled.find("session-2")


def test_removed_middle_entry_is_detected(filled: Ledger) -> None:
    lines = _lines(filled)
    del lines[2]
    _rewrite(filled, lines)
    with pytest.raises(LedgerError, match="line 3: expected seq 2, got 3"):
        filled.verify()


def test_reordered_entries_are_detected(filled: Ledger) -> None:
    lines = _lines(filled)
    lines[1], lines[2] = lines[2], lines[1]
    _rewrite(filled, lines)
    with pytest.raises(LedgerError, match="line 2: expected seq 1, got 2"):
        filled.verify()


def test_forged_signature_with_another_key_is_detected(filled: Ledger, tmp_path: Path) -> None:
    forger = Ledger(tmp_path / "forged.jsonl", Ed25519PrivateKey.generate(), KEY.public_key())
    forged = forger.append("session-0", _root(0), 1)
    lines = _lines(filled)
    lines[0] = json.dumps(forged.to_dict()) + "\n"
    _rewrite(filled, lines)
    with pytest.raises(LedgerError, match="line 1 \\(seq 0\\): expected a signature"):
        filled.verify()


def test_torn_last_line_is_ignored_by_readers_and_dropped_by_the_next_append(
    filled: Ledger, caplog: pytest.LogCaptureFixture
) -> None:
    data = filled.path.read_bytes()
    filled.path.write_bytes(data[:-40])  # a crash mid-write of entry 4
    assert filled.verify() == 4
    for i in range(4):
        assert filled.find(f"session-{i}") is not None
    with caplog.at_level(logging.WARNING, logger="lucid.integrity.ledger"):
        entry = filled.append("session-9", _root(9), 1)
    assert entry.seq == 4
    assert "event=ledger_repaired" in caplog.text
    assert filled.verify() == 5
    assert filled.find("session-4") is None


def test_reordered_entries_fail_find_of_each_moved_session(filled: Ledger) -> None:
    lines = _lines(filled)
    lines[1], lines[2] = lines[2], lines[1]
    _rewrite(filled, lines)
    assert filled.find("session-0") is not None
    for moved in ("session-1", "session-2"):
        with pytest.raises(LedgerError, match="expected seq"):
            filled.find(moved)


def test_removed_earlier_entry_fails_find_of_later_sessions(filled: Ledger) -> None:
    lines = _lines(filled)
    del lines[1]
    _rewrite(filled, lines)
    with pytest.raises(LedgerError, match="expected seq 1, got 2"):
        filled.find("session-3")


def test_signing_key_loader_is_called_only_by_append(tmp_path: Path) -> None:
    calls: list[int] = []

    def load() -> Ed25519PrivateKey:
        calls.append(1)
        return KEY

    ledger = Ledger(tmp_path / "l.jsonl", load, KEY.public_key())
    assert ledger.find("nobody") is None
    ledger.verify()
    assert calls == []
    ledger.append("s", _root(1), 1)
    ledger.append("t", _root(2), 1)
    assert calls == [1]


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    """A 64 KiB tmpfs, to fill up for real (root only)."""
    mount = tmp_path / "tiny"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=False)


def test_disk_full_append_leaves_the_ledger_as_it_was_and_is_retried(small_fs: Path) -> None:
    ledger = _ledger(small_fs / "ledger" / "ledger.jsonl")
    page = os.statvfs(small_fs).f_bsize
    ledger.append("session-00", _root(0), 1)
    count = 1
    # tmpfs allocates whole pages: stop where the next entry needs a new one.
    while True:
        size = ledger.path.stat().st_size
        line = size // count
        if page - size % page < line + 8:
            break
        ledger.append(f"session-{count:02d}", _root(count), 1)
        count += 1
    before = ledger.path.read_bytes()
    filler = small_fs / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    for block in (page, 1):
        with contextlib.suppress(OSError):
            while True:
                os.write(fd, b"x" * block)
    os.close(fd)
    with pytest.raises(AnchorUnavailable, match="left as it was"):
        ledger.append("session-new", _root(99), 1)
    assert ledger.path.read_bytes() == before
    assert ledger.verify() == count
    for i in range(count):
        assert ledger.find(f"session-{i:02d}") is not None
    filler.unlink()
    assert ledger.append("session-new", _root(99), 1).seq == count
    assert ledger.verify() == count + 1


def test_garbage_line_is_reported(filled: Ledger) -> None:
    lines = _lines(filled)
    lines[1] = "{not json}\n"
    _rewrite(filled, lines)
    with pytest.raises(LedgerError, match="line 2: unreadable entry"):
        filled.verify()


def test_append_refuses_to_chain_onto_a_tampered_tail(filled: Ledger) -> None:
    lines = _lines(filled)
    lines[-1] = _edit(lines[-1], root="cd" * 32)
    _rewrite(filled, lines)
    with pytest.raises(LedgerError, match="line 5"):
        filled.append("session-new", _root(50), 1)


def _append_many(path: str, private: bytes, worker: int) -> None:
    key = Ed25519PrivateKey.from_private_bytes(private)
    ledger = Ledger(Path(path), key, key.public_key())
    for i in range(25):
        ledger.append(f"w{worker}-s{i}", _root(worker * 100 + i), i + 1)


def test_concurrent_appends_from_processes_form_one_chain(tmp_path: Path) -> None:
    path = tmp_path / "shared" / "ledger.jsonl"
    private = KEY.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    ctx = multiprocessing.get_context("spawn")  # fork after threads can deadlock
    workers = [ctx.Process(target=_append_many, args=(str(path), private, w)) for w in range(4)]
    for p in workers:
        p.start()
    for p in workers:
        p.join(timeout=60)
    assert [p.exitcode for p in workers] == [0, 0, 0, 0]
    ledger = _ledger(path)
    assert ledger.verify() == 100
    assert len({e.session_id for e in ledger.entries()}) == 100
