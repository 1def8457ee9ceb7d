"""Offset-checked, exactly-once ingest: appends land only at the committed length.

No local staging file and no lock: any API process on any host may take the next request,
because every decision is a compare-and-set in the metadata store.

* The session document holds the ingest *tail*: `{chunk, length, parts, raw, seq}`. A
  request's bytes for the chunk still being filled are one write-once *part* blob (unique
  key); the tail lists the parts in order. When a chunk is known to be full and more bytes
  follow, its bytes become one raw blob (unique key) and the tail names it in `raw`.
* **Commit point: a tail swap** — a find-one-and-update that requires the session ACTIVE,
  unsealed (`chunk_count` null) and `tail.seq` unchanged since the request read it. Of two
  requests at the same offset exactly one swap succeeds; the loser deletes its blob and
  answers 409 with the true offset. So the full-chunk commit and the partial commit are
  serialised by the same write.
* **Derived, never counted:** a chunk record (unique on session and index) is inserted for
  a full chunk right after its swap, by whichever request sees it first (the insert that
  succeeds hands it to the pipeline). With N records, the committed length is
  N * chunk_size + the tail's length when the tail is still chunk N (a tail whose `raw`
  is not yet recorded counts as a whole chunk). `bytes_received` and `chunks_emitted` on
  the session are a display cache only.
* **The final chunk** is cut by stop after ACTIVE → STOPPING (no swap succeeds after that):
  the tail's parts become one raw blob and its record is inserted with `final=True` — that
  insert is the commit point; then `chunk_count` is set. A stop that crashed anywhere in
  between is finished by calling `finish_stop` again.
* Every chunk but the last has exactly chunk_size bytes: a chunk that fills exactly at the
  end of a request stays a tail until more bytes (or the stop) say whether it is final.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol

from lucid.errors import Conflict, IntegrityError, InvalidInput, OffsetMismatch, TooLarge
from lucid.lifecycle.states import SessionState
from lucid.pipeline.buffers import POOL
from lucid.runtime import Runtime
from lucid.storage import layout

__all__ = [
    "IngestState",
    "OnChunk",
    "Readable",
    "append",
    "committed_length",
    "derive",
    "finish_stop",
    "last_record",
    "progress",
    "settle",
]

OnChunk = Callable[[str, int, bool], None]


class Readable(Protocol):
    """A request body: read into the caller's buffer, 0 at the end."""

    def readinto(self, buffer: memoryview, /) -> int | None: ...


_STOP_ATTEMPTS = 8


def _ignore(session_id: str, index: int, final: bool) -> None:
    """The hand-off when nobody wants one (the seal's chord picks unhashed chunks up)."""


@dataclass(frozen=True)
class IngestState:
    """What the store says is committed, derived from the chunk records and the tail."""

    chunk_size: int
    chunks: int  # N: chunk records 0..N-1
    final_cut: bool  # record N-1 is the final chunk: nothing may be appended
    seq: int | None  # tail.seq as read, for the next swap (None: no tail yet)
    tail_length: int  # bytes of chunk N committed as parts (chunk_size if `pending_raw`)
    parts: list[dict[str, Any]] = field(default_factory=list)  # chunk N's parts, in order
    pending_raw: str | None = None  # chunk N committed by a swap, its record not inserted yet
    stale_parts: list[dict[str, Any]] = field(default_factory=list)  # of a chunk now recorded

    @property
    def committed(self) -> int:
        """The committed length: where the next append must start."""
        return self.chunks * self.chunk_size + self.tail_length


def derive(doc: dict[str, Any], last: dict[str, Any] | None) -> IngestState:
    """The ingest state from a session document and then its highest chunk record.

    Read the session first: a tail only moves to chunk n+1 after record n exists, so a
    record read later is never behind the tail read before it.
    """
    n = 0 if last is None else int(last["index"]) + 1
    if last is not None and last.get("final"):
        tail = doc.get("tail")
        seq = None if tail is None else int(tail["seq"])
        return IngestState(int(doc["chunk_size"]), n - 1, True, seq, int(last["plaintext_len"]))
    return _on_records(doc, n)


def _on_records(doc: dict[str, Any], n: int) -> IngestState:
    """The state of a session whose records 0..n-1 exist and none is final, from its tail."""
    size = int(doc["chunk_size"])
    tail = doc.get("tail")
    seq = None if tail is None else int(tail["seq"])
    if tail is None:
        return IngestState(size, n, False, seq, 0)
    if int(tail["chunk"]) != n:  # its chunk was recorded meanwhile: its parts are garbage
        return IngestState(size, n, False, seq, 0, stale_parts=list(tail.get("parts") or []))
    if tail.get("raw"):
        return IngestState(size, n, False, seq, size, pending_raw=str(tail["raw"]))
    return IngestState(size, n, False, seq, int(tail["length"]), parts=list(tail["parts"]))


def _final_count(state: IngestState) -> int:
    return state.chunks + 1 if state.final_cut else state.chunks


def committed_length(rt: Runtime, session_id: str) -> int:
    """The committed length of the session: the offset a resuming client must send."""
    return progress(rt, rt.meta.get_session(session_id))[0]


def progress(rt: Runtime, doc: dict[str, Any]) -> tuple[int, int]:
    """The committed length of the session `doc` was just read for, and its number of
    chunk records (they are 0..n-1)."""
    last = last_record(rt, doc)
    return derive(doc, last).committed, 0 if last is None else int(last["index"]) + 1


def last_record(rt: Runtime, doc: dict[str, Any]) -> dict[str, Any] | None:
    """The session's highest chunk record, looked for where `doc` says it is: records
    0..n-1 exist once the tail names chunk n, or once `chunk_count` is n. Records only
    grow after `doc` was read, so the last one is there or above; only those are read."""
    if doc.get("chunk_count") is not None:
        expected = int(doc["chunk_count"]) - 1
    else:
        tail = doc.get("tail")
        expected = 0 if tail is None else int(tail["chunk"]) - 1
    return rt.meta.last_chunk(doc["session_id"], at_least=max(0, expected))


def _from_tail(doc: dict[str, Any]) -> IngestState | None:
    """The ingest state from the session document alone, when its tail says it all.

    An ACTIVE session whose tail holds parts (no `raw`) is filling chunk `tail.chunk`, and
    records 0..tail.chunk-1 exist: a tail only moves to a chunk's parts once the chunk
    before it is recorded, and no record of the chunk being filled exists before a swap
    names its raw blob (or a stop cuts it, and that needs STOPPING). A session that was
    ever STOPPING may hold a final record its stop did not finish (then ERROR, recover):
    that one is derived from its records. This saves a query on every live append.
    """
    tail = doc.get("tail")
    if (
        doc["state"] != SessionState.ACTIVE
        or doc.get("chunk_count") is not None
        or tail is None
        or tail.get("raw")
        or any(step.get("to_state") == SessionState.STOPPING for step in doc.get("history", []))
    ):
        return None
    return _on_records(doc, int(tail["chunk"]))


def settle(rt: Runtime, doc: dict[str, Any], on_chunk: OnChunk) -> IngestState:
    """Derive the state, first recording a full chunk whose swap committed it (a request
    that died between its swap and its insert); the insert that wins hands it on."""
    session_id = doc["session_id"]
    fast = _from_tail(doc)
    if fast is not None:
        return fast
    state = derive(doc, last_record(rt, doc))
    if state.pending_raw is None:
        return state
    try:
        rt.meta.insert_chunk(
            session_id,
            state.chunks,
            {"final": False, "plaintext_len": state.chunk_size, "raw_key": state.pending_raw},
        )
    except Conflict:
        pass  # the request that committed it (or another) recorded it and handed it on
    else:
        on_chunk(session_id, state.chunks, False)
    return derive(doc, last_record(rt, doc))


def _lost(rt: Runtime, session_id: str, got: int) -> Conflict:
    """Why a tail swap failed: the session left ACTIVE, or another request got there first."""
    doc = rt.meta.get_session(session_id)
    if doc["state"] != SessionState.ACTIVE or doc.get("chunk_count") is not None:
        return Conflict(
            f"cannot append data: session {session_id} became {doc['state']} "
            "while the request was being read"
        )
    committed = derive(doc, last_record(rt, doc)).committed
    return OffsetMismatch(committed, got, "; another request appended at that offset first")


def append(
    rt: Runtime,
    session_id: str,
    stream: Readable,
    on_chunk: OnChunk,
    *,
    offset: int | None,
    limit: int | None = None,
    doc: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Append `stream` to an ACTIVE session at `offset`, which must equal the committed
    length (OffsetMismatch otherwise, nothing appended); `on_chunk(session_id, i, final)`
    for every chunk committed. Returns the session document after the last commit, with
    `offset`: the committed length (known here, so the caller need not read it back).

    A stream that fails midway keeps what was read before (committed as a tail); a stream
    over `limit` keeps only the full chunks committed before the limit was hit. `doc`: the
    session document if the caller just read it (a stale one only makes the commit fail).
    """
    doc = doc if doc is not None else rt.meta.get_session(session_id)
    if doc["state"] != SessionState.ACTIVE:
        raise Conflict(
            f"cannot append data: session {session_id} is {doc['state']}, "
            f"expected {SessionState.ACTIVE}"
        )
    state = settle(rt, doc, on_chunk)
    if doc.get("chunk_count") is not None or state.final_cut:
        raise Conflict(
            f"cannot append data: session {session_id} already has its final chunk "
            f"(chunk {_final_count(state) - 1}, {state.committed} bytes); stop it to seal again"
        )
    if offset is None:
        raise InvalidInput(
            "state the offset the bytes start at (Upload-Offset header or ?offset=); "
            f"the session has {state.committed} bytes"
        )
    if offset != state.committed:
        raise OffsetMismatch(state.committed, offset)
    max_total = limit if limit is not None else int(rt.settings.max_recording_mb * 1024 * 1024)
    writer = _Appender(rt, session_id, state, on_chunk)
    try:
        writer.fill(stream, max_total)
    except TooLarge:
        writer.close(keep_tail=False)
        raise TooLarge(
            f"recording exceeds MAX_RECORDING_MB ({max_total} bytes); "
            f"{writer.committed} bytes are kept"
        ) from None
    except BaseException:
        writer.close(keep_tail=True)  # what arrived before the failure is a valid prefix
        raise
    writer.close(keep_tail=True)
    doc = writer.doc if writer.doc is not None else rt.meta.get_session(session_id)
    return {**doc, "offset": writer.committed}


class _Appender:
    """Fills chunk buffers from one request and commits them by tail swaps, in order.

    A full chunk is committed on one background thread while the request reads the next
    one into the second buffer: memory stays at two chunks whatever the upload's size.
    """

    def __init__(self, rt: Runtime, session_id: str, state: IngestState, on_chunk: OnChunk) -> None:
        self.rt, self.session_id, self.on_chunk = rt, session_id, on_chunk
        self.size = state.chunk_size
        self.start = self.position = self.committed = state.committed
        self.index, self.seq = state.chunks, state.seq
        self.parts = state.parts  # committed parts of the chunk being filled
        self.garbage = [p["key"] for p in state.stale_parts]
        self.token = layout.new_token()
        self.doc: dict[str, Any] | None = None
        # The buffer holds the chunk's bytes from `base` on: this request's only, until the
        # chunk fills and its earlier parts are read back in (_load_parts). A small append
        # (a live recorder's piece) never rereads the parts before it: reading them on
        # every request cost O(parts) per append, O(parts²) per chunk.
        self.buffers = [POOL.take(self.size)]
        self.buf = self.buffers[0]
        self.base = state.tail_length if self.parts else 0
        self.filled = self.base  # chunk offset of the next byte
        self.new_from = self.filled  # this request's bytes start here in the chunk
        self._committer = ThreadPoolExecutor(1, thread_name_prefix="lucid-ingest")
        self._pending: Future[None] | None = None
        self._error: BaseException | None = None

    def fill(self, stream: Readable, max_total: int) -> None:
        """Read the body straight into the chunk buffers (`readinto`: no copy in Python).

        A full chunk is handed off only once more bytes follow: those are read into the
        other buffer first, since a chunk that fills exactly at the end stays the tail.
        """
        while True:
            if self.filled == self.size:
                spare = self._spare()
                n = self._read(stream, memoryview(spare)[: self.size], max_total)
                if not n:
                    return
                self._hand_off(spare, n)
                continue
            at = self.filled - self.base
            n = self._read(stream, memoryview(self.buf)[at : self.size - self.base], max_total)
            if not n:
                return
            self.filled += n

    def _read(self, stream: Readable, into: memoryview, max_total: int) -> int:
        """Read at most `into`'s length; one byte past `max_total` is enough to refuse."""
        n = stream.readinto(into[: max(1, min(len(into), max_total - self.position + 1))]) or 0
        if self.position + n > max_total:
            raise TooLarge(f"recording exceeds {max_total} bytes")
        self.position += n
        return n

    def _wait(self) -> None:
        if self._pending is not None:
            self._pending.result()
            self._pending = None
        if self._error is not None:
            raise self._error

    def _load_parts(self) -> None:
        """Put the chunk's committed parts in front of this request's bytes (once)."""
        if not self.base:
            return
        mine = bytes(memoryview(self.buf)[: self.filled - self.base])  # one copy, not two
        at = 0
        for part in self.parts:
            try:
                with self.rt.blobs.view(part["key"]) as data:
                    if len(data) != int(part["length"]):
                        raise IntegrityError(
                            f"part {part['key']} is {len(data)} bytes, expected {part['length']}",
                            session_id=self.session_id,
                            chunk_index=self.index,
                        )
                    self.buf[at : at + len(data)] = data
                    at += len(data)
            except FileNotFoundError:  # the chunk was committed and its parts deleted
                raise _lost(self.rt, self.session_id, self.start) from None
        if at != self.base:
            raise IntegrityError(
                f"tail parts hold {at} bytes, expected {self.base}",
                session_id=self.session_id,
                chunk_index=self.index,
            )
        self.buf[at : at + len(mine)] = mine
        self.base = 0

    def _spare(self) -> bytearray:
        """The buffer not being filled, once its commit is done (it is about to be reused)."""
        self._wait()
        if len(self.buffers) == 1:
            self.buffers.append(POOL.take(self.size))
        return self.buffers[1] if self.buf is self.buffers[0] else self.buffers[0]

    def _hand_off(self, spare: bytearray, ahead: int) -> None:
        """Commit the full buffer in the background; go on in `spare`, which holds the
        next chunk's first `ahead` bytes already."""
        self._load_parts()
        parts, self.parts = self.parts, []
        self._pending = self._committer.submit(self._commit_full, self.buf, self.index, parts)
        self.buf = spare
        self.index, self.filled, self.new_from, self.base = self.index + 1, ahead, 0, 0

    def _swap(self, tail: dict[str, Any], cache: dict[str, Any]) -> bool:
        doc = self.rt.meta.swap_tail(self.session_id, self.seq, tail, cache)
        if doc is None:
            return False
        self.seq, self.doc = int(tail["seq"]), doc
        for key in self.garbage:
            self.rt.blobs.delete(key)
        self.garbage = []
        return True

    def _commit_full(self, buf: bytearray, index: int, parts: list[dict[str, Any]]) -> None:
        try:
            key = layout.raw_key(self.session_id, index, self.token)
            # The buffer itself: it is not refilled before this commit is done (_spare).
            self.rt.blobs.put(key, memoryview(buf))
            seq = (self.seq or 0) + 1
            tail = {"chunk": index, "length": self.size, "parts": [], "raw": key, "seq": seq}
            cache = {"bytes_received": (index + 1) * self.size, "chunks_emitted": index + 1}
            if not self._swap(tail, cache):
                self.rt.blobs.delete(key)
                raise _lost(self.rt, self.session_id, self.start)
            self.committed = (index + 1) * self.size
            for part in parts:  # now inside the raw blob
                self.rt.blobs.delete(part["key"])
            try:
                self.rt.meta.insert_chunk(
                    self.session_id,
                    index,
                    {"final": False, "plaintext_len": self.size, "raw_key": key},
                )
            except Conflict:
                return  # a concurrent stop or append recorded it and handed it on
            self.on_chunk(self.session_id, index, False)
        except BaseException as exc:
            self._error = exc

    def _commit_part(self) -> None:
        offset = self.index * self.size + self.new_from
        key = layout.part_key(self.session_id, self.index, offset, self.token)
        start = self.new_from - self.base
        self.rt.blobs.put(key, memoryview(self.buf)[start : self.filled - self.base])
        part = {"key": key, "length": self.filled - self.new_from}
        seq = (self.seq or 0) + 1
        tail = {
            "chunk": self.index,
            "length": self.filled,
            "parts": [*self.parts, part],
            "raw": None,
            "seq": seq,
        }
        length = self.index * self.size + self.filled
        if not self._swap(tail, {"bytes_received": length}):
            self.rt.blobs.delete(key)
            raise _lost(self.rt, self.session_id, self.start)
        self.committed = length

    def close(self, *, keep_tail: bool) -> None:
        """Wait for the full chunks in flight, then commit the leftover as a part; the
        buffers go back to the pool only once nothing writes from them."""
        try:
            try:
                self._wait()
            finally:
                self._committer.shutdown()
            if keep_tail and self.filled > self.new_from:
                self._commit_part()
        finally:  # the committer is shut down (waited for): nothing writes from them
            for buf in self.buffers:
                POOL.give(buf)
            self.buffers = []


def finish_stop(rt: Runtime, session_id: str, on_chunk: OnChunk | None = None) -> dict[str, Any]:
    """Cut the final chunk of a STOPPING session and fix its chunk count (idempotent).

    Safe to call again after a crash at any point, and from several processes at once:
    the final chunk's record insert is the commit point; the chunk count follows from it.
    """
    hand_on = on_chunk or _ignore
    for _ in range(_STOP_ATTEMPTS):
        doc = rt.meta.get_session(session_id)
        if doc["state"] != SessionState.STOPPING:
            raise Conflict(
                f"cannot finish stop: session {session_id} is {doc['state']}, "
                f"expected {SessionState.STOPPING}"
            )
        if doc.get("chunk_count") is not None:
            return doc
        state = settle(rt, doc, hand_on)
        if not state.final_cut:
            try:
                data = b"".join(rt.blobs.get(p["key"]) for p in state.parts)
            except FileNotFoundError:
                continue  # another stop cut the final chunk and deleted the parts
            if len(data) != state.tail_length:
                raise IntegrityError(
                    f"tail parts hold {len(data)} bytes, expected {state.tail_length}",
                    session_id=session_id,
                    chunk_index=state.chunks,
                )
            key = layout.raw_key(session_id, state.chunks, layout.new_token())
            rt.blobs.put(key, data)
            try:
                rt.meta.insert_chunk(
                    session_id,
                    state.chunks,
                    {"final": True, "plaintext_len": len(data), "raw_key": key},
                )
            except Conflict:
                rt.blobs.delete(key)
                continue  # another stop (or a late append's chunk) got there: derive again
            hand_on(session_id, state.chunks, True)
            state = derive(doc, last_record(rt, doc))
        count = _final_count(state)
        tail = doc.get("tail") or {}
        doc = rt.meta.update_session(
            session_id,
            {
                "chunk_count": count,
                "chunks_emitted": count,
                "bytes_received": state.committed,
                "tail": None,
            },
            expect_state=SessionState.STOPPING,
        )
        for part in tail.get("parts") or []:  # inside the final chunk now, or garbage
            rt.blobs.delete(part["key"])
        return doc
    raise Conflict(f"stop of session {session_id} kept changing concurrently; retry")
