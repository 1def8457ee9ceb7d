"""Response bodies as marshmallow schemas: what the OpenAPI document says each view sends.

Views still build their JSON themselves; the schemas describe it, and the contract test
(schemathesis against the live stack) checks every answer against them. Every object
allows more properties than it names (`unknown = INCLUDE`), so adding a field is not a
breaking change.
"""

from __future__ import annotations

from apiflask import Schema
from apiflask.fields import Boolean, Dict, Integer, List, Nested, Raw, String
from marshmallow import INCLUDE

__all__ = [
    "Chunk",
    "ChunkList",
    "Consistency",
    "Health",
    "Proof",
    "Session",
    "SessionList",
    "SessionStatus",
    "Transition",
    "VerifyReport",
]


class _Open(Schema):
    class Meta:
        unknown = INCLUDE


def _text(description: str = "") -> String:
    return String(allow_none=True, metadata={"description": description} if description else {})


def _count(description: str = "") -> Integer:
    return Integer(allow_none=True, metadata={"description": description} if description else {})


class Session(_Open):
    session_id = String(required=True, metadata={"description": "32 hex digits"})
    tenant = String(
        allow_none=True,
        metadata={
            "description": "the tenant of the token that created it; null for a session "
            "from before tenants (it belongs to the default tenant)"
        },
    )
    state = String(required=True, metadata={"description": "lifecycle state (CREATED, ...)"})
    created_at = _text("ISO 8601, UTC")
    updated_at = _text("ISO 8601, UTC")
    metadata = Dict(allow_none=True)
    chunk_size = _count("bytes per chunk")
    compression = _text()
    compression_level = _count()
    encryption = _text()
    bytes_received = _count("bytes committed so far")
    chunk_count = _count("fixed when the session is stopped")
    merkle_root = _text("hex; set when sealed")
    tree_size = _count()
    sealed_at = _text()
    anchor = Dict(allow_none=True, metadata={"description": "the anchor receipt"})
    anchor_at = _text()
    error = _text("why the session is in ERROR")


class Transition(_Open):
    from_state = String(required=True)
    trigger = String(required=True)
    to_state = String(required=True)
    at = String(required=True, metadata={"description": "ISO 8601, UTC"})
    reason = _text()
    by = _text("subject of the token that caused it (none: the system)")


class Access(_Open):
    action = String(required=True, metadata={"description": "download"})
    by = String(required=True, metadata={"description": "subject of the token"})
    at = String(required=True)


class SessionStatus(Session):
    history = List(Nested(Transition), metadata={"description": "every state change"})
    access_log = List(Nested(Access), metadata={"description": "every download"})
    chunks = Dict(
        keys=String(), values=Integer(), metadata={"description": "chunk count per stage"}
    )
    offset = Integer(metadata={"description": "committed length: where an upload resumes"})


class SessionList(_Open):
    sessions = List(Nested(Session), required=True)
    total = Integer(
        metadata={
            "description": "how many match the filters, whatever the page; only with "
            "`total=true` (a count of every match), absent otherwise"
        }
    )
    limit = Integer(required=True)
    next = String(
        required=True,
        allow_none=True,
        metadata={"description": "the link to the following page, null on the last"},
    )


class Chunk(_Open):
    index = Integer(required=True)
    stage = Raw(metadata={"description": "how far it got (RECEIVED..HASHED)"})
    final = Boolean(allow_none=True)
    plaintext_len = _count()
    compressed_len = _count()
    ciphertext_len = _count()
    ciphertext_digest = _text()
    leaf_hash = _text()


class ChunkList(_Open):
    session_id = String(required=True)
    chunks = List(Nested(Chunk), required=True)


class Proof(_Open):
    session_id = String(required=True)
    index = Integer(required=True)
    tree_size = Integer(required=True)
    leaf = Dict(required=True)
    leaf_hash = String(required=True)
    proof = List(String(), required=True, metadata={"description": "RFC 9162 audit path"})
    merkle_root = String(required=True)
    hash = String(required=True)
    anchor = Dict(allow_none=True)


class VerifyReport(_Open):
    session_id = String(required=True)
    ok = Boolean(required=True)
    merkle_root = _text()
    chunks = _count()
    chunks_verified = _count()
    anchor = Raw(allow_none=True)
    failures = List(String(), required=True)


class Consistency(_Open):
    checkpoint = Dict(required=True)
    entries = List(Dict(), required=True)


class Health(_Open):
    status = String(required=True, metadata={"description": "ok or degraded"})
    checks = Dict(keys=String(), values=String(), required=True)
