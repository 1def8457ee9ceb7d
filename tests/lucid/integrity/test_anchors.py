"""Anchors: the local ledger backend and the HTTP client against a real local server."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import blake3
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from lucid.crypto.keys import init_keys, load_ledger_signing_key, load_ledger_verify_key
from lucid.errors import (
    AnchorError,
    AnchorUnavailable,
    ConfigError,
    InvalidInput,
    LedgerError,
    TransientError,
)
from lucid.integrity.anchors import Anchor, HttpAnchor, LedgerAnchor, Receipt, make_anchor
from lucid.integrity.ledger import Ledger

SESSION = "0123456789abcdef0123456789abcdef"
ROOT = blake3.blake3(b"root").digest()


@dataclass
class FakeChain:
    """Stands in for the external anchoring service: scripted failures, then real answers."""

    script: list[tuple[int, bytes]] = field(default_factory=list)
    polls_until_confirmed: int = 2
    delay: float = 0.0
    requests: list[tuple[str, str, Any]] = field(default_factory=list)
    polls: dict[str, int] = field(default_factory=dict)
    roots: dict[str, str] = field(default_factory=dict)

    def handle(self, method: str, path: str, body: bytes) -> tuple[int, bytes]:
        self.requests.append((method, path, json.loads(body) if body else None))
        time.sleep(self.delay)
        if self.script:
            return self.script.pop(0)
        if method == "POST" and path == "/anchor":
            payload = json.loads(body)
            receipt_id = f"r-{len(self.roots)}"
            self.roots[receipt_id] = payload["root"]
            self.polls[receipt_id] = 0
            return 202, json.dumps({"receipt_id": receipt_id, "status": "pending"}).encode()
        if method == "GET" and path.startswith("/anchor/"):
            receipt_id = path.removeprefix("/anchor/")
            if receipt_id not in self.polls:
                return 404, b'{"error": "unknown receipt"}'
            self.polls[receipt_id] += 1
            done = self.polls[receipt_id] >= self.polls_until_confirmed
            answer: dict[str, Any] = {
                "receipt_id": receipt_id,
                "status": "confirmed" if done else "pending",
                "root": self.roots[receipt_id],
            }
            if done:
                answer.update(tx_id="0xabc", block=1234)
            return 200, json.dumps(answer).encode()
        return 404, b"no route"


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        status, body = self.server.chain.handle(self.command, self.path, self.rfile.read(length))
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client timed out first, which is what the timeout test wants

    do_GET = do_POST = _answer

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    chain: FakeChain


@pytest.fixture
def chain() -> Iterator[tuple[FakeChain, str]]:
    server = _Server(("127.0.0.1", 0), _Handler)
    server.chain = FakeChain()
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    yield server.chain, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def _client(url: str, **options: Any) -> HttpAnchor:
    return HttpAnchor(url, **{"timeout": 2.0, "backoff": 0.01, "poll_interval": 0.01, **options})


@pytest.fixture
def ledger(tmp_path: Path) -> Ledger:
    key = Ed25519PrivateKey.generate()
    return Ledger(tmp_path / "ledger.jsonl", key, key.public_key())


# --- contract: both implementations ------------------------------------------------------


@pytest.fixture(params=["ledger", "http"])
def anchor(request: pytest.FixtureRequest, ledger: Ledger) -> Anchor:
    if request.param == "ledger":
        return LedgerAnchor(ledger)
    _, url = request.getfixturevalue("chain")
    return _client(url)


def test_contract_submit_then_confirm_reaches_confirmed(anchor: Anchor) -> None:
    receipt = anchor.submit(SESSION, ROOT, 12)
    assert (receipt.root, receipt.tree_size) == (ROOT.hex(), 12)
    for _ in range(5):
        if receipt.status == "confirmed":
            break
        receipt = anchor.confirm(receipt)
    assert receipt.status == "confirmed"
    assert Receipt.from_dict(json.loads(json.dumps(receipt.to_dict()))) == receipt


# --- LedgerAnchor -------------------------------------------------------------------------


def test_ledger_anchor_round_trip(ledger: Ledger) -> None:
    anchor = LedgerAnchor(ledger)
    receipt = anchor.submit(SESSION, ROOT, 3)
    assert (receipt.backend, receipt.status, receipt.reference) == (
        "ledger",
        "confirmed",
        "ledger:0",
    )
    entry = ledger.find(SESSION)
    assert entry is not None
    assert receipt.details["entry_hash"] == entry.entry_hash
    assert receipt.details["signature"] == entry.signature
    assert {"prev_hash", "time"} <= receipt.details.keys()
    assert anchor.submit(SESSION, ROOT, 3) == receipt
    assert anchor.confirm(receipt) == receipt


def test_ledger_anchor_confirm_detects_a_rewritten_entry(ledger: Ledger) -> None:
    anchor = LedgerAnchor(ledger)
    receipt = anchor.submit(SESSION, ROOT, 3)
    line = json.loads(ledger.path.read_text())
    line["root"] = "00" * 32
    ledger.path.write_text(json.dumps(line) + "\n")
    with pytest.raises(LedgerError, match="expected entry_hash"):
        anchor.confirm(receipt)


def test_ledger_anchor_confirm_detects_a_receipt_for_another_root(ledger: Ledger) -> None:
    anchor = LedgerAnchor(ledger)
    receipt = anchor.submit(SESSION, ROOT, 3)
    forged = Receipt(**{**receipt.to_dict(), "root": "11" * 32})
    with pytest.raises(LedgerError, match=f"expected root {'11' * 32}, got {ROOT.hex()}"):
        anchor.confirm(forged)


def test_ledger_anchor_confirm_of_a_missing_entry_fails(ledger: Ledger) -> None:
    receipt = LedgerAnchor(ledger).submit(SESSION, ROOT, 3)
    other = Ledger(
        ledger.path.with_name("other.jsonl"), None, Ed25519PrivateKey.generate().public_key()
    )
    with pytest.raises(LedgerError, match="got none"):
        LedgerAnchor(other).confirm(receipt)


# --- HttpAnchor ---------------------------------------------------------------------------


def test_http_pending_then_confirmed(chain: tuple[FakeChain, str]) -> None:
    service, url = chain
    client = _client(url)
    receipt = client.submit(SESSION, ROOT, 9)
    assert (receipt.backend, receipt.status, receipt.reference) == ("http", "pending", "r-0")
    assert service.requests[0] == (
        "POST",
        "/anchor",
        {"session_id": SESSION, "root": ROOT.hex(), "tree_size": 9},
    )
    confirmed = client.wait_confirmed(receipt, timeout_s=5)
    assert confirmed.status == "confirmed"
    assert (confirmed.details["tx_id"], confirmed.details["block"]) == ("0xabc", 1234)
    assert confirmed.details["session_id"] == SESSION
    assert [r[:2] for r in service.requests[1:]] == [("GET", "/anchor/r-0")] * 2


def test_http_retries_a_503_then_succeeds(chain: tuple[FakeChain, str]) -> None:
    service, url = chain
    service.script = [(503, b"busy")]
    receipt = _client(url, retries=2).submit(SESSION, ROOT, 1)
    assert receipt.status == "pending"
    assert len(service.requests) == 2


def test_http_persistent_500_is_unavailable(chain: tuple[FakeChain, str]) -> None:
    service, url = chain
    service.script = [(500, b"down")] * 10
    with pytest.raises(AnchorUnavailable, match="after 3 attempts, last: status 500: down"):
        _client(url, retries=2).submit(SESSION, ROOT, 1)
    assert len(service.requests) == 3


def test_http_400_is_a_permanent_error_naming_the_status(chain: tuple[FakeChain, str]) -> None:
    service, url = chain
    service.script = [(400, b'{"error": "root must be hex"}')]
    with pytest.raises(AnchorError, match=r"got 400: .*root must be hex") as caught:
        _client(url).submit(SESSION, ROOT, 1)
    assert not isinstance(caught.value, TransientError)
    assert len(service.requests) == 1


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"<html>oops", "expected a JSON body"),
        (b"[1, 2]", "expected a JSON object"),
        (b'{"status": "pending"}', "expected a receipt_id string"),
        (b'{"receipt_id": "r", "status": "mined"}', "expected status in"),
        (b'{"receipt_id": "r", "status": "pending", "root": "beef"}', "expected root"),
    ],
)
def test_http_unusable_answers_are_errors(
    chain: tuple[FakeChain, str], body: bytes, message: str
) -> None:
    service, url = chain
    service.script = [(200, body)]
    with pytest.raises(AnchorError, match=message) as caught:
        _client(url).submit(SESSION, ROOT, 1)
    assert not isinstance(caught.value, TransientError)


def test_http_timeout_is_unavailable(chain: tuple[FakeChain, str]) -> None:
    service, url = chain
    service.delay = 0.5
    with pytest.raises(AnchorUnavailable, match="after 2 attempts"):
        _client(url, timeout=0.1, retries=1).submit(SESSION, ROOT, 1)


def test_http_connection_refused_is_unavailable() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(AnchorUnavailable, match="URLError"):
        _client(f"http://127.0.0.1:{port}", retries=1).submit(SESSION, ROOT, 1)


def test_http_wait_confirmed_gives_up_after_timeout(chain: tuple[FakeChain, str]) -> None:
    service, url = chain
    service.polls_until_confirmed = 10**6
    client = _client(url)
    receipt = client.submit(SESSION, ROOT, 1)
    with pytest.raises(AnchorUnavailable, match=r"expected confirmed within 0\.1s, got pending"):
        client.wait_confirmed(receipt, timeout_s=0.1)


def test_http_confirm_of_an_unknown_receipt_is_an_error(chain: tuple[FakeChain, str]) -> None:
    _, url = chain
    receipt = Receipt("http", "pending", "r-404", ROOT.hex(), 1, {})
    with pytest.raises(AnchorError, match="got 404"):
        _client(url).confirm(receipt)


def test_http_refuses_a_receipt_of_another_backend(chain: tuple[FakeChain, str]) -> None:
    _, url = chain
    with pytest.raises(AnchorError, match="got backend 'ledger'"):
        _client(url).confirm(Receipt("ledger", "confirmed", "ledger:0", ROOT.hex(), 1, {}))


def test_http_refuses_non_http_urls() -> None:
    with pytest.raises(ConfigError, match="file:///etc"):
        HttpAnchor("file:///etc")


# --- Receipt and factory ------------------------------------------------------------------


def test_receipt_from_dict_ignores_store_keys_and_validates() -> None:
    receipt = Receipt("http", "pending", "r-1", ROOT.hex(), 4, {"x": 1})
    assert Receipt.from_dict({**receipt.to_dict(), "_id": "mongo"}) == receipt
    with pytest.raises(InvalidInput, match="expected one of"):
        Receipt.from_dict({**receipt.to_dict(), "status": "done"})
    with pytest.raises(InvalidInput, match="missing key 'root'"):
        Receipt.from_dict({k: v for k, v in receipt.to_dict().items() if k != "root"})


def _file_ledger(tmp_path: Path) -> Ledger:
    keys = tmp_path / "keys"
    return Ledger(
        tmp_path / "l.jsonl", lambda: load_ledger_signing_key(keys), load_ledger_verify_key(keys)
    )


def test_make_anchor_builds_each_backend(tmp_path: Path) -> None:
    init_keys(tmp_path / "keys")
    ledger_anchor = make_anchor("ledger", ledger=_file_ledger(tmp_path))
    assert isinstance(ledger_anchor, LedgerAnchor)
    assert ledger_anchor.submit(SESSION, ROOT, 1).status == "confirmed"
    http_anchor = make_anchor("http", url="http://127.0.0.1:1", timeout=3.0, retries=4)
    assert isinstance(http_anchor, HttpAnchor)
    assert (http_anchor.timeout, http_anchor.retries) == (3.0, 4)


@pytest.mark.parametrize(
    ("backend", "url"), [("http", None), ("carrier-pigeon", "http://x"), ("ledger", None)]
)
def test_make_anchor_refuses_bad_configuration(backend: str, url: str | None) -> None:
    with pytest.raises(ConfigError):
        make_anchor(backend, url=url, timeout=1, retries=0)


def test_ledger_anchor_confirms_without_the_signing_key_file(tmp_path: Path) -> None:
    """The verifying side (the API) never needs ledger.key: only appending does."""
    init_keys(tmp_path / "keys")

    def anchor() -> Anchor:
        return make_anchor("ledger", ledger=_file_ledger(tmp_path))

    receipt = anchor().submit(SESSION, ROOT, 1)
    (tmp_path / "keys" / "ledger.key").unlink()
    verifier = anchor()
    assert verifier.confirm(receipt).status == "confirmed"
    with pytest.raises(LedgerError):
        verifier.confirm(Receipt.from_dict({**receipt.to_dict(), "root": "ab" * 32}))
