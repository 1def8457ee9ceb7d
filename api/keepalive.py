"""Close the connection after refusing a request whose body was left unread.

A server that answers before reading the whole body cannot serve another request on that
connection (the rest of the body is still in the way), so it must say `Connection: close`
(RFC 9112 §9.6). Otherwise the client sends its next request into a connection the server
drops: gunicorn drains at most a few seconds of the old body, then closes without an answer.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from flask import Flask, Response, request

StartResponse = Callable[..., Any]
WSGIApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


# A server drains this much of an unread body itself before the next request (gunicorn:
# 64 KiB within 5 s); past it, or with no declared length, only closing is safe.
DRAINED_BY_SERVER = 64 * 1024


def _body_may_be_left_unread() -> bool:
    length = request.content_length
    chunked = "chunked" in request.headers.get("Transfer-Encoding", "").lower()
    if not chunked and (length is None or length <= DRAINED_BY_SERVER):
        return False
    # werkzeug counts what was read when it limits the stream itself; gunicorn's stream
    # (wsgi.input_terminated) does not say, so a large body counts as maybe unread.
    return not getattr(request.stream, "is_exhausted", False)


def _close_if_unread(response: Response) -> Response:
    if response.status_code >= 400 and _body_may_be_left_unread():
        response.headers["Connection"] = "close"
    return response


class _CloseWhenAsked:
    """gunicorn drops an application's hop-by-hop headers, `Connection` among them, and
    would announce keep-alive: ask its response object (start_response's owner) to close."""

    def __init__(self, app: WSGIApp) -> None:
        self.app = app

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        def start(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            if any(k.lower() == "connection" and v.lower() == "close" for k, v in headers):
                force_close = getattr(
                    getattr(start_response, "__self__", None), "force_close", None
                )
                if callable(force_close):
                    force_close()
            return start_response(status, headers, exc_info)

        return self.app(environ, start)


def register(app: Flask) -> None:
    """Say and do `Connection: close` on error responses that left the body unread."""
    app.after_request(_close_if_unread)
    app.wsgi_app = _CloseWhenAsked(app.wsgi_app)  # type: ignore[method-assign]
