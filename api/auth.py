"""Who is calling: the one place views learn the caller and check scope and tenant.

INTERFACE (stable; views use only these):

* `require(scope)` — decorator for a view: the caller must hold `scope`
  (`record`, `read`, `download` or `admin`); no/expired/forged token → 401, missing
  scope → 403. Put it right under the route decorator, above `@bp.input`, so a caller
  without a valid token learns nothing about what the body should have been.
* `public` — decorator for the few views that need no token (health, metrics).
* `principal()` — the caller of the current request (a `lucid.crypto.tokens.Principal`).
* `owned_session(session_id)` — the session document if it belongs to the caller's
  tenant; another tenant's session is a 404, never a 403 (its existence is not told).

Tokens are EdDSA JWTs (`lucid.crypto.tokens`) checked against the deployment's token
*public* key, loaded once per app: the API can check tokens but never mint one.
`check_declared(app)` runs at the end of `create_app` and refuses an app with a route that
declares neither a scope nor `public`, so a new endpoint cannot ship unguarded.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from flask import Flask, current_app, g, request

from api import runtime
from lucid.crypto.keys import load_token_verify_key
from lucid.crypto.tokens import SCOPES, Principal
from lucid.errors import ConfigError
from lucid.storage.layout import check_session_id

__all__ = [
    "PUBLIC_ENDPOINTS",
    "SCOPES",
    "check_declared",
    "owned_session",
    "principal",
    "public",
    "require",
    "scope_of",
]

F = TypeVar("F", bound=Callable[..., Any])
# The view attribute `require` and `public` set; None marks a public view.
_SCOPE_ATTR = "_lucid_scope"
_PUBLIC = "public"
# Endpoints apiflask and Flask add themselves: the OpenAPI document, its docs page, static.
PUBLIC_ENDPOINTS = frozenset(
    {"static", "openapi.spec", "openapi.docs", "openapi.swagger_ui_oauth_redirect"}
)
_KEY = "lucid.token_verify_key"


def _verify_key() -> Ed25519PublicKey:
    """The token public key, read from the key dir once per app."""
    app = current_app
    key: Ed25519PublicKey | None = app.extensions.get(_KEY)
    if key is None:
        key = app.extensions[_KEY] = load_token_verify_key(runtime().settings.keys_path)
    return key


def principal() -> Principal:
    """The caller of the current request (Unauthorized without a valid bearer token)."""
    found: Principal | None = g.get("lucid_principal")
    if found is None:
        found = Principal.from_bearer(request.headers.get("Authorization"), _verify_key())
        g.lucid_principal = found
    return found


def require(scope: str) -> Callable[[F], F]:
    """The view needs a valid token carrying `scope`."""
    if scope not in SCOPES:
        raise ValueError(f"unknown scope {scope!r}; allowed: {', '.join(SCOPES)}")

    def decorate(view: F) -> F:
        @wraps(view)
        def checked(*args: Any, **kwargs: Any) -> Any:
            principal().require(scope)
            return view(*args, **kwargs)

        setattr(checked, _SCOPE_ATTR, scope)
        return checked  # type: ignore[return-value]

    return decorate


def public(view: F) -> F:
    """The view needs no token (health and metrics: probes and scrapers carry none)."""
    setattr(view, _SCOPE_ATTR, _PUBLIC)
    return view


def scope_of(view: Callable[..., Any]) -> str | None:
    """The scope a view requires, "public", or None when it declares neither."""
    scope: str | None = getattr(view, _SCOPE_ATTR, None)
    return scope


def check_declared(app: Flask) -> None:
    """ConfigError naming every route whose view declares neither a scope nor `public`."""
    missing = sorted(
        f"{rule.rule} ({rule.endpoint})"
        for rule in app.url_map.iter_rules()
        if rule.endpoint not in PUBLIC_ENDPOINTS
        and scope_of(app.view_functions[rule.endpoint]) is None
    )
    if missing:
        raise ConfigError(
            "expected every route to declare @require(scope) or @public, got none on: "
            + ", ".join(missing)
        )


def owned_session(session_id: str) -> dict[str, Any]:
    """The caller's session `session_id` (NotFound for another tenant's)."""
    session = runtime().meta.get_session(check_session_id(session_id))
    principal().check_owns(session)
    return session
