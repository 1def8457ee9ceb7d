"""What a user needs to restore a session on their own machine, with no server decrypting.

`GET /api/v1/sessions/{id}/bundle` answers the sealed leaf list, the wrapped session key
envelope and the signed ledger entry of the session's root (with the ledger's public key
id); `GET /api/v1/sessions/{id}/bundle/chunks/{index}` answers a chunk's stored
ciphertext as it is. The client trusts none of it: `lucid get ID --key recipient.key`
checks everything against the anchored root (`lucid.integrity.offline`). No key beyond
the ledger's public key is read here, so this works in an API that holds no private key.
"""

from __future__ import annotations

from apiflask import APIBlueprint
from cryptography.hazmat.primitives import serialization
from flask import Response, jsonify
from flask.typing import ResponseReturnValue

from api import runtime
from api.auth import owned_session, require
from api.validation import chunk_index
from lucid.errors import NotFound
from lucid.integrity.restore import sealed_chunks
from lucid.storage import layout

bp = APIBlueprint("bundle", __name__, url_prefix="/api/v1/sessions")
_RAW = serialization.Encoding.Raw, serialization.PublicFormat.Raw


@bp.get("/<session_id>/bundle")
@require("download")
def bundle(session_id: str) -> ResponseReturnValue:
    """The sealed leaves, the key envelope and the signed ledger entry of a sealed session."""
    session = owned_session(session_id)
    rt = runtime()
    sealed = sealed_chunks(rt, session["session_id"])
    entry = rt.ledger.find(session_id)
    if entry is None:
        raise NotFound(f"session {session_id} has no ledger entry (not anchored yet)")
    return jsonify(
        {
            "session_id": session_id,
            "merkle_root": sealed.session["merkle_root"],
            "tree_size": len(sealed.leaves),
            "size": sealed.size,
            "leaves": [leaf.to_dict() for leaf in sealed.leaves],
            "key": sealed.session.get("key"),
            "ledger_entry": entry.to_dict(),
            "ledger_key": rt.ledger.verify_key.public_bytes(*_RAW).hex(),
        }
    )


@bp.get("/<session_id>/bundle/chunks/<index>")
@require("download")
def chunk_ciphertext(session_id: str, index: str) -> ResponseReturnValue:
    """A chunk's stored ciphertext, unchecked: the client checks it against its leaf."""
    session = owned_session(session_id)
    position = chunk_index(index)
    try:
        blob = runtime().blobs.get(layout.encrypted_key(session["session_id"], position))
    except FileNotFoundError:
        raise NotFound(f"session {session_id} chunk {position}: no stored ciphertext") from None
    return Response(blob, mimetype="application/octet-stream")
