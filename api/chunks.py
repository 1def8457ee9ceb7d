"""Chunk listing, inclusion proofs, verification and the verified download."""

from __future__ import annotations

from collections.abc import Iterator

from flask import Blueprint, Response, jsonify, request, stream_with_context
from flask.typing import ResponseReturnValue

from api import chunk_access, runtime
from api.validation import chunk_index
from lucid.integrity.restore import prepare_restore, proof_for, restore_sealed, verify_session
from lucid.storage.layout import check_session_id

bp = Blueprint("chunks", __name__, url_prefix="/api/v1/sessions")

_CHUNK_FIELDS = (
    "index", "stage", "final", "plaintext_len", "compressed_len", "ciphertext_len",
    "ciphertext_digest", "leaf_hash",
)  # fmt: skip


@bp.get("/<session_id>/chunks")
def list_chunks(session_id: str) -> ResponseReturnValue:
    rt = runtime()
    rt.meta.get_session(check_session_id(session_id))
    chunks = rt.meta.list_chunks(session_id)
    return jsonify(
        {
            "session_id": session_id,
            "chunks": [{k: c.get(k) for k in _CHUNK_FIELDS} for c in chunks],
        }
    )


@bp.get("/<session_id>/chunks/<index>/proof")
def proof(session_id: str, index: str) -> ResponseReturnValue:
    chunk = chunk_index(index)
    return jsonify(proof_for(runtime(), check_session_id(session_id), chunk))


@bp.get("/<session_id>/verify")
def verify(session_id: str) -> ResponseReturnValue:
    """Every stored chunk against the root, the proofs and the anchor; 200 ok / 409 failed."""
    report = verify_session(runtime(), check_session_id(session_id))
    return jsonify(report.to_dict()), 200 if report.ok else 409


@bp.get("/<session_id>/download")
def download(session_id: str) -> ResponseReturnValue:
    """The original recording, streamed; every chunk is checked against the sealed root
    before the first byte is sent (409 naming the chunk otherwise). With `Range`: 206."""
    if request.headers.get("Range"):
        return chunk_access.ranged_download(session_id)
    rt = runtime()
    sealed = prepare_restore(rt, check_session_id(session_id))
    chunks: Iterator[bytes] = restore_sealed(rt, sealed)
    headers = {
        "Content-Disposition": f'attachment; filename="{session_id}.rec"',
        # The sum of the sealed leaves' lengths: covered by the root, unlike bytes_received.
        "Content-Length": str(sealed.size),
        "X-Lucid-Merkle-Root": sealed.session["merkle_root"],
        "Accept-Ranges": "bytes",
    }
    return Response(
        stream_with_context(chunks), mimetype="application/octet-stream", headers=headers
    )
