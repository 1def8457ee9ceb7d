"""The canvases: a chain per chunk; per session a chord over the unhashed ones → merkle → anchor."""

from __future__ import annotations

from celery import chain, chord
from celery.canvas import Signature

from lucid.runtime import Runtime
from tasks.app import app
from tasks.pipeline import anchor, barrier, compress, encrypt, hash_, merkle, publish_seal

__all__ = ["chunk_chain", "enqueue_chunk", "enqueue_seal", "seal_canvas"]


def chunk_chain(session_id: str, index: int, final: bool) -> Signature:
    """compress → encrypt → hash for one chunk; the last task returns {index, leaf_hash}."""
    return chain(compress.s(session_id, index, final), encrypt.s(), hash_.s())


def enqueue_chunk(session_id: str, index: int, final: bool) -> None:
    """Start a chunk through the pipeline as soon as it is cut (live sessions)."""
    chunk_chain(session_id, index, final).apply_async()


def enqueue_seal(session_id: str) -> None:
    """Ask a merkle worker to publish the session's chord, once the chunks already queued
    have gone through.

    A barrier task passes through compress → encrypt → hash first. The queues are FIFO,
    so it leaves each one only after the chunks queued ahead of it were taken (it can pass
    at most the few a stage is still working on): the chord then finds those chunks hashed
    and leaves them out instead of sending their whole chain a second time.
    """
    chain(
        *(
            # the stage's own queue as celeryconfig names it (QUEUE_PREFIX)
            barrier.si(session_id).set(queue=app.conf.task_routes[f"lucid.{stage}"]["queue"])
            for stage in ("compress", "encrypt", "hash")
        ),
        publish_seal.si(session_id),
    ).apply_async()


def seal_canvas(rt: Runtime, session_id: str) -> Signature:
    """chord([chain per chunk not yet hashed]) → merkle → anchor; merkle → anchor alone
    when every chunk is hashed already.

    The seal reads every leaf from the chunk records, so a chunk already hashed needs no
    task in the chord: a `leaf` task per hashed chunk only added a task, a result and a
    chord-counter update each (5,000 of them for a 5,000-chunk session with one chunk
    still in flight).
    """
    count = int(rt.meta.get_session(session_id)["chunk_count"])
    # Only the chunks still to hash come back (not 5,000 records for a long session); a
    # chunk without a record is the seal's to refuse (it checks every index).
    pending = [i for i in rt.meta.unhashed_indexes(session_id) if i < count]
    if not pending:
        return chain(merkle.si([], session_id), anchor.si(session_id))
    header = [chunk_chain(session_id, i, i == count - 1) for i in pending]
    return chord(header, chain(merkle.s(session_id), anchor.si(session_id)))
