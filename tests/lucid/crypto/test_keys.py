"""Key files and wrapped session keys."""

from __future__ import annotations

import multiprocessing
import os
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from lucid.crypto.aead import ChunkContext, decrypt_chunk, encrypt_chunk
from lucid.crypto.keys import (
    KEY_FILES,
    SessionKeyEnvelope,
    ensure_keys,
    init_keys,
    load_ledger_signing_key,
    load_ledger_verify_key,
    load_recipient_private,
    load_recipient_public,
    new_session_key,
    unwrap_session_key,
)
from lucid.errors import DecryptionError, InvalidInput, KeyMaterialError

SESSION = "0123456789abcdef0123456789abcdef"
RAW = serialization.Encoding.Raw, serialization.PublicFormat.Raw


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_init_creates_four_files_with_safe_modes(tmp_path: Path) -> None:
    key_dir = tmp_path / "keys"
    paths = init_keys(key_dir)
    assert sorted(p.name for p in paths) == sorted(KEY_FILES)
    assert _mode(key_dir) == 0o700
    assert _mode(key_dir / "recipient.key") == 0o600
    assert _mode(key_dir / "ledger.key") == 0o600
    assert not [p for p in key_dir.iterdir() if p.name.endswith(".tmp")]


def test_loaded_keys_are_matching_pairs(tmp_path: Path) -> None:
    init_keys(tmp_path)
    recipient = load_recipient_private(tmp_path)
    assert recipient.public_key().public_bytes(*RAW) == load_recipient_public(
        tmp_path
    ).public_bytes(*RAW)
    signature = load_ledger_signing_key(tmp_path).sign(b"entry")
    load_ledger_verify_key(tmp_path).verify(signature, b"entry")


def test_init_refuses_to_overwrite_unless_told(tmp_path: Path) -> None:
    init_keys(tmp_path)
    before = (tmp_path / "recipient.key").read_bytes()
    with pytest.raises(KeyMaterialError, match="refusing to overwrite"):
        init_keys(tmp_path)
    assert (tmp_path / "recipient.key").read_bytes() == before
    init_keys(tmp_path, overwrite=True)
    assert (tmp_path / "recipient.key").read_bytes() != before


def test_ensure_keys_creates_once_then_keeps(tmp_path: Path) -> None:
    ensure_keys(tmp_path / "k")
    before = (tmp_path / "k" / "recipient.key").read_bytes()
    ensure_keys(tmp_path / "k")
    assert (tmp_path / "k" / "recipient.key").read_bytes() == before


def _ensure_and_read(key_dir: str) -> bytes:
    ensure_keys(Path(key_dir))
    return (Path(key_dir) / "recipient.pub").read_bytes()


def test_concurrent_ensure_keys_agree_on_one_key_set(tmp_path: Path) -> None:
    with multiprocessing.get_context("fork").Pool(4) as pool:
        results = pool.map(_ensure_and_read, [str(tmp_path / "keys")] * 8)
    assert len(set(results)) == 1


def test_missing_keys_tell_the_user_to_run_init(tmp_path: Path) -> None:
    for load in (
        load_recipient_public,
        load_recipient_private,
        load_ledger_signing_key,
        load_ledger_verify_key,
    ):
        with pytest.raises(KeyMaterialError, match="run `lucid keys init`"):
            load(tmp_path)


@pytest.mark.parametrize("name", ["recipient.key", "ledger.key"])
@pytest.mark.parametrize("mode", [0o640, 0o604, 0o644])
def test_private_key_readable_by_others_is_refused(tmp_path: Path, name: str, mode: int) -> None:
    init_keys(tmp_path)
    os.chmod(tmp_path / name, mode)
    load = load_recipient_private if name == "recipient.key" else load_ledger_signing_key
    with pytest.raises(KeyMaterialError, match=f"{name} is readable .* got {mode:04o}"):
        load(tmp_path)


def test_garbage_key_file_is_refused(tmp_path: Path) -> None:
    init_keys(tmp_path)
    (tmp_path / "recipient.pub").write_bytes(b"not a key")
    with pytest.raises(KeyMaterialError, match=r"recipient\.pub is not a valid public key"):
        load_recipient_public(tmp_path)


def test_swapped_key_files_are_refused(tmp_path: Path) -> None:
    init_keys(tmp_path)
    (tmp_path / "recipient.pub").write_bytes((tmp_path / "ledger.pub").read_bytes())
    with pytest.raises(KeyMaterialError, match="expected a X25519PublicKey"):
        load_recipient_public(tmp_path)


@pytest.fixture
def recipient() -> X25519PrivateKey:
    return X25519PrivateKey.generate()


def test_session_key_unwraps_and_decrypts_chunks(recipient: X25519PrivateKey) -> None:
    envelope = new_session_key(recipient.public_key(), SESSION)
    ctx = ChunkContext(SESSION, 0, True, "zstd", "AES-256-GCM")
    blob = encrypt_chunk(b"frame", envelope.session_public, ctx)
    session_key = unwrap_session_key(envelope, recipient, SESSION)
    assert session_key.public_key().public_bytes(*RAW) == envelope.session_public
    assert decrypt_chunk(blob, session_key, ctx) == b"frame"


def test_each_session_gets_its_own_key(recipient: X25519PrivateKey) -> None:
    a = new_session_key(recipient.public_key(), SESSION)
    b = new_session_key(recipient.public_key(), SESSION)
    assert a.session_public != b.session_public


def test_envelope_dict_round_trip(recipient: X25519PrivateKey) -> None:
    envelope = new_session_key(recipient.public_key(), SESSION)
    data = envelope.to_dict()
    assert data["session_public"] == envelope.session_public.hex()
    assert SessionKeyEnvelope.from_dict(data) == envelope


@pytest.mark.parametrize(
    "data",
    [{}, {"session_public": "zz", "wrapped_private": ""}, {"session_public": "00" * 32}],
)
def test_bad_envelope_dict_is_invalid_input(data: dict[str, str]) -> None:
    with pytest.raises(InvalidInput):
        SessionKeyEnvelope.from_dict(data)


def test_unwrap_with_wrong_recipient_fails(recipient: X25519PrivateKey) -> None:
    envelope = new_session_key(recipient.public_key(), SESSION)
    with pytest.raises(DecryptionError, match=f"session {SESSION}: cannot unwrap"):
        unwrap_session_key(envelope, X25519PrivateKey.generate(), SESSION)


def test_unwrap_for_another_session_fails(recipient: X25519PrivateKey) -> None:
    envelope = new_session_key(recipient.public_key(), SESSION)
    with pytest.raises(DecryptionError):
        unwrap_session_key(envelope, recipient, "ffffffffffffffffffffffffffffffff")


@pytest.mark.parametrize("position", [0, 31, 32, 63, 64, 79])
def test_tampered_wrapped_key_fails(recipient: X25519PrivateKey, position: int) -> None:
    envelope = new_session_key(recipient.public_key(), SESSION)
    wrapped = bytearray(envelope.wrapped_private)
    wrapped[position] ^= 0x80
    tampered = SessionKeyEnvelope(envelope.session_public, bytes(wrapped))
    with pytest.raises(DecryptionError):
        unwrap_session_key(tampered, recipient, SESSION)


def test_substituted_session_public_key_fails(recipient: X25519PrivateKey) -> None:
    # An attacker who swaps in their own public key would get future chunks encrypted to it.
    envelope = new_session_key(recipient.public_key(), SESSION)
    other = X25519PrivateKey.generate().public_key().public_bytes(*RAW)
    with pytest.raises(DecryptionError):
        unwrap_session_key(SessionKeyEnvelope(other, envelope.wrapped_private), recipient, SESSION)
