"""The tamper suite: every kind of tampering with a sealed session is detected by
`lucid verify`, which names the chunk (where one is involved) and the field, and
`lucid get` refuses it with a non-zero exit and no output file.

Each case records one small session (four 64 KiB chunks) on the shared stack, tampers
with one thing the way someone with the data dir or the database could, and checks both
commands. Cases that touch the shared ledger put it back afterwards.
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from bench.corpus import corpus_blocks
from cli.client import Client
from cli.main import cli
from lucid.runtime import Runtime
from lucid.storage import layout
from tests.integration.conftest import CHUNK, cli_env

DATA_SIZE = 3 * CHUNK + 5000  # four chunks, the last one partial


@dataclass(frozen=True)
class Kind:
    """One way to tamper: what it does and what a refusal must name."""

    name: str
    tamper: Callable[[Runtime, str], None]
    field: str
    chunk: int | None = None


def _enc(rt: Runtime, sid: str, index: int) -> Path:
    path = rt.settings.blobs_path / layout.encrypted_key(sid, index)
    os.chmod(path, 0o600)
    return path


def _flip_blob(rt: Runtime, sid: str) -> None:
    path = _enc(rt, sid, 2)
    data = bytearray(path.read_bytes())
    data[100] ^= 1
    path.write_bytes(bytes(data))


def _truncate_blob(rt: Runtime, sid: str) -> None:
    path = _enc(rt, sid, 3)
    path.write_bytes(path.read_bytes()[:-10])


def _delete_blob(rt: Runtime, sid: str) -> None:
    _enc(rt, sid, 1).unlink()


def _set_chunk(chunk: int, **fields: Any) -> Callable[[Runtime, str], None]:
    def tamper(rt: Runtime, sid: str) -> None:
        done = rt.meta.chunks.update_one({"session_id": sid, "index": chunk}, {"$set": fields})
        assert done.modified_count == 1

    return tamper


def _delete_chunk_record(rt: Runtime, sid: str) -> None:
    assert rt.meta.chunks.delete_one({"session_id": sid, "index": 2}).deleted_count == 1


def _set_session(**fields: Any) -> Callable[[Runtime, str], None]:
    def tamper(rt: Runtime, sid: str) -> None:
        done = rt.meta.sessions.update_one({"session_id": sid}, {"$set": fields})
        assert done.modified_count == 1

    return tamper


def _lower_bytes_received(rt: Runtime, sid: str) -> None:
    _set_session(bytes_received=DATA_SIZE - 1000)(rt, sid)


def _edit_key_envelope(rt: Runtime, sid: str) -> None:
    wrapped = bytearray(bytes.fromhex(rt.meta.get_session(sid)["key"]["wrapped_private"]))
    wrapped[40] ^= 1
    _set_session(**{"key.wrapped_private": wrapped.hex()})(rt, sid)


def _move_ledger_entry(rt: Runtime, sid: str) -> None:
    # The database orders entries by their signed seq: moving one out of its place (the
    # chain up to it then has a gap) is what a reorder amounts to here.
    rt.meta.ledger.update_one({"session_id": sid}, {"$inc": {"seq": 1000}})


def _edit_ledger_entry(rt: Runtime, sid: str) -> None:
    rt.meta.ledger.update_one({"session_id": sid}, {"$set": {"root": "ab" * 32}})


KINDS = [
    Kind("blob-bit-flip", _flip_blob, "stored ciphertext_digest", chunk=2),
    Kind("blob-truncated", _truncate_blob, "stored ciphertext_len", chunk=3),
    Kind("blob-deleted", _delete_blob, "stored ciphertext missing", chunk=1),
    Kind("record-digest", _set_chunk(1, ciphertext_digest="ab" * 32), "ciphertext_digest", 1),
    Kind("record-length", _set_chunk(0, plaintext_len=5), "chunk record plaintext_len", 0),
    Kind("record-final", _set_chunk(3, final=False), "chunk record final", 3),
    Kind("record-index", _set_chunk(1, index=7), "chunk record index", 1),
    Kind("record-deleted", _delete_chunk_record, "chunk record missing", 2),
    Kind("record-leaf-hash", _set_chunk(0, leaf_hash="cd" * 32), "chunk record leaf_hash", 0),
    Kind("session-bytes-received", _lower_bytes_received, "session bytes_received"),
    Kind("session-chunk-size", _set_session(chunk_size=4096), "session chunk_size"),
    Kind("session-encryption", _set_session(encryption="XChaCha20-Poly1305"), "encryption"),
    Kind("session-tree-size", _set_session(tree_size=3), "over 3"),
    Kind("session-root", _set_session(merkle_root="ef" * 32), "root"),
    Kind("key-envelope", _edit_key_envelope, "session key"),
    Kind("ledger-entry-moved", _move_ledger_entry, "expected seq"),
    Kind("ledger-entry-edited", _edit_ledger_entry, "expected entry_hash"),
]


@pytest.fixture
def ledger_kept(runtime: Runtime) -> Iterator[None]:
    """Put the shared ledger and its checkpoints (in the database) back after the test."""
    collections = (runtime.meta.ledger, runtime.meta.ledger_checkpoints)
    saved = [list(c.find({}, {"_id": False})) for c in collections]
    yield
    for collection, docs in zip(collections, saved, strict=True):
        collection.delete_many({})
        if docs:
            collection.insert_many(docs)


def _sealed_session(client: Client, tmp_path: Path, seed: int) -> tuple[str, bytes]:
    data = b"".join(corpus_blocks(DATA_SIZE, seed=seed))
    path = tmp_path / "rec.bin"
    path.write_bytes(data)
    sid = client.create()["session_id"]
    client.upload(sid, path)
    status = client.wait(sid, timeout=120)
    assert status["state"] == "STOPPED" and status["anchor"]["status"] == "confirmed", status
    return sid, data


def _run(client: Client, *args: str) -> Result:
    return CliRunner(env=cli_env(client)).invoke(cli, [*args, "--api", str(client.http.base_url)])


@pytest.mark.parametrize("kind", KINDS, ids=[k.name for k in KINDS])
def test_tampering_is_detected_by_verify_and_refused_by_get_naming_chunk_and_field(
    client: Client, runtime: Runtime, tmp_path: Path, ledger_kept: None, kind: Kind
) -> None:
    sid, _ = _sealed_session(client, tmp_path, seed=len(kind.name))
    kind.tamper(runtime, sid)

    code, report = client.verify(sid)
    assert code == 409 and not report["ok"], report
    failures = "\n".join(report["failures"])
    assert kind.field in failures, failures
    if kind.chunk is not None:
        assert f"chunk {kind.chunk}" in failures, failures
    verified = _run(client, "verify", sid)
    assert verified.exit_code == 1
    assert kind.field in verified.output

    out = tmp_path / "out.bin"
    got = _run(client, "get", sid, "-o", str(out))
    assert got.exit_code != 0, got.output
    assert not out.exists() and not out.with_name(out.name + ".part").exists()
    if kind.chunk is not None:
        assert f"chunk {kind.chunk}" in got.output, got.output


def _forge_final_chunk(rt: Runtime, sid: str, plaintext: bytes) -> None:
    """Everything someone with the data dir (ledger key included) and the database can
    do: re-encrypt the final chunk to the session public key (stored in clear), fix its
    record, the sealed leaf list, the root, and re-sign the ledger from that entry on."""
    from lucid.crypto.aead import ChunkContext, encrypt_chunk
    from lucid.crypto.keys import load_ledger_signing_key, load_ledger_verify_key
    from lucid.integrity.anchors import LedgerAnchor
    from lucid.integrity.leaves import ciphertext_digest_of
    from lucid.integrity.ledger_db import DbLedger
    from lucid.integrity.merkle import BLAKE3, root
    from lucid.integrity.sealed import sealed_leaves_key, store_sealed_leaves
    from lucid.pipeline.codecs import get_codec
    from lucid.pipeline.stages import leaf_record

    session = rt.meta.get_session(sid)
    index = int(session["tree_size"]) - 1
    compressed = get_codec(session["compression"], session["compression_level"]).compress(plaintext)
    ctx = ChunkContext(sid, index, True, session["compression"], session["encryption"])
    blob = encrypt_chunk(compressed, bytes.fromhex(session["key"]["session_public"]), ctx)
    _enc(rt, sid, index).write_bytes(blob)
    fields = {
        "plaintext_len": len(plaintext),
        "compressed_len": len(compressed),
        "ciphertext_len": len(blob),
        "ciphertext_digest": ciphertext_digest_of(blob).hex(),
    }
    rt.meta.chunks.update_one({"session_id": sid, "index": index}, {"$set": fields})
    leaves = [leaf_record(doc) for doc in rt.meta.list_chunks(sid)]
    hashes = [leaf.leaf_hash() for leaf in leaves]
    rt.meta.chunks.update_one(
        {"session_id": sid, "index": index}, {"$set": {"leaf_hash": hashes[index].hex()}}
    )
    rt.blobs.delete(sealed_leaves_key(sid))
    store_sealed_leaves(rt.blobs, sid, leaves)
    new_root = root(BLAKE3, hashes)
    size = sum(leaf.plaintext_len for leaf in leaves)
    rt.meta.sessions.update_one(
        {"session_id": sid}, {"$set": {"merkle_root": new_root.hex(), "bytes_received": size}}
    )
    keys = rt.settings.keys_path
    ledger = DbLedger(rt.meta, load_ledger_signing_key(keys), load_ledger_verify_key(keys))
    entries = list(ledger.entries())
    rt.meta.ledger.delete_many({})
    rt.meta.ledger_checkpoints.delete_many({})
    for entry in entries:
        anchored = new_root if entry.session_id == sid else bytes.fromhex(entry.root)
        ledger.append(entry.session_id, anchored, entry.tree_size)
    receipt = LedgerAnchor(ledger).submit(sid, new_root, len(leaves)).to_dict()
    rt.meta.record_anchor(sid, receipt)
    rt.meta.update_session(sid, {"anchor": receipt})


def test_a_forgery_with_the_ledger_key_is_caught_by_whoever_kept_a_checkpoint(
    client: Client, runtime: Runtime, tmp_path: Path, ledger_kept: None
) -> None:
    sid, _ = _sealed_session(client, tmp_path, seed=5)
    kept = _run(client, "checkpoint")
    assert kept.exit_code == 0, kept.output
    head = tmp_path / "head.json"
    head.write_text(kept.stdout)
    before = _run(client, "verify", sid, "--checkpoint", str(head))
    assert before.exit_code == 0, before.output
    assert "which holds this session's entry" in before.output

    _forge_final_chunk(runtime, sid, b"nothing to see here")

    # Everything on the host agrees with the forgery (the cure is an anchor off the host)...
    assert client.verify(sid)[0] == 200
    # ...but the ledger no longer extends the head that was kept before it.
    verified = _run(client, "verify", sid, "--checkpoint", str(head))
    assert verified.exit_code == 1
    assert "ledger rewritten" in verified.output
    assert f"entry seq {json.loads(kept.stdout)['size'] - 1}" in verified.output


def test_the_data_dir_and_what_the_stack_writes_are_private(
    client: Client, runtime: Runtime, tmp_path: Path
) -> None:
    sid, _ = _sealed_session(client, tmp_path, seed=6)
    data_dir = runtime.settings.data_dir
    assert stat.S_IMODE(data_dir.stat().st_mode) == 0o700
    loose = [
        str(path.relative_to(data_dir))
        for path in data_dir.rglob("*")
        if path.is_file() and stat.S_IMODE(path.stat().st_mode) & 0o077
        and not path.name.endswith(".pub")
    ]  # fmt: skip
    assert loose == []
    blob = runtime.settings.blobs_path / layout.encrypted_key(sid, 0)
    assert stat.S_IMODE(blob.stat().st_mode) == 0o600
