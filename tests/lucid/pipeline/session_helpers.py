"""Helpers the session ingest tests share: an active session, appends at the committed
offset, and reading back what was stored."""

from __future__ import annotations

import io
from typing import Any

from lucid.integrity.restore import restore
from lucid.pipeline import sessions, stages
from lucid.runtime import Runtime
from tests.lucid.conftest import push_chunks

Cuts = list[tuple[int, bool]]


def active_session(rt: Runtime) -> str:
    sid: str = sessions.create_session(rt, {"user": "u1"})["session_id"]
    sessions.start(rt, sid)
    return sid


def append_data(
    rt: Runtime, sid: str, data: bytes, cuts: Cuts, offset: int | None = None, **kw: Any
) -> dict[str, Any]:
    """Append at `offset`, by default where the client knows it is (the committed length)."""
    at = sessions.committed_length(rt, sid) if offset is None else offset
    return sessions.append(
        rt, sid, io.BytesIO(data), lambda s, i, f: cuts.append((i, f)), offset=at, **kw
    )


def raw_chunks(rt: Runtime, sid: str) -> list[bytes]:
    """The raw chunks, read through the keys their records name, in index order."""
    chunks = rt.meta.list_chunks(sid)
    assert [c["index"] for c in chunks] == list(range(len(chunks)))
    return [rt.blobs.get(c["raw_key"]) for c in chunks]


def seal_and_restore(rt: Runtime, sid: str) -> bytes:
    """Stop (if not yet), push every chunk through the stages, seal, anchor and restore."""
    if rt.meta.get_session(sid)["chunk_count"] is None:
        sessions.stop(rt, sid)
    stages.seal_session(rt, sid, push_chunks(rt, sid))
    stages.anchor_session(rt, sid)
    return b"".join(restore(rt, sid))


def blob_keys(rt: Runtime, sid: str) -> list[str]:
    return list(rt.blobs.keys(f"sessions/{sid}/"))


class Interleaved(io.BytesIO):
    """A request body that lets another request run before its first bytes arrive."""

    def __init__(self, data: bytes, meanwhile: Any) -> None:
        super().__init__(data)
        self.meanwhile = meanwhile

    def _first(self) -> None:
        if self.meanwhile is not None:
            run, self.meanwhile = self.meanwhile, None
            run()

    def read(self, size: int | None = -1) -> bytes:
        self._first()
        return super().read(size)

    def readinto(self, buffer: Any) -> int:
        self._first()
        return super().readinto(buffer)
