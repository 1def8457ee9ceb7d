"""One chunk's record and its verified download; byte ranges of the whole recording.

Every byte sent is proven first (`lucid.integrity.partial`): a chunk or range whose stored
ciphertext disagrees with its sealed leaf is refused with 409 naming the chunk, before
the first byte. `?form=ciphertext` hands out the stored bytes as they are, with what is
needed to check them offline (`GET .../chunks/{index}/proof`).
"""

from __future__ import annotations

import re

from apiflask import APIBlueprint
from flask import Response, jsonify, request, stream_with_context
from flask.typing import ResponseReturnValue

from api import runtime
from api.auth import owned_session, require
from api.validation import chunk_index
from lucid.errors import InvalidInput
from lucid.integrity.partial import (
    ByteRange,
    chunk_ciphertext,
    chunk_plaintext,
    prepare_range,
    read_range,
    sealed_chunks,
)

bp = APIBlueprint("chunk_access", __name__, url_prefix="/api/v1/sessions", tag="Chunks")

_RECORD_FIELDS = (
    "index", "stage", "final", "held", "plaintext_len", "compressed_len", "ciphertext_len",
    "compression", "encryption", "ciphertext_digest", "leaf_hash", "created_at", "updated_at",
)  # fmt: skip
FORMS = ("plaintext", "ciphertext")
_RANGE = re.compile(r"bytes=(\d*)-(\d*)")


def _only(allowed: tuple[str, ...]) -> None:
    unknown = sorted(set(request.args) - set(allowed))
    if unknown:
        raise InvalidInput(
            f"unknown query parameters {', '.join(unknown)}; expected only {', '.join(allowed)}"
        )


@bp.get("/<session_id>/chunks/<index>")
@bp.doc(
    summary="One chunk's record",
    description="Where the chunk is in the pipeline (stage, held) and, once hashed, its "
    "leaf fields: lengths, algorithms, ciphertext digest, leaf hash.",
    responses={200: "The chunk record", 404: "No such session or chunk"},
)
@require("read")
def chunk_record(session_id: str, index: str) -> ResponseReturnValue:
    _only(())
    owned_session(session_id)
    chunk = runtime().meta.get_chunk(session_id, chunk_index(index))
    return jsonify({"session_id": session_id, **{k: chunk.get(k) for k in _RECORD_FIELDS}})


@bp.get("/<session_id>/chunks/<index>/download")
@bp.doc(
    summary="One chunk's bytes",
    description="The chunk's plaintext, verified against the sealed root and the anchor "
    "before the first byte; `?form=ciphertext`: the stored ciphertext as it is, to verify "
    "offline with the chunk's proof (BLAKE3 of it is the leaf's ciphertext_digest).",
    responses={200: "The chunk's bytes", 404: "No such session or chunk",
               409: "Not sealed, or the chunk fails verification", 410: "Deleted"},
)  # fmt: skip
@require("download")
def chunk_download(session_id: str, index: str) -> ResponseReturnValue:
    _only(("form",))
    form = request.args.get("form", "plaintext")
    if form not in FORMS:
        raise InvalidInput(f"form: expected one of {', '.join(FORMS)}, got {form[:40]!r}")
    owned_session(session_id)
    rt, i = runtime(), chunk_index(index)
    if form == "ciphertext":
        sealed, data = chunk_ciphertext(rt, session_id, i)
        leaf = sealed.leaves[i]
        headers = {
            "X-Lucid-Ciphertext-Digest": leaf.ciphertext_digest.hex(),
            "X-Lucid-Leaf-Hash": sealed.leaf_hashes[i].hex(),
            "X-Lucid-Merkle-Root": sealed.session["merkle_root"],
        }
        name = f"{session_id}.{i}.enc"
    else:
        leaf, data = chunk_plaintext(rt, session_id, i)
        headers = {"X-Lucid-Leaf-Hash": leaf.leaf_hash().hex()}
        name = f"{session_id}.{i}.rec"
    headers["Content-Disposition"] = f'attachment; filename="{name}"'
    return Response(data, mimetype="application/octet-stream", headers=headers)


def parse_range(header: str, size: int) -> ByteRange | None:
    """The one byte range `header` asks for in a recording of `size` bytes (RFC 9110 14.1.2);
    None when the header is not a single byte range (the whole recording is sent)."""
    match = _RANGE.fullmatch(header.strip())
    if match is None or match[1] == match[2] == "":
        return None
    if match[1] == "":  # a suffix: the last N bytes
        suffix = int(match[2])
        return ByteRange(max(size - suffix, 0), size - 1, size) if suffix and size else _none(size)
    first = int(match[1])
    last = min(int(match[2]), size - 1) if match[2] else size - 1
    if match[2] and int(match[2]) < first:
        return None  # invalid, so ignored
    if first >= size:
        return _none(size)
    return ByteRange(first, last, size)


def _none(size: int) -> ByteRange:
    return ByteRange(size, size - 1, size)  # empty: nothing of the recording is asked for


def ranged_download(session_id: str) -> ResponseReturnValue:
    """GET .../download with a Range header: 206 with the bytes asked for, proven first;
    416 when the range lies outside the recording; 200 (all of it) for a Range that is
    not one byte range."""
    owned_session(session_id)
    rt = runtime()
    sealed = sealed_chunks(rt, session_id)
    size = sealed.size
    asked = parse_range(request.headers.get("Range", ""), size)
    wanted = asked or ByteRange(0, size - 1, size)
    if wanted.length <= 0 and size:
        return (
            jsonify({"error": "range_not_satisfiable",
                     "message": f"expected a range within bytes 0-{size - 1}, "
                                f"got {request.headers.get('Range')!r}"}),
            416,
            {"Content-Range": f"bytes */{size}"},
        )  # fmt: skip
    status = 200 if asked is None else 206
    headers = {
        "Accept-Ranges": "bytes",
        "Content-Length": str(max(wanted.length, 0)),
        "X-Lucid-Merkle-Root": sealed.session["merkle_root"],
    }
    if status == 206:
        headers["Content-Range"] = f"bytes {wanted.first}-{wanted.last}/{size}"
    if not size:
        return Response(b"", status=200, mimetype="application/octet-stream", headers=headers)
    key = prepare_range(rt, sealed, wanted)
    body = stream_with_context(read_range(rt, sealed, wanted, key))
    return Response(body, status=status, mimetype="application/octet-stream", headers=headers)
