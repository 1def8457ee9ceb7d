"""Deleting a session by crypto-shredding: its key and bytes go, a tombstone stays.

Steps (each one safe to repeat, so a run cut short is finished by running it again):

1. CLEANUP — one compare-and-set that also checks the legal hold (`begin_cleanup`), so
   a session on hold is refused with Conflict (409) and a hold set meanwhile either wins
   or is itself refused.
2. Destroy the wrapped session key: `key.wrapped_private` leaves the session document.
   This is the shredding proper — every ciphertext, wherever a copy of it survives
   (object-store versions, backups), is now unreadable, since the recipient private key
   only ever unwraps per-session keys. `key.session_public` is kept: it is not secret,
   it names the key that was destroyed, and a stage task still in flight then fails on
   a missing blob instead of on a malformed session. The client's free-form `metadata`
   (file names, user names) is cleared too.
3. Delete every blob under `sessions/{id}/`: raw plaintext, the part blobs of a live
   upload's partial chunk, compressed, encrypted. No lock is needed: every ingest commit
   is a compare-and-set that requires ACTIVE, so an upload still in flight loses its
   commit and deletes the blob it just wrote; a second purge catches any straggler.
4. CLEANUP_COMPLETE → DESTROYED with `destroyed_at` and `destroyed_by`.

The tombstone keeps session id, tenant, merkle_root, tree_size, anchor and history, and
the chunk (leaf) records are kept as well: they hold ciphertext digests, lengths and
algorithms, never plaintext or key material, and with them the anchored root can still
be recomputed and a surviving ciphertext chunk still proven to have been part of it.
Downloads of a DESTROYED session answer Gone (410); see `check_not_destroyed`.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from lucid.errors import Conflict, Gone
from lucid.lifecycle.states import SessionState, Trigger
from lucid.runtime import Runtime
from lucid.storage import layout

__all__ = ["check_not_destroyed", "shred_session"]

log = logging.getLogger(__name__)


def check_not_destroyed(session: Mapping[str, Any]) -> None:
    """Raise Gone (410) if the session is crypto-shredded or being shredded."""
    if session.get("state") in (SessionState.CLEANUP, SessionState.DESTROYED):
        raise Gone(
            f"session {session.get('session_id')} was deleted "
            f"(state {session.get('state')}); only its tombstone and proofs remain"
        )


def _purge(rt: Runtime, session_id: str) -> int:
    """Delete the session's blobs (plaintext included); return how many went."""
    return rt.blobs.delete_prefix(f"sessions/{layout.check_session_id(session_id)}/")


def shred_session(rt: Runtime, session_id: str, by: str) -> dict[str, Any]:
    """Crypto-shred the session on behalf of `by`; return its tombstone.

    Conflict if it is on legal hold. Idempotent: a DESTROYED session is purged again
    (a stage that was still running may have written a blob after the first pass).
    """
    doc = rt.meta.get_session(session_id)
    if doc["state"] == SessionState.DESTROYED:
        _purge(rt, session_id)
        return doc
    doc = rt.meta.begin_cleanup(
        session_id, reason=f"delete requested by {by}", set_fields={"cleanup_by": by}, by=by
    )
    if doc["state"] == SessionState.DESTROYED:  # a concurrent shred finished meanwhile
        _purge(rt, session_id)
        return doc
    key = doc.get("key") or {}
    if "wrapped_private" in key or doc.get("metadata"):
        kept = {"session_public": key["session_public"]} if "session_public" in key else None
        # Conflict: a concurrent shred completed, and it destroyed the key before that.
        with contextlib.suppress(Conflict):
            rt.meta.update_session(
                session_id,
                {"key": kept, "metadata": {}, "tail": None},
                expect_state=SessionState.CLEANUP,
            )
    removed = _purge(rt, session_id)
    requested_by = doc.get("cleanup_by") or by
    try:
        tombstone = rt.meta.apply_trigger(
            session_id,
            Trigger.CLEANUP_COMPLETE,
            reason=f"key and {removed} blobs destroyed by {by}",
            set_fields={
                "destroyed_at": datetime.now(UTC).isoformat(timespec="microseconds"),
                "destroyed_by": requested_by,
            },
            expect_state=SessionState.CLEANUP,
            by=by,
        )
    except Conflict:
        tombstone = rt.meta.get_session(session_id)
        if tombstone["state"] != SessionState.DESTROYED:  # not a concurrent shred winning
            raise
    log.info("shredded session_id=%s blobs=%d by=%s", session_id, removed, requested_by)
    return tombstone
