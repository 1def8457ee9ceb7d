"""A small HTTP client for the session API, used by the CLI and the benchmark."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx

__all__ = ["ApiError", "Client", "UploadFailed", "default_api_url"]

_UPLOAD_BLOCK = 1 << 20
OFFSET_HEADER = "Upload-Offset"
# Worth another attempt: the server restarting, overloaded or briefly unreachable.
_RETRY_STATUSES = frozenset({500, 502, 503, 504})


def default_api_url() -> str:
    return os.environ.get("LUCID_API_URL", "http://127.0.0.1:8087")


class ApiError(Exception):
    """The API answered with an error status; carries the JSON body."""

    def __init__(self, status: int, body: dict[str, Any]) -> None:
        super().__init__(f"HTTP {status}: {body.get('message') or body}")
        self.status = status
        self.body = body


class UploadFailed(ApiError):
    """The upload could not be completed within its retry budget; resume it later."""

    def __init__(self, session_id: str, offset: int, cause: str) -> None:
        super().__init__(
            503,
            {
                "message": f"upload of session {session_id} stopped at byte {offset}: {cause}; "
                f"continue it with `lucid submit FILE --resume {session_id}`",
                "session_id": session_id,
                "offset": offset,
            },
        )
        self.session_id = session_id
        self.offset = offset


class _ResendOnStaleConnection(httpx.HTTPTransport):
    """Send a GET or HEAD once more when the server closed the kept-alive connection just
    as the request went out ("Server disconnected without sending a response").

    The API server closes idle keep-alive connections after a few seconds; a request that
    reuses one at that moment never reached the application. Only requests without side
    effects are sent again: anything else is left to its caller (uploads resume from the
    committed offset)."""

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        try:
            return super().handle_request(request)
        except httpx.RemoteProtocolError:
            if request.method not in ("GET", "HEAD"):
                raise
            return super().handle_request(request)


class Client:
    def __init__(
        self,
        base_url: str | None = None,
        timeout: float = 600.0,
        *,
        attempts: int = 8,
        backoff: float = 0.5,
        token: str | None = None,
    ) -> None:
        # The bearer token goes on every request (`cli.auth.default_token` picks it).
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.http = httpx.Client(
            base_url=base_url or default_api_url(),
            timeout=timeout,
            headers=headers,
            transport=_ResendOnStaleConnection(),
        )
        self.attempts = attempts  # per upload: how many failed requests it survives
        self.backoff = backoff  # seconds before the first retry; doubles, at most 15 s

    def _json(self, response: httpx.Response) -> Any:
        try:
            body = response.json()
        except ValueError:
            body = {"message": response.text[:500]}
        if response.status_code >= 400:
            raise ApiError(response.status_code, body)
        return body

    def create(self, metadata: dict[str, Any] | None = None) -> dict[str, Any]:
        return dict(
            self._json(self.http.post("/api/v1/sessions", json={"metadata": metadata or {}}))
        )

    def start(self, session_id: str) -> dict[str, Any]:
        return dict(self._json(self.http.post(f"/api/v1/sessions/{session_id}/start")))

    def offset(self, session_id: str) -> int:
        """The session's committed length (HEAD): where a resumed upload must start."""
        response = self.http.head(f"/api/v1/sessions/{session_id}")
        if response.status_code >= 400:
            raise ApiError(response.status_code, {"message": f"HEAD {response.request.url}"})
        return int(response.headers[OFFSET_HEADER])

    def append(
        self,
        session_id: str,
        path: Path,
        offset: int,
        progress: Callable[[int], object] | None = None,
    ) -> int:
        """POST the file's bytes from `offset` to its end, stating the offset; returns the
        committed length the server answers (ApiError on an error status)."""
        size = path.stat().st_size

        def blocks() -> Iterator[bytes]:
            with open(path, "rb") as f:
                f.seek(offset)
                while block := f.read(_UPLOAD_BLOCK):
                    if progress:
                        progress(len(block))
                    yield block

        headers = {
            "Content-Length": str(size - offset),
            "Content-Type": "application/octet-stream",
            OFFSET_HEADER: str(offset),
        }
        response = self.http.post(
            f"/api/v1/sessions/{session_id}/data", content=blocks(), headers=headers
        )
        self._json(response)
        return int(response.headers[OFFSET_HEADER])

    def upload(
        self, session_id: str, path: Path, progress: Callable[[int], object] | None = None
    ) -> dict[str, Any]:
        """Upload the recording and stop the session: resumable and exactly once.

        Starts the session if it is new (a session an earlier process began is continued
        from its committed offset). After a dropped connection, a timeout or a 5xx it asks
        the server for the committed offset and continues from there, up to `attempts`
        failures with exponential backoff; then UploadFailed. `progress(n)` gets the bytes
        sent, and a negative correction when a resume starts before where sending got to.
        """
        size = path.stat().st_size
        sent = 0  # what `progress` has been told

        def at(offset: int) -> int:
            nonlocal sent
            if progress and offset != sent:
                progress(offset - sent)
            sent = offset
            return offset

        def counted(n: int) -> None:
            nonlocal sent
            sent += n
            if progress:
                progress(n)

        failures = 0
        offset: int | None = None
        while True:
            try:
                if offset is None:
                    offset = at(self._ready_offset(session_id))
                if offset > size:
                    raise ApiError(
                        409,
                        {"message": f"session {session_id} holds {offset} bytes, "
                         f"more than {path} ({size} bytes): not this file's upload"},
                    )  # fmt: skip
                if offset < size:
                    offset = at(self.append(session_id, path, offset, counted))
                return self._stop(session_id)
            except ApiError as exc:
                if exc.status == 409 and isinstance(exc.body.get("offset"), int):
                    offset = at(int(exc.body["offset"]))  # realign; nothing was appended
                    cause = str(exc)
                elif exc.status in _RETRY_STATUSES:
                    offset, cause = None, str(exc)
                else:
                    raise
            except httpx.TransportError as exc:  # dropped connection, refused, timed out
                offset, cause = None, f"{type(exc).__name__}: {exc}"
            failures += 1
            if failures >= self.attempts:
                raise UploadFailed(session_id, sent, cause)
            time.sleep(min(self.backoff * 2 ** (failures - 1), 15.0))

    def _ready_offset(self, session_id: str) -> int:
        """Start a new session; the committed offset of one already receiving data."""
        state = self.status(session_id)["state"]
        if state == "CREATED":
            self.start(session_id)
        elif state == "PAUSED":
            self._json(self.http.post(f"/api/v1/sessions/{session_id}/resume"))
        return self.offset(session_id)

    def _stop(self, session_id: str) -> dict[str, Any]:
        return dict(self._json(self.http.post(f"/api/v1/sessions/{session_id}/stop")))

    def status(self, session_id: str) -> dict[str, Any]:
        return dict(self._json(self.http.get(f"/api/v1/sessions/{session_id}")))

    def verify(self, session_id: str) -> tuple[int, dict[str, Any]]:
        response = self.http.get(f"/api/v1/sessions/{session_id}/verify")
        if response.status_code not in (200, 409):
            self._json(response)
        return response.status_code, dict(response.json())

    def proof(self, session_id: str, index: int) -> dict[str, Any]:
        return dict(
            self._json(self.http.get(f"/api/v1/sessions/{session_id}/chunks/{index}/proof"))
        )

    def checkpoint(self) -> dict[str, Any]:
        """The ledger's latest signed checkpoint."""
        return dict(self._json(self.http.get("/api/v1/ledger/checkpoint")))

    def consistency(self, from_size: int, start: int | None = None) -> dict[str, Any]:
        """The latest checkpoint and the ledger entries (from `start`) proving that it
        extends a checkpoint of `from_size`."""
        params = {"from": str(from_size)}
        if start is not None:
            params["start"] = str(start)
        response = self.http.get("/api/v1/ledger/consistency", params=params)
        return dict(self._json(response))

    def wait(
        self,
        session_id: str,
        timeout: float = 3600.0,
        on_status: Callable[[dict[str, Any]], None] | None = None,
        interval: float = 0.2,
    ) -> dict[str, Any]:
        """Poll until the session is anchored (confirmed) or in ERROR."""
        deadline = time.monotonic() + timeout
        while True:
            status = self.status(session_id)
            if on_status:
                on_status(status)
            anchor = status.get("anchor") or {}
            if status["state"] == "ERROR" or anchor.get("status") == "confirmed":
                return status
            if time.monotonic() > deadline:
                raise TimeoutError(f"session {session_id} not anchored after {timeout}s")
            time.sleep(interval)

    def download(
        self, session_id: str, out: Path, progress: Callable[[int], object] | None = None
    ) -> int:
        """Stream the verified recording to `out` (via a temp file; renamed only when whole)."""
        tmp = out.with_name(out.name + ".part")
        with self.http.stream("GET", f"/api/v1/sessions/{session_id}/download") as response:
            if response.status_code >= 400:
                response.read()
                self._json(response)
            expected = int(response.headers.get("Content-Length", -1))
            written = 0
            try:
                with open(tmp, "wb") as f:
                    for block in response.iter_bytes(_UPLOAD_BLOCK):
                        f.write(block)
                        written += len(block)
                        if progress:
                            progress(len(block))
            except httpx.HTTPError as exc:
                tmp.unlink(missing_ok=True)
                raise ApiError(
                    502, {"message": f"download aborted after {written} bytes: {exc}"}
                ) from exc
        if expected >= 0 and written != expected:
            tmp.unlink(missing_ok=True)
            raise ApiError(502, {"message": f"download ended after {written} of {expected} bytes"})
        tmp.replace(out)
        return written

    def bundle(self, session_id: str) -> dict[str, Any]:
        """What an offline restore needs: leaves, key envelope, signed ledger entry."""
        return dict(self._json(self.http.get(f"/api/v1/sessions/{session_id}/bundle")))

    def chunk_ciphertext(self, session_id: str, index: int) -> bytes:
        """A chunk's stored ciphertext, unchecked (lucid.integrity.offline checks it)."""
        response = self.http.get(f"/api/v1/sessions/{session_id}/bundle/chunks/{index}")
        if response.status_code >= 400:
            self._json(response)
        return response.content

    # The lifecycle: listing, control, edits, deletion, pipeline and statistics.

    def list_sessions(self, **params: Any) -> dict[str, Any]:
        """One page of sessions; `params` are the list's query parameters (None: left out)."""
        query = {k: v for k, v in params.items() if v is not None}
        return dict(self._json(self.http.get("/api/v1/sessions", params=query)))

    def control(self, session_id: str, action: str) -> dict[str, Any]:
        """POST .../start|pause|resume|stop."""
        return dict(self._json(self.http.post(f"/api/v1/sessions/{session_id}/{action}")))

    def update(self, session_id: str, fields: dict[str, Any]) -> dict[str, Any]:
        """PUT the session's editable fields (metadata, legal_hold)."""
        return dict(self._json(self.http.put(f"/api/v1/sessions/{session_id}", json=fields)))

    def delete(self, session_id: str) -> dict[str, Any]:
        """Crypto-shred the session; returns its tombstone."""
        return dict(self._json(self.http.delete(f"/api/v1/sessions/{session_id}")))

    def pipeline(self, session_id: str, action: str | None = None) -> dict[str, Any]:
        """The session's pipeline status, after `action` (pause or resume) when given."""
        path = f"/api/v1/sessions/{session_id}/pipeline"
        if action is None:
            return dict(self._json(self.http.get(path)))
        return dict(self._json(self.http.post(f"{path}/{action}")))

    def statistics(self, session_id: str | None = None) -> dict[str, Any]:
        """A session's statistics, or the deployment's when no id is given."""
        path = "/api/v1/statistics" if session_id is None else (
            f"/api/v1/sessions/{session_id}/statistics"
        )  # fmt: skip
        return dict(self._json(self.http.get(path)))

    def chunk(self, session_id: str, index: int) -> dict[str, Any]:
        """One chunk's record."""
        return dict(self._json(self.http.get(f"/api/v1/sessions/{session_id}/chunks/{index}")))
