"""Session lifecycle and live ingest: create, start, append bytes, pause, stop, recover.

Ingest writes the bytes of the chunk being filled to a staging file and publishes it as a
write-once raw blob once it is known whether more data follows, so every chunk but the
last has exactly `chunk_size` bytes and the last one is flagged final. Appends to one
session are serialised by a file lock; the session document records how many bytes and
chunks are committed, and bytes past that (a request that died midway) are discarded.
"""

from __future__ import annotations

import fcntl
import os
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from lucid import layout
from lucid.errors import Conflict, NotFound, TooLarge
from lucid.keys import new_session_key
from lucid.runtime import Runtime
from lucid.states import ChunkStage, SessionState, Trigger

__all__ = [
    "OnChunk",
    "append",
    "create_session",
    "ingest_recording",
    "pause",
    "recover",
    "resume",
    "start",
    "stop",
]

OnChunk = Callable[[str, int, bool], None]
_READ_SIZE = 1 << 20
_MAX_PENDING_CUTS = 2
_CUT_PREFIX = "cut-"


def create_session(rt: Runtime, metadata: dict[str, Any] | None = None) -> dict[str, Any]:
    """A new session in CREATED with its own key pair, the private half stored wrapped."""
    session_id = uuid.uuid4().hex
    envelope = new_session_key(rt.recipient_public, session_id)
    s = rt.settings
    return rt.meta.create_session(
        session_id,
        {
            "metadata": metadata or {},
            "chunk_size": s.chunk_size,
            "compression": s.compression_algorithm,
            "compression_level": s.compression_level,
            "encryption": s.encryption_algorithm,
            "key": envelope.to_dict(),
            "bytes_received": 0,
            "chunks_emitted": 0,
            "chunk_count": None,
            "merkle_root": None,
            "anchor": None,
            "error": None,
        },
    )


def start(rt: Runtime, session_id: str) -> dict[str, Any]:
    """CREATED → STARTING → ACTIVE: the session accepts data."""
    rt.meta.apply_trigger(session_id, Trigger.START)
    return rt.meta.apply_trigger(session_id, Trigger.START_COMPLETE)


def pause(rt: Runtime, session_id: str) -> dict[str, Any]:
    """ACTIVE → PAUSING → PAUSED; chunks already cut keep moving through the pipeline."""
    rt.meta.apply_trigger(session_id, Trigger.PAUSE)
    return rt.meta.apply_trigger(session_id, Trigger.PAUSE_COMPLETE)


def resume(rt: Runtime, session_id: str) -> dict[str, Any]:
    """PAUSED → ACTIVE."""
    return rt.meta.apply_trigger(session_id, Trigger.RESUME)


def recover(rt: Runtime, session_id: str) -> dict[str, Any]:
    """ERROR → ACTIVE, clearing the error; stop it again to re-run the seal."""
    return rt.meta.apply_trigger(session_id, Trigger.RECOVER, set_fields={"error": None})


def append(
    rt: Runtime, session_id: str, stream: IO[bytes], on_chunk: OnChunk, *, limit: int | None = None
) -> dict[str, Any]:
    """Append `stream` to an ACTIVE session; `on_chunk(session_id, i, final)` per cut chunk."""
    _require_state(rt.meta.get_session(session_id), SessionState.ACTIVE, "append data")
    max_total = limit if limit is not None else int(rt.settings.max_recording_mb * 1024 * 1024)
    with _locked(rt, session_id) as staging:
        doc = rt.meta.get_session(session_id)
        _require_state(doc, SessionState.ACTIVE, "append data")
        writer = _ChunkWriter(rt, doc, staging, on_chunk)
        too_large = False
        try:
            while data := stream.read(_READ_SIZE):
                if writer.total + len(data) > max_total:
                    too_large = True
                    break
                writer.write(data)
        finally:
            writer.close()  # waits for the chunks already cut to be committed
        if too_large:
            raise TooLarge(
                f"recording exceeds MAX_RECORDING_MB ({max_total} bytes); "
                f"{writer.committed} bytes are kept"
            )
        return writer.commit()


def stop(rt: Runtime, session_id: str, on_chunk: OnChunk | None = None) -> dict[str, Any]:
    """Cut the final chunk (`on_chunk` gets it) and move to STOPPING with the chunk count
    fixed (idempotent)."""
    doc = rt.meta.get_session(session_id)
    if doc["state"] == SessionState.STOPPING or (
        doc["state"] == SessionState.STOPPED and doc.get("merkle_root")
    ):
        return doc
    if doc.get("chunk_count") is not None:  # recovered after an error: the cut is done
        return rt.meta.apply_trigger(session_id, Trigger.STOP)
    if doc["state"] not in (SessionState.ACTIVE, SessionState.PAUSED):
        _require_state(doc, SessionState.ACTIVE, "stop")
    with _locked(rt, session_id) as staging:
        doc = rt.meta.get_session(session_id)
        writer = _ChunkWriter(rt, doc, staging, on_chunk or (lambda s, i, f: None))
        writer.close()
        count = writer.cut(final=True)
        return rt.meta.apply_trigger(
            session_id,
            Trigger.STOP,
            set_fields={"chunk_count": count, "bytes_received": writer.committed},
        )


def ingest_recording(
    rt: Runtime, session_id: str, stream: IO[bytes], on_chunk: OnChunk, *, limit: int | None = None
) -> dict[str, Any]:
    """A whole recording in one go: start, append everything, stop."""
    start(rt, session_id)
    append(rt, session_id, stream, on_chunk, limit=limit)
    return stop(rt, session_id, on_chunk)


def _require_state(doc: dict[str, Any], state: SessionState, action: str) -> None:
    if doc["state"] != state:
        raise Conflict(
            f"cannot {action}: session {doc['session_id']} is {doc['state']}, expected {state}"
        )


@contextmanager
def _locked(rt: Runtime, session_id: str) -> Iterator[Path]:
    staging = rt.settings.data_dir / "staging" / layout.check_session_id(session_id)
    staging.mkdir(parents=True, exist_ok=True)
    with open(staging / ".lock", "a+b") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield staging
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


class _ChunkWriter:
    """Fills the staging file of the current chunk and cuts it into raw blobs.

    A full chunk is committed (adopted as a raw blob, recorded, handed to the pipeline) on
    one background thread, in index order, while the request goes on reading the next one:
    the fsyncs and metadata round trips of a cut no longer stall the upload.
    """

    def __init__(self, rt: Runtime, doc: dict[str, Any], staging: Path, on_chunk: OnChunk) -> None:
        self.rt, self.on_chunk = rt, on_chunk
        self.session_id: str = doc["session_id"]
        self.chunk_size = int(doc["chunk_size"])
        self.index = int(doc["chunks_emitted"])
        self.committed = int(doc["bytes_received"])
        # A crash between publishing a chunk and recording it leaves the chunk behind.
        while self._chunk_exists(self.index):
            self.index += 1
            self.committed = max(self.committed, self.index * self.chunk_size)
        # Full chunks a crash caught before they were adopted: never counted, so dropped.
        for stale in staging.glob(f"{_CUT_PREFIX}*"):
            stale.unlink()
        self.path = staging / "current"
        self.file = open(self.path, "a+b")  # noqa: SIM115 - closed in close()
        self.filled = self.committed - self.index * self.chunk_size
        self.file.truncate(self.filled)
        self.file.seek(self.filled)
        self._committer = ThreadPoolExecutor(1, thread_name_prefix="lucid-ingest")
        self._pending: deque[Future[None]] = deque()
        self._error: BaseException | None = None

    @property
    def total(self) -> int:
        return self.index * self.chunk_size + self.filled

    def _chunk_exists(self, index: int) -> bool:
        if self.rt.blobs.exists(layout.raw_key(self.session_id, index)):
            return True
        try:
            self.rt.meta.get_chunk(self.session_id, index)
        except NotFound:
            return False
        return True

    def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            if self.filled == self.chunk_size:
                self.file.close()
                self._hand_off()
                self.file = open(self.path, "w+b")  # noqa: SIM115 - closed in close()
            take = min(len(view), self.chunk_size - self.filled)
            self.file.write(view[:take])
            self.filled += take
            view = view[take:]

    def _hand_off(self) -> None:
        """Queue the full staging file for commit as chunk `index`; at most two wait."""
        while len(self._pending) >= _MAX_PENDING_CUTS:
            self._pending.popleft().result()
        if self._error is not None:
            raise self._error
        cut = self.path.with_name(f"{_CUT_PREFIX}{self.index}")
        os.replace(self.path, cut)
        self._pending.append(self._committer.submit(self._commit_in_order, cut, self.index))
        self.index, self.filled = self.index + 1, 0

    def _commit_in_order(self, path: Path, index: int) -> None:
        if self._error is not None:  # an earlier chunk failed: a later one must not land
            return
        try:
            self._commit(path, index, final=False, size=self.chunk_size)
        except BaseException as exc:
            self._error = exc

    def _commit(self, path: Path, index: int, *, final: bool, size: int) -> None:
        self.rt.blobs.put_file(layout.raw_key(self.session_id, index), path)
        self.rt.meta.record_chunk(
            self.session_id, index, ChunkStage.RECEIVED, {"final": final, "plaintext_len": size}
        )
        self.committed = index * self.chunk_size + size
        # Progress only: the journaled write that ends the request makes it durable.
        self.rt.meta.update_session(
            self.session_id,
            {"chunks_emitted": index + 1, "bytes_received": self.committed},
            journal=False,
        )
        self.on_chunk(self.session_id, index, final)

    def cut(self, *, final: bool) -> int:
        """Commit the staging file as chunk `index` now; return the number of chunks cut."""
        if not self.path.exists():
            self.path.touch()
        self._commit(self.path, self.index, final=final, size=self.filled)
        self.index, self.filled = self.index + 1, 0
        return self.index

    def close(self) -> None:
        """Sync the partial chunk and wait for every queued commit (errors kept for commit)."""
        if not self.file.closed:
            self.file.flush()
            os.fsync(self.file.fileno())
            self.file.close()
        while self._pending:
            self._pending.popleft().result()
        self._committer.shutdown()

    def commit(self) -> dict[str, Any]:
        if self._error is not None:
            raise self._error
        self.committed = self.total
        return self.rt.meta.update_session(
            self.session_id,
            {"bytes_received": self.committed},
            expect_state=SessionState.ACTIVE,
        )
