"""The request body as a stream with `readinto`, read straight off the socket under gunicorn.

An upload's bytes are the API's main cost. Through gunicorn's own reader every byte was
copied five or six times (its recv buffers, BytesIO joins and slices, werkzeug's stream)
before ingest copied it into the chunk buffer. Under gunicorn the body of a request with
a Content-Length is read here with `recv_into` straight into the caller's buffer (the
chunk buffer ingest fills): one copy from the kernel, none in Python. Anything else
(chunked transfer encoding, the Flask test client, another server) takes werkzeug's stream,
which has `readinto` too.
"""

from __future__ import annotations

import socket
from typing import Any, Protocol, cast

from flask import request
from werkzeug.exceptions import ClientDisconnected

__all__ = ["Body", "body_stream"]


class Body(Protocol):
    """What ingest reads a body with."""

    def readinto(self, buffer: memoryview, /) -> int | None: ...

    def close(self) -> None: ...


class _SocketBody:
    """`readinto` over what is left of a request body of known length on a gunicorn
    connection: first what gunicorn already read ahead, then the socket itself.

    gunicorn's own reader is told how much was taken, so after the response it neither
    waits for body bytes that will not come nor mistakes the body for the next request.
    """

    def __init__(self, sock: socket.socket, reader: Any) -> None:
        self._sock, self._reader = sock, reader
        self._ahead = memoryview(reader.unreader.take_buffered())

    def readinto(self, buffer: memoryview, /) -> int:
        left: int = self._reader.length
        want = min(len(buffer), left)
        if want <= 0:
            return 0
        if self._ahead:
            n = min(want, len(self._ahead))
            buffer[:n] = self._ahead[:n]
            self._ahead = self._ahead[n:]
        else:
            view = memoryview(buffer)[:want]
            n = int(self._sock.recv_into(view, want))
            if n == 0:
                raise ClientDisconnected()
        self._reader.length = left - n
        return n

    def close(self) -> None:
        """Give read-ahead beyond the body back to gunicorn (a pipelined next request)."""
        if self._ahead:
            self._reader.unreader.unread(bytes(self._ahead))
            self._ahead = memoryview(b"")


def body_stream() -> Body:
    """The current request's body: straight off gunicorn's socket when it can be, else
    werkzeug's stream (which enforces Content-Length the same way)."""
    environ = request.environ
    sock = environ.get("gunicorn.socket")
    body = environ.get("wsgi.input")
    reader = getattr(body, "reader", None)
    if (
        isinstance(sock, socket.socket)
        and type(reader).__name__ == "LengthReader"
        and hasattr(getattr(reader, "unreader", None), "take_buffered")
        and request.content_length == getattr(reader, "length", None)
        and not body.buf.tell()  # type: ignore[union-attr]
    ):
        return _SocketBody(sock, reader)
    return cast(Body, request.stream)
