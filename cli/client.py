"""A small HTTP client for the session API, used by the CLI and the benchmark."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx

__all__ = ["ApiError", "Client", "default_api_url"]

_UPLOAD_BLOCK = 1 << 20


def default_api_url() -> str:
    return os.environ.get("LUCID_API_URL", "http://127.0.0.1:8087")


class ApiError(Exception):
    """The API answered with an error status; carries the JSON body."""

    def __init__(self, status: int, body: dict[str, Any]) -> None:
        super().__init__(f"HTTP {status}: {body.get('message') or body}")
        self.status = status
        self.body = body


class Client:
    def __init__(self, base_url: str | None = None, timeout: float = 600.0) -> None:
        self.http = httpx.Client(base_url=base_url or default_api_url(), timeout=timeout)

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

    def upload(
        self, session_id: str, path: Path, progress: Callable[[int], object] | None = None
    ) -> dict[str, Any]:
        """PUT the recording, streamed from disk in 1 MiB blocks."""

        def blocks() -> Iterator[bytes]:
            with open(path, "rb") as f:
                while block := f.read(_UPLOAD_BLOCK):
                    if progress:
                        progress(len(block))
                    yield block

        headers = {
            "Content-Length": str(path.stat().st_size),
            "Content-Type": "application/octet-stream",
        }
        response = self.http.put(
            f"/api/v1/sessions/{session_id}/recording", content=blocks(), headers=headers
        )
        return dict(self._json(response))

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
