"""Chunk listing, inclusion proofs, verification and the verified download."""

from __future__ import annotations

from collections.abc import Iterator

from apiflask import APIBlueprint
from flask import Response, request, stream_with_context
from flask.typing import ResponseReturnValue

from api import chunk_access, runtime, schemas
from api.auth import owned_session, principal, require
from api.openapi import error, octet_stream
from api.sessions import json_response
from api.validation import chunk_index
from lucid.integrity.restore import prepare_restore, proof_for, restore_sealed, verify_session

bp = APIBlueprint("chunks", __name__, url_prefix="/api/v1/sessions", tag="chunks")

_CHUNK_FIELDS = (
    "index", "stage", "final", "plaintext_len", "compressed_len", "ciphertext_len",
    "ciphertext_digest", "leaf_hash",
)  # fmt: skip
_NOT_SEALED = 409


@bp.get("/<session_id>/chunks")
@require("read")
@bp.output(schemas.ChunkList, description="Every chunk's stage, lengths and digests")
def list_chunks(session_id: str) -> Response:
    """The session's chunks."""
    owned_session(session_id)
    chunks = runtime().meta.list_chunks(session_id)
    return json_response(
        {
            "session_id": session_id,
            "chunks": [{k: c.get(k) for k in _CHUNK_FIELDS} for c in chunks],
        }
    )


@bp.get("/<session_id>/chunks/<index>/proof")
@require("read")
@bp.output(schemas.Proof, description="Leaf, audit path and root: checkable offline")
@bp.doc(
    responses={
        _NOT_SEALED: error("The session is not sealed yet, or its records disagree"),
        410: error("The session was deleted"),
    }
)
def proof(session_id: str, index: str) -> Response:
    """An inclusion proof for one chunk."""
    chunk = chunk_index(index)
    owned_session(session_id)
    return json_response(proof_for(runtime(), session_id, chunk))


@bp.get("/<session_id>/verify")
@require("read")
@bp.output(schemas.VerifyReport, description="Every chunk verified against root and anchor")
@bp.doc(
    responses={
        409: {
            "description": "Verification failed (the report says where), or not sealed yet",
            "content": {
                "application/json": {
                    "schema": {
                        "oneOf": [
                            {"$ref": "#/components/schemas/VerifyReport"},
                            {"$ref": "#/components/schemas/HTTPError"},
                        ]
                    }
                }
            },
        },
        410: error("The session was deleted"),
    }
)
def verify(session_id: str) -> Response:
    """Verify a session.

    Every stored chunk against the root, the proofs and the anchor; 200 ok / 409 failed."""
    owned_session(session_id)
    report = verify_session(runtime(), session_id)
    return json_response(report.to_dict(), 200 if report.ok else 409)


@bp.get("/<session_id>/download")
@require("download")
@bp.doc(
    responses={
        200: octet_stream(
            "The original recording, streamed, every chunk checked against the sealed root",
            X_Lucid_Merkle_Root="the sealed root the bytes were checked against",
            Content_Disposition="attachment; filename=<session_id>.rec",
        ),
        409: error("A chunk does not match the sealed root (names it), or not sealed yet"),
        410: error("The session was deleted"),
    }
)
def download(session_id: str) -> ResponseReturnValue:
    """Download the recording.

    Every chunk is checked against the sealed root before the first byte is sent (409
    naming the chunk otherwise). The download is recorded with the caller's subject."""
    owned_session(session_id)
    if request.headers.get("Range"):
        return chunk_access.ranged_download(session_id)
    rt = runtime()
    sealed = prepare_restore(rt, session_id)
    rt.meta.record_access(session_id, "download", by=principal().subject)
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
