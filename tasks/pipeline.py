"""The pipeline tasks: one thin task per stage, each calling one `lucid.pipeline.stages` function.

Messages carry ids and small dicts only (claim check). Every task is acks_late and may run
twice; the stage functions converge. Transient failures are retried with backoff, permanent
ones move the session to ERROR with the reason and are not retried.
"""

from __future__ import annotations

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
        try:
            result = super().__call__(*args, **kwargs)
        except BROKER_UNAVAILABLE as exc:
            # Redis went away under the task (even its retry could not be published):
            # hand the message back rather than fail the session; the reject reaches
            # Redis once it is back, or the message stays unacked and is restored.
            raise Reject(exc, requeue=True) from exc
        elapsed = time.perf_counter() - started
        record_stage_time(self.app, self.stage, elapsed, _session_of(args, kwargs))
        log.info(
            "event=task_done stage=%s task_id=%s task_name=%s session_id=%s index=%s ms=%.1f",
            self.stage, self.request.id, self.name, _session_of(args, kwargs),
            _index_of(args), elapsed * 1000,
        )  # fmt: skip
        return result

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
