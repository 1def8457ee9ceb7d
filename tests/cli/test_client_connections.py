"""The CLI client and a server that closes a kept-alive connection as a request goes out
(gunicorn does so after its keep-alive timeout): a GET is sent again on a new connection,
a POST is not. A real HTTP/1.1 server on a socket, closing the way gunicorn does."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import httpx
import pytest

from cli.client import Client

_OK = (
    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 39\r\n"
    b"Connection: keep-alive\r\n\r\n"
    b'{"session_id": "s", "state": "STOPPED"}'
)


class _ClosingServer:
    """Answers one request per connection with keep-alive, then closes that connection
    when the next request arrives on it, without answering."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.requests: list[bytes] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                self.requests.append(conn.recv(65536).split(b"\r\n", 1)[0])
                conn.sendall(_OK)
                conn.recv(65536)  # the next request on the kept-alive connection: dropped

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def server() -> Iterator[_ClosingServer]:
    running = _ClosingServer()
    yield running
    running.close()


def test_a_get_on_a_connection_the_server_just_closed_is_sent_again(
    server: _ClosingServer,
) -> None:
    client = Client(f"http://127.0.0.1:{server.port}", timeout=10)
    assert client.status("s")["state"] == "STOPPED"
    assert client.status("s")["state"] == "STOPPED"  # its connection is closed under it
    assert server.requests == [b"GET /api/v1/sessions/s HTTP/1.1"] * 2


def test_a_post_on_a_closed_connection_is_not_sent_again(server: _ClosingServer) -> None:
    client = Client(f"http://127.0.0.1:{server.port}", timeout=10)
    client.status("s")
    with pytest.raises(httpx.RemoteProtocolError):
        client.http.post("/api/v1/sessions/s/stop")
    assert len(server.requests) == 1
