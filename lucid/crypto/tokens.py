"""API bearer tokens: who may do what, for which tenant (JWT, RFC 7519, signed with EdDSA).

Keys. The deployment's token key pair lives in the key dir (`token.key` 0600 /
`token.pub`, Ed25519, made by `lucid.crypto.keys.ensure_keys`). Only the issuer — the operator
running `lucid token create`, or `lucid up` writing the embedded admin token — holds the
private half. The API holds `token.pub` only, so a compromised API host can check tokens
but never mint one. It is a separate pair from the ledger key, which the anchor worker
holds for a different purpose.

Format. A compact JWS (RFC 7515) with header `{"alg": "EdDSA", "typ": "JWT"}` and claims

    iss, aud   "lucid" (fixed: a token for another service is refused)
    sub        who acts (recorded in the session history for every change it makes)
    tenant     whose sessions it may touch; another tenant's session answers 404
    scope      space-separated scopes (RFC 8693 §4.2): record, read, download, admin
    iat, exp   issue and expiry time, seconds since the epoch (UTC)
    jti        a random id, so one issued token can be named (and later revoked)

Verification fails closed: `verify_token` returns a Principal or raises Unauthorized
saying what was wrong (expired, signature, audience, missing claim, unknown scope).
Only EdDSA is accepted, so neither `alg: none` nor an HMAC keyed with the public key gets in.
"""

from __future__ import annotations

import os
import re
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from lucid.errors import Forbidden, InvalidInput, KeyMaterialError, NotFound, Unauthorized

__all__ = [
    "AUDIENCE",
    "DEFAULT_TENANT",
    "ISSUER",
    "SCOPES",
    "Principal",
    "ensure_token_file",
    "issue_token",
    "parse_scopes",
    "parse_ttl",
    "read_token_file",
    "tenant_of",
    "verify_token",
    "write_token_file",
]

ISSUER = AUDIENCE = "lucid"
ALGORITHM = "EdDSA"
SCOPES: tuple[str, ...] = ("record", "read", "download", "admin")
# Sessions created before tenants existed belong to this one.
DEFAULT_TENANT = "default"
_REQUIRED = ("iss", "aud", "sub", "tenant", "scope", "iat", "exp", "jti")
_TENANT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_TTL = re.compile(r"^\s*(\d+)\s*([smhd])\s*$")
_TTL_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
MAX_TTL = timedelta(days=3650)
# Clocks of the issuer and the API may differ a little; a token "issued" later is refused.
CLOCK_SKEW = timedelta(seconds=60)


def check_tenant(tenant: str) -> str:
    """Return `tenant` if it is 1-64 letters, digits, `_.-` (not first); else InvalidInput."""
    if not isinstance(tenant, str) or not _TENANT.match(tenant):
        raise InvalidInput(
            f"tenant: expected 1-64 characters of A-Z a-z 0-9 _ . - (starting with a letter "
            f"or digit), got {tenant!r}"
        )
    return tenant


def parse_scopes(value: str | Iterable[str]) -> frozenset[str]:
    """Scopes from "record,read", "record read" or a list; InvalidInput names unknown ones."""
    items = re.split(r"[\s,]+", value) if isinstance(value, str) else list(value)
    scopes = frozenset(s for s in items if s)
    unknown = sorted(scopes - set(SCOPES))
    if unknown or not scopes:
        raise InvalidInput(
            f"scope: expected one or more of {', '.join(SCOPES)}, got "
            f"{', '.join(unknown) if unknown else 'none'}"
        )
    return scopes


def parse_ttl(value: str) -> timedelta:
    """A lifetime such as "90s", "15m", "24h" or "30d" (at most 3650 days)."""
    match = _TTL.match(value)
    if match is None:
        raise InvalidInput(f"ttl: expected a number and a unit s, m, h or d (24h), got {value!r}")
    ttl = timedelta(seconds=int(match[1]) * _TTL_UNITS[match[2]])
    if not timedelta(0) < ttl <= MAX_TTL:
        raise InvalidInput(f"ttl: expected more than 0 and at most 3650d, got {value!r}")
    return ttl


def tenant_of(session: Mapping[str, Any]) -> str:
    """The tenant a session document belongs to (DEFAULT_TENANT when it predates tenants)."""
    return str(session.get("tenant") or DEFAULT_TENANT)


@dataclass(frozen=True)
class Principal:
    """The verified caller: who (subject), for whom (tenant), allowed to do what (scopes)."""

    subject: str
    tenant: str
    scopes: frozenset[str]
    token_id: str
    expires_at: datetime

    def __post_init__(self) -> None:
        if not self.subject:
            raise InvalidInput("subject: expected a non-empty string, got ''")
        check_tenant(self.tenant)
        parse_scopes(self.scopes)

    @classmethod
    def from_bearer(
        cls, header: str | None, public_key: Ed25519PublicKey, now: datetime | None = None
    ) -> Principal:
        """The principal of an `Authorization: Bearer <token>` header value."""
        if not header or not header.strip():
            raise Unauthorized("missing bearer token: expected 'Authorization: Bearer <token>'")
        scheme, _, token = header.strip().partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthorized(
                f"expected 'Authorization: Bearer <token>', got a {scheme!r} credential"
            )
        return verify_token(token.strip(), public_key, now=now)

    def has(self, scope: str) -> bool:
        return scope in self.scopes

    def require(self, scope: str) -> None:
        """Raise Forbidden (403) unless the token carries `scope`."""
        if scope not in SCOPES:
            raise InvalidInput(f"scope: expected one of {', '.join(SCOPES)}, got {scope!r}")
        if scope not in self.scopes:
            raise Forbidden(
                f"token of {self.subject} lacks scope {scope!r}; it has "
                f"{', '.join(sorted(self.scopes))}"
            )

    def check_owns(self, session: Mapping[str, Any]) -> None:
        """Raise NotFound (404, never 403) unless the session belongs to this tenant.

        Answering 404 keeps another tenant from learning which session ids exist.
        """
        if tenant_of(session) != self.tenant:
            raise NotFound(f"session {session.get('session_id')} does not exist")


def issue_token(
    signing_key: Ed25519PrivateKey,
    *,
    subject: str,
    tenant: str,
    scopes: str | Iterable[str],
    ttl: timedelta,
    now: datetime | None = None,
) -> str:
    """A signed token for `subject` acting for `tenant` with `scopes`, valid for `ttl`."""
    if not isinstance(subject, str) or not subject.strip() or len(subject) > 200:
        raise InvalidInput(f"subject: expected 1-200 characters, got {subject!r}")
    if not timedelta(0) < ttl <= MAX_TTL:
        raise InvalidInput(f"ttl: expected more than 0 and at most 3650 days, got {ttl}")
    issued = (now or datetime.now(UTC)).replace(microsecond=0)
    claims = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": subject,
        "tenant": check_tenant(tenant),
        "scope": " ".join(s for s in SCOPES if s in parse_scopes(scopes)),
        "iat": int(issued.timestamp()),
        "exp": int((issued + ttl).timestamp()),
        "jti": secrets.token_hex(16),
    }
    return jwt.encode(claims, signing_key, algorithm=ALGORITHM, headers={"typ": "JWT"})


def _decode(token: str, public_key: Ed25519PublicKey) -> dict[str, Any]:
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            public_key,
            algorithms=[ALGORITHM],
            audience=AUDIENCE,
            issuer=ISSUER,
            # Times are checked by verify_token against its `now`, so tests can pin it.
            options={
                "require": list(_REQUIRED),
                "verify_exp": False,
                "verify_iat": False,
                "verify_nbf": False,
            },
        )
    except jwt.InvalidSignatureError:
        raise Unauthorized(
            "token signature does not verify: forged or signed by another key"
        ) from None
    except jwt.InvalidAlgorithmError:
        alg = _unverified_alg(token)
        raise Unauthorized(f"token algorithm: expected {ALGORITHM}, got {alg!r}") from None
    except jwt.MissingRequiredClaimError as exc:
        raise Unauthorized(f"token lacks the {exc.claim!r} claim") from None
    except jwt.InvalidAudienceError as exc:
        raise Unauthorized(f"token audience: expected {AUDIENCE!r} ({exc})") from None
    except jwt.InvalidIssuerError as exc:
        raise Unauthorized(f"token issuer: expected {ISSUER!r} ({exc})") from None
    except jwt.PyJWTError as exc:
        raise Unauthorized(f"malformed token: {exc}") from None
    return claims


def _unverified_alg(token: str) -> object:
    try:
        return jwt.get_unverified_header(token).get("alg")
    except jwt.PyJWTError:
        return None


def _int_claim(claims: dict[str, Any], name: str) -> int:
    value = claims[name]
    if isinstance(value, bool) or not isinstance(value, int):
        raise Unauthorized(f"token claim {name!r}: expected an integer time, got {value!r}")
    return value


def verify_token(
    token: str, public_key: Ed25519PublicKey, *, now: datetime | None = None
) -> Principal:
    """The Principal a token names, or Unauthorized saying why it is not accepted."""
    claims = _decode(token, public_key)
    when = now or datetime.now(UTC)
    expires = datetime.fromtimestamp(_int_claim(claims, "exp"), UTC)
    issued = datetime.fromtimestamp(_int_claim(claims, "iat"), UTC)
    if expires <= when:
        raise Unauthorized(f"token expired at {expires.isoformat()} (now {when.isoformat()})")
    if issued > when + CLOCK_SKEW:
        raise Unauthorized(f"token issued in the future: iat {issued.isoformat()}")
    scope = claims["scope"]
    try:
        if not isinstance(scope, str):
            raise InvalidInput(f"scope: expected a space-separated string, got {scope!r}")
        return Principal(
            subject=str(claims["sub"]),
            tenant=str(claims["tenant"]),
            scopes=parse_scopes(scope.split(" ")),
            token_id=str(claims["jti"]),
            expires_at=expires,
        )
    except InvalidInput as exc:
        raise Unauthorized(f"token claims: {exc}") from None


def write_token_file(path: Path, token: str) -> Path:
    """Write `token` to `path` with mode 0600 (created that way: never briefly readable)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, token.encode() + b"\n")
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    return path


def read_token_file(path: Path) -> str:
    """The token stored at `path`; KeyMaterialError if it is missing or readable by others."""
    try:
        if path.stat().st_mode & 0o077:
            raise KeyMaterialError(f"{path} is readable by group or others: expected mode 0600")
        token = path.read_text().strip()
    except FileNotFoundError:
        raise KeyMaterialError(f"token file {path} does not exist") from None
    if not token:
        raise KeyMaterialError(f"token file {path} is empty")
    return token


def ensure_token_file(
    path: Path,
    signing_key: Ed25519PrivateKey,
    *,
    subject: str,
    tenant: str,
    scopes: str | Iterable[str],
    ttl: timedelta,
    renew_before: timedelta = timedelta(days=1),
    now: datetime | None = None,
) -> str:
    """The token stored at `path` if this key still accepts it for more than
    `renew_before`; otherwise a new one, written there with mode 0600 (`lucid up`)."""
    when = now or datetime.now(UTC)
    try:
        current = read_token_file(path)
        held = verify_token(current, signing_key.public_key(), now=when + renew_before)
        if held.tenant == tenant and held.scopes == parse_scopes(scopes):
            return current
    except (KeyMaterialError, Unauthorized):
        pass  # missing, unsafe, expiring, or from keys since replaced: issue a new one
    fresh = issue_token(
        signing_key, subject=subject, tenant=tenant, scopes=scopes, ttl=ttl, now=when
    )
    write_token_file(path, fresh)
    return fresh
