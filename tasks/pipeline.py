"""The pipeline tasks: one thin task per stage, each calling one `lucid.pipeline.stages` function.

Messages carry ids and small dicts only (claim check). Every task is acks_late and may run
twice; the stage functions converge. Transient failures are retried with backoff, permanent
ones move the session to ERROR with the reason and are not retried.
"""

from __future__ import annotations

import contextlib
import time
from typing import Any

import kombu.exceptions
import pymongo.errors
from celery import Task
from celery.exceptions import Ignore, Reject
from celery.utils.log import get_task_logger

from lucid.errors import (
    Conflict,
    InvalidTransition,
    LucidError,
    StaleSeal,
    TransientError,
)
from lucid.lifecycle.states import SessionState, Trigger
from lucid.pipeline import stages
from lucid.pipeline.hold import hold_if_paused
from lucid.redaction import redact_paths
from lucid.runtime import get_runtime
from tasks.app import app
from tasks.metrics import REDIS_UNAVAILABLE, record_stage_time

log = get_task_logger(__name__)

TRANSIENT = (
    TransientError,
    pymongo.errors.AutoReconnect,
    pymongo.errors.NetworkTimeout,
    pymongo.errors.ServerSelectionTimeoutError,
    ConnectionError,
    TimeoutError,
    *REDIS_UNAVAILABLE,
    kombu.exceptions.OperationalError,
)
# Failures of the broker/result store itself: the session did nothing wrong, and its
# unacked message comes back once Redis does (see on_failure).
BROKER_UNAVAILABLE = (*REDIS_UNAVAILABLE, kombu.exceptions.OperationalError)


# Only compress: it is where a second copy costs (10x the CPU per byte of encrypt + hash),
# and a copy waiting in a one-process encrypt or hash group would hold its only slot.
_CHUNK_STAGES = frozenset({"compress"})
# Longer than a stage takes on one chunk on a busy machine, short enough that a copy
# waiting on a killed holder (whose lease only expires) finishes the chord soon after.
_CHUNK_LEASE_S = 5
_LEASE_POLL_S = 0.05


class RedeliveryCapExceeded(LucidError):
    """A message came back more often than REDELIVERY_CAP allows (a poison message)."""


class StageTask(Task):  # type: ignore[misc]
    """Reliability options and failure handling shared by every pipeline task."""

    acks_late = True
    reject_on_worker_lost = True
    autoretry_for = TRANSIENT
    retry_backoff = 1
    retry_backoff_max = 60
    retry_jitter = True
    stage = "?"

    @property
    def max_retries(self) -> int:  # type: ignore[override]
        return get_runtime().settings.task_max_retries

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self._check_redelivery_cap()
        started = time.perf_counter()
        cpu0 = time.thread_time()
        lease = self._lease(args)
        try:
            result = super().__call__(*args, **kwargs)
        except BROKER_UNAVAILABLE as exc:
            # Redis went away under the task (even its retry could not be published):
            # hand the message back rather than fail the session; the reject reaches
            # Redis once it is back, or the message stays unacked and is restored.
            raise Reject(exc, requeue=True) from exc
        finally:
            if lease:
                self._release(lease)
        elapsed = time.perf_counter() - started
        record_stage_time(self.app, self.stage, elapsed, _session_of(args, kwargs))
        log.info(
            "event=task_done stage=%s task_id=%s task_name=%s session_id=%s index=%s ms=%.1f "
            "cpu_ms=%.1f",
            self.stage, self.request.id, self.name, _session_of(args, kwargs),
            _index_of(args), elapsed * 1000, (time.thread_time() - cpu0) * 1000,
        )  # fmt: skip
        return result

    def _lease(self, args: Any) -> str | None:
        """Run one copy of a chunk's stage at a time; returns the lease key held.

        The seal's chord sends a chain for every chunk not yet hashed, and a redelivery can
        run beside the first delivery: without this, a copy that starts while the first is
        still compressing finds no output yet and does the whole work again (measured: the
        compress workers spent 1.8x the in-process limit's CPU on the same bytes). A copy
        waits until the running one is done, then finds its output and skips. The lease
        expires after CHUNK_LEASE_S, so a copy never waits long on a dead worker; the same
        task id (a redelivery of the holder) takes it over at once.
        """
        if self.stage not in _CHUNK_STAGES:
            return None
        session_id, index = _session_of(args, {}), _index_of(args)
        if session_id is None or not isinstance(index, int):
            return None
        key = f"lucid:lease:{self.stage}:{session_id}:{index}"
        me = str(self.request.id)
        deadline = time.monotonic() + _CHUNK_LEASE_S
        try:
            redis = self.app.backend.client
            while True:
                if redis.set(key, me, nx=True, ex=_CHUNK_LEASE_S):
                    return key
                holder = redis.get(key)
                if holder is None:
                    continue
                if holder.decode() == me or time.monotonic() > deadline:
                    return None
                time.sleep(_LEASE_POLL_S)
        except REDIS_UNAVAILABLE as exc:  # a wasted copy at worst: run it
            log.warning("event=lease_unavailable task_id=%s error=%r", me, exc)
            return None

    def _release(self, key: str) -> None:
        with contextlib.suppress(*REDIS_UNAVAILABLE):
            redis = self.app.backend.client
            if (redis.get(key) or b"").decode() == str(self.request.id):
                redis.delete(key)

    def _check_redelivery_cap(self) -> None:
        settings = get_runtime().settings
        key = f"lucid:deliveries:{self.request.id}"
        try:
            pipe = self.app.backend.client.pipeline(transaction=False)
            pipe.incr(key)
            pipe.expire(key, settings.visibility_timeout_s * 4)
            seen = int(pipe.execute()[0])
        except REDIS_UNAVAILABLE as exc:
            # The cap guards against poison messages; it cannot count while Redis is away,
            # and a poison message still meets it on its next delivery. Run this one.
            log.warning("event=redelivery_uncounted task_id=%s error=%r", self.request.id, exc)
            return
        allowed = settings.task_max_retries + settings.redelivery_cap + 1
        if seen > allowed:
            raise RedeliveryCapExceeded(f"delivered {seen} times, cap is {allowed}")

    def on_failure(
        self, exc: BaseException, task_id: str, args: Any, kwargs: Any, einfo: Any
    ) -> None:
        session_id = _session_of(args, kwargs)
        reason = f"{self.stage} failed: {type(exc).__name__}: {exc}"
        if isinstance(exc, BROKER_UNAVAILABLE):
            # Redis went away after the body (storing the result, publishing the next
            # link): not the session's fault, so it is not failed; the message comes
            # back unless its ack reached Redis (then POST .../recover resumes the session).
            log.warning(
                "event=task_broker_lost stage=%s task_id=%s session_id=%s reason=%r",
                self.stage, task_id, session_id, reason,
            )  # fmt: skip
            return
        log.error(
            "event=task_failed stage=%s task_id=%s task_name=%s session_id=%s reason=%r",
            self.stage, task_id, self.name, session_id, reason,
        )  # fmt: skip
        if session_id:
            mark_error(session_id, reason)


def mark_error(session_id: str, reason: str) -> None:
    """Move a session to ERROR with `reason`. A failure on a session already in ERROR is
    recorded in its history (as the state machine intends), but `error` keeps the first
    reason: that is the cause, later failures (a seal refused in ERROR, say) its echoes."""
    meta = get_runtime().meta
    reason = redact_paths(reason)  # clients read it: keep the error, not where files live
    for _ in range(3):  # the session may move between the read and the compare-and-set
        state = SessionState(meta.get_session(session_id)["state"])
        fields = {} if state == SessionState.ERROR else {"error": reason}
        try:
            meta.apply_trigger(
                session_id, Trigger.ERROR, reason=reason, set_fields=fields, expect_state=state
            )
        except Conflict:
            continue
        except InvalidTransition:  # CLEANUP or DESTROYED: nothing left to fail
            pass
        return


def _session_of(args: Any, kwargs: Any) -> str | None:
    for value in (*args, *kwargs.values()):
        if isinstance(value, str) and len(value) == 32:
            return value
        if isinstance(value, dict) and "session_id" in value:
            return str(value["session_id"])
    return None


def _index_of(args: Any) -> Any:
    for value in args:
        if isinstance(value, dict) and "index" in value:
            return value["index"]
    return args[1] if len(args) > 1 and isinstance(args[1], int) else "-"


# Chains hand each result to the next task in its message: only the chord's last link
# (hash, leaf) needs its result stored in the backend.
@app.task(name="lucid.compress", base=StageTask, stage="compress", ignore_result=True)
def compress(session_id: str, index: int, final: bool) -> stages.ChunkRef:
    rt = get_runtime()
    if hold_if_paused(rt, session_id, index):
        # The chain ends here, the chunk marked held; resuming the pipeline sends it again.
        raise Ignore()
    return stages.compress_chunk(rt, session_id, index, final)


@app.task(name="lucid.encrypt", base=StageTask, stage="encrypt", ignore_result=True)
def encrypt(ref: stages.ChunkRef) -> stages.ChunkRef:
    return stages.encrypt_stage(get_runtime(), ref)


@app.task(name="lucid.hash", base=StageTask, stage="hash")
def hash_(ref: stages.ChunkRef) -> stages.LeafRef:
    return stages.hash_chunk(get_runtime(), ref)


# No longer in the seal's chord (it reads hashed chunks' leaves from their records); kept so
# that a chord published by an earlier version still finds its tasks after an upgrade.
@app.task(name="lucid.leaf", base=StageTask, stage="hash")
def leaf(session_id: str, index: int) -> stages.LeafRef:
    return stages.leaf_of(get_runtime(), session_id, index)


@app.task(name="lucid.integrity.merkle", base=StageTask, stage="merkle")
def merkle(results: list[stages.LeafRef], session_id: str) -> str:
    try:
        return stages.seal_session(get_runtime(), session_id, results)
    except StaleSeal as exc:  # not a failure of this session: stop here, anchor nothing
        log.info("event=seal_stale session_id=%s reason=%r", session_id, str(exc))
        raise Ignore() from exc


@app.task(name="lucid.anchor", base=StageTask, stage="anchor")
def anchor(session_id: str) -> dict[str, Any]:
    return stages.anchor_session(get_runtime(), session_id)


@app.task(name="lucid.barrier", acks_late=True, ignore_result=True)
def barrier(session_id: str) -> None:
    """Nothing: it only has to wait its turn in each stage queue (see enqueue_seal)."""


@app.task(name="lucid.publish_seal", base=StageTask, stage="merkle")
def publish_seal(session_id: str) -> str:
    """Publish the session's chord from a worker, never inside the HTTP request."""
    from tasks.canvas import seal_canvas  # canvas imports this module

    result = seal_canvas(get_runtime(), session_id).apply_async()
    return str(result.id)
