"""Anchoring a session's Merkle root: one `Anchor` interface, a local and an HTTP backend.

* `LedgerAnchor` appends to the signed ledger (`lucid.integrity.ledger`; in the shared
  database by default, `lucid.integrity.ledger_db`); receipts are confirmed at once.
* `HttpAnchor` talks to the "blockchain core" anchoring service:

      POST {base}/anchor  {"session_id", "root", "tree_size"}  -> {"receipt_id", "status", ...}
      GET  {base}/anchor/{receipt_id}                          -> {"receipt_id", "status", ...}

  5xx answers, connection errors and timeouts are retried with exponential backoff and
  then raise AnchorUnavailable (transient); 4xx and unusable bodies raise AnchorError.
"""

from __future__ import annotations

import http.client
import json
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import asdict, dataclass, field
from typing import Any, Literal, Protocol, cast

from lucid.errors import AnchorError, AnchorUnavailable, ConfigError, InvalidInput, LedgerError
from lucid.integrity.ledger import LedgerEntry, SignedLedger

__all__ = ["Anchor", "HttpAnchor", "LedgerAnchor", "Receipt", "make_anchor"]

_STATUSES = ("pending", "confirmed")


@dataclass(frozen=True)
class Receipt:
    """Proof that a root was handed to an anchor; pending until the anchor confirms it."""

    backend: str
    status: Literal["pending", "confirmed"]
    reference: str
    root: str
    tree_size: int
    details: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("backend", "reference", "root"):
            if not isinstance(getattr(self, name), str) or not getattr(self, name):
                raise InvalidInput(f"receipt {name}: expected a non-empty string")
        if self.status not in _STATUSES:
            raise InvalidInput(f"receipt status: expected one of {_STATUSES}, got {self.status!r}")
        if isinstance(self.tree_size, bool) or not isinstance(self.tree_size, int):
            raise InvalidInput(f"receipt tree_size: expected an integer, got {self.tree_size!r}")
        if not isinstance(self.details, dict):
            raise InvalidInput(f"receipt details: expected an object, got {self.details!r}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Receipt:
        """Build from `to_dict()` output; unknown keys (e.g. a store's `_id`) are ignored."""
        if not isinstance(data, dict):
            raise InvalidInput(f"receipt: expected an object, got {type(data).__name__}")
        try:
            return cls(
                backend=data["backend"],
                status=data["status"],
                reference=data["reference"],
                root=data["root"],
                tree_size=data["tree_size"],
                details=dict(data.get("details") or {}),
            )
        except KeyError as exc:
            raise InvalidInput(f"receipt: missing key {exc}") from None


class Anchor(Protocol):
    """Somewhere a session root is recorded so it can't be silently replaced later."""

    def submit(self, session_id: str, root: bytes, tree_size: int) -> Receipt:
        """Hand the root over; idempotent for the same session and root."""
        ...

    def confirm(self, receipt: Receipt) -> Receipt:
        """Re-check a receipt; the returned one may still be pending."""
        ...


class LedgerAnchor:
    """Anchor in the local signed ledger; receipts are confirmed immediately."""

    backend = "ledger"

    def __init__(self, ledger: SignedLedger) -> None:
        self.ledger = ledger

    def submit(self, session_id: str, root: bytes, tree_size: int) -> Receipt:
        """Append (or find) the session's entry and return a confirmed receipt."""
        return self._receipt(self.ledger.append(session_id, root, tree_size))

    def _receipt(self, entry: LedgerEntry) -> Receipt:
        return Receipt(
            backend=self.backend,
            status="confirmed",
            reference=f"ledger:{entry.seq}",
            root=entry.root,
            tree_size=entry.tree_size,
            details={
                "session_id": entry.session_id,
                "seq": entry.seq,
                "time": entry.time,
                "entry_hash": entry.entry_hash,
                "prev_hash": entry.prev_hash,
                "signature": entry.signature,
            },
        )

    def confirm(self, receipt: Receipt) -> Receipt:
        """Check the ledger still holds the receipt's entry, unchanged and correctly signed."""
        if receipt.backend != self.backend:
            raise AnchorError(f"expected a {self.backend} receipt, got backend {receipt.backend!r}")
        session_id = receipt.details.get("session_id")
        entry = self.ledger.find(session_id) if isinstance(session_id, str) else None
        if entry is None:
            raise LedgerError(
                f"{receipt.reference}: expected a ledger entry for session {session_id}, got none"
            )
        checks = (
            ("reference", receipt.reference, f"ledger:{entry.seq}"),
            ("root", receipt.root, entry.root),
            ("tree_size", receipt.tree_size, entry.tree_size),
            ("entry_hash", receipt.details.get("entry_hash"), entry.entry_hash),
        )
        for name, expected, got in checks:
            if expected != got:
                raise LedgerError(f"{receipt.reference}: expected {name} {expected}, got {got}")
        return self._receipt(entry)


class HttpAnchor:
    """Client of the external anchoring service (urllib only, retries with backoff)."""

    backend = "http"

    def __init__(
        self,
        base_url: str,
        *,
        timeout: float = 10.0,
        retries: int = 3,
        backoff: float = 0.5,
        poll_interval: float = 0.5,
    ) -> None:
        if urllib.parse.urlsplit(base_url).scheme not in ("http", "https"):
            raise ConfigError(f"anchor URL: expected http:// or https://, got {base_url!r}")
        self.base_url = base_url.rstrip("/")
        self.timeout, self.retries = timeout, retries
        self.backoff, self.poll_interval = backoff, poll_interval

    def _request(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        url = self.base_url + path
        data = None if body is None else json.dumps(body).encode()
        last = "no attempt"
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(self.backoff * 2 ** (attempt - 1))
            request = urllib.request.Request(url, data=data, method=method)  # noqa: S310
            request.add_header("Accept", "application/json")
            if data is not None:
                request.add_header("Content-Type", "application/json")
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as response:  # noqa: S310
                    raw = response.read()
                    status = response.status
            except urllib.error.HTTPError as exc:
                text = exc.read().decode("utf-8", "replace")[:500]
                if exc.code < 500:
                    raise AnchorError(
                        f"{method} {url}: expected 2xx, got {exc.code}: {text}"
                    ) from None
                last = f"status {exc.code}: {text}"
                continue
            except (
                urllib.error.URLError,
                TimeoutError,
                ConnectionError,
                http.client.HTTPException,
            ) as exc:
                last = f"{type(exc).__name__}: {getattr(exc, 'reason', exc)}"
                continue
            if status not in (200, 201, 202):
                raise AnchorError(f"{method} {url}: expected 200, 201 or 202, got {status}")
            try:
                return json.loads(raw)
            except ValueError:
                raise AnchorError(
                    f"{method} {url}: expected a JSON body, got {raw[:200]!r}"
                ) from None
        raise AnchorUnavailable(
            f"{method} {url}: no answer after {self.retries + 1} attempts, last: {last}"
        )

    def _receipt(self, answer: Any, root: str, tree_size: int, previous: dict[str, Any]) -> Receipt:
        if not isinstance(answer, dict):
            raise AnchorError(f"anchor service: expected a JSON object, got {answer!r:.200}")
        receipt_id, status = answer.get("receipt_id"), answer.get("status")
        if not isinstance(receipt_id, str) or not receipt_id:
            raise AnchorError(f"anchor service: expected a receipt_id string, got {receipt_id!r}")
        if status not in _STATUSES:
            raise AnchorError(f"anchor service: expected status in {_STATUSES}, got {status!r}")
        if "root" in answer and answer["root"] != root:
            raise AnchorError(f"anchor service: expected root {root}, got {answer['root']!r}")
        return Receipt(
            backend=self.backend,
            status=cast(Literal["pending", "confirmed"], status),
            reference=receipt_id,
            root=root,
            tree_size=tree_size,
            details={**previous, **answer},
        )

    def submit(self, session_id: str, root: bytes, tree_size: int) -> Receipt:
        """POST the root; the service answers with a (usually pending) receipt."""
        body = {"session_id": session_id, "root": root.hex(), "tree_size": tree_size}
        answer = self._request("POST", "/anchor", body)
        return self._receipt(answer, root.hex(), tree_size, {"session_id": session_id})

    def confirm(self, receipt: Receipt) -> Receipt:
        """GET the receipt's current state."""
        if receipt.backend != self.backend:
            raise AnchorError(f"expected a {self.backend} receipt, got backend {receipt.backend!r}")
        path = "/anchor/" + urllib.parse.quote(receipt.reference, safe="")
        answer = self._request("GET", path)
        if isinstance(answer, dict) and answer.get("receipt_id") not in (None, receipt.reference):
            raise AnchorError(
                f"anchor service: expected receipt_id {receipt.reference}, "
                f"got {answer['receipt_id']!r}"
            )
        return self._receipt(answer, receipt.root, receipt.tree_size, receipt.details)

    def wait_confirmed(self, receipt: Receipt, timeout_s: float) -> Receipt:
        """Poll `confirm` until confirmed; raise AnchorUnavailable after `timeout_s`."""
        deadline = time.monotonic() + timeout_s
        while receipt.status != "confirmed":
            if time.monotonic() >= deadline:
                raise AnchorUnavailable(
                    f"receipt {receipt.reference}: expected confirmed within {timeout_s}s, "
                    f"got {receipt.status}"
                )
            time.sleep(self.poll_interval)
            receipt = self.confirm(receipt)
        return receipt


def make_anchor(
    backend: str,
    *,
    ledger: SignedLedger | None = None,
    url: str | None = None,
    timeout: float = 10.0,
    retries: int = 3,
) -> Anchor:
    """The configured anchor: "ledger" (the signed ledger, opened by the caller with a
    signing-key loader) or "http" (anchoring service)."""
    if backend == "ledger":
        if ledger is None:
            raise ConfigError("ANCHOR_BACKEND=ledger needs a ledger")
        return LedgerAnchor(ledger)
    if backend == "http":
        if not url:
            raise ConfigError("ANCHOR_BACKEND=http needs BLOCKCHAIN_ANCHORING_URL")
        return HttpAnchor(url, timeout=timeout, retries=retries)
    raise ConfigError(f"anchor backend: expected 'ledger' or 'http', got {backend!r}")
