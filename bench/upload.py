"""The benchmark's uploader: a file's bytes go to the API with sendfile(2), so the
client's own CPU stays small (it is counted apart from the stack's in every report).

Auth lives here only: `auth_headers()` is what every benchmark request carries.
"""

from __future__ import annotations

import http.client
import os
import socket
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

from cli.client import OFFSET_HEADER, Client

__all__ = ["auth_headers", "bench_client", "post_file"]


def auth_headers(token: str | None = None) -> dict[str, str]:
    """`Authorization: Bearer …` from `token`, else LUCID_TOKEN, else the file named by
    LUCID_TOKEN_FILE; no header when none is set (a stack without auth)."""
    token = token or os.environ.get("LUCID_TOKEN")
    token_file = os.environ.get("LUCID_TOKEN_FILE")
    if not token and token_file and Path(token_file).is_file():
        token = Path(token_file).read_text().strip()
    return {"Authorization": f"Bearer {token}"} if token else {}


def stack_token(stack: object) -> str | None:
    """The admin token an embedded stack exposes, if it has one (auth may be off)."""
    token = getattr(stack, "admin_token", None)
    return str(token) if token else None


def bench_client(api_url: str, token: str | None = None) -> Client:
    """The CLI's client with the benchmark's auth headers."""
    client = Client(api_url)
    client.http.headers.update(auth_headers(token))
    return client


def _post_data(
    api_url: str, session_id: str, length: int, offset: int, token: str | None,
    send: Callable[[socket.socket], None],
) -> int:  # fmt: skip
    """POST /data with `send` writing the `length` body bytes on the raw socket; returns
    the committed length the server answers. Raises RuntimeError on an error status."""
    url = urlsplit(api_url)
    head = [
        f"POST /api/v1/sessions/{session_id}/data HTTP/1.1",
        f"Host: {url.netloc}",
        "Content-Type: application/octet-stream",
        f"Content-Length: {length}",
        f"{OFFSET_HEADER}: {offset}",
        "Connection: close",
        *(f"{k}: {v}" for k, v in auth_headers(token).items()),
    ]
    with socket.create_connection((url.hostname or "127.0.0.1", url.port or 80)) as sock:
        sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode())
        send(sock)
        response = http.client.HTTPResponse(sock)
        response.begin()
        body = response.read()
        if response.status >= 400:
            raise RuntimeError(f"POST /data: HTTP {response.status}: {body[:300]!r}")
        return int(response.headers[OFFSET_HEADER])


def post_file(
    api_url: str, session_id: str, path: Path, offset: int = 0, token: str | None = None
) -> int:
    """POST bytes `offset`.. of `path` to the session's /data with sendfile; returns the
    committed length the server answers. Raises RuntimeError on an error status."""
    size = path.stat().st_size - offset

    def send(sock: socket.socket) -> None:
        with open(path, "rb") as f:
            sock.sendfile(f, offset, size)

    return _post_data(api_url, session_id, size, offset, token, send)


def post_repeated(
    api_url: str, session_id: str, source: bytes, total: int, offset: int = 0,
    token: str | None = None,
) -> int:  # fmt: skip
    """POST `total` bytes made of `source` repeated (no file needed for gigabytes) at
    `offset`; returns the committed length the server answers."""
    view = memoryview(source)

    def send(sock: socket.socket) -> None:
        left = total
        while left:
            part = view[: min(left, len(view))]
            sock.sendall(part)
            left -= len(part)

    return _post_data(api_url, session_id, total, offset, token, send)
