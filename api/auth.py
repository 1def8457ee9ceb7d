"""Who is calling: the one place views learn the caller and check scope and tenant.

INTERFACE (stable; views use only these):

* `require(scope)` — decorator for a view: the caller must hold `scope`
  (`record`, `read`, `download` or `admin`); no/expired/forged token → 401, missing
  scope → 403.
* `principal()` — the caller of the current request (a `lucid.crypto.tokens.Principal`).
* `owned_session(session_id)` — the session document if it belongs to the caller's
  tenant; another tenant's session is a 404, never a 403 (its existence is not told).

STATUS: scaffold. The checks are not enforced yet: every caller is an admin of the
"default" tenant. The access-control work replaces the bodies below with bearer-token
verification (lucid.crypto.tokens), keeping these signatures.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from functools import wraps
from typing import Any, TypeVar

from api import runtime
from lucid.crypto.tokens import Principal
from lucid.storage.layout import check_session_id

__all__ = ["SCOPES", "owned_session", "principal", "require"]

SCOPES = ("record", "read", "download", "admin")
F = TypeVar("F", bound=Callable[..., Any])


def principal() -> Principal:
    """The caller of the current request."""
    return Principal(
        subject="anonymous",
        tenant="default",
        scopes=frozenset(SCOPES),
        token_id="scaffold",  # noqa: S106 - an id, not a secret
        expires_at=datetime.max.replace(tzinfo=UTC),
    )


def require(scope: str) -> Callable[[F], F]:
    """The view needs `scope`."""
    if scope not in SCOPES:
        raise ValueError(f"unknown scope {scope!r}; allowed: {', '.join(SCOPES)}")

    def decorate(view: F) -> F:
        @wraps(view)
        def checked(*args: Any, **kwargs: Any) -> Any:
            principal().require(scope)
            return view(*args, **kwargs)

        return checked  # type: ignore[return-value]

    return decorate


def owned_session(session_id: str) -> dict[str, Any]:
    """The caller's session `session_id` (NotFound for another tenant's)."""
    session = runtime().meta.get_session(check_session_id(session_id))
    principal().check_owns(session)
    return session
