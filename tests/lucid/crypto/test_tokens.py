"""Bearer tokens: issued with the deployment's Ed25519 key, refused (401) when expired,
forged, meant for someone else or incomplete; scopes (403) and tenants (404) enforced."""

from __future__ import annotations

import base64
import json
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from lucid.crypto.keys import ensure_keys, load_token_signing_key, load_token_verify_key
from lucid.crypto.tokens import (
    DEFAULT_TENANT,
    SCOPES,
    Principal,
    ensure_token_file,
    issue_token,
    parse_scopes,
    parse_ttl,
    read_token_file,
    verify_token,
    write_token_file,
)
from lucid.errors import Forbidden, InvalidInput, KeyMaterialError, NotFound, Unauthorized

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
KEY = Ed25519PrivateKey.generate()
PUB = KEY.public_key()


def token(**overrides: Any) -> str:
    args: dict[str, Any] = {
        "subject": "alice",
        "tenant": "acme",
        "scopes": "record,read",
        "ttl": timedelta(hours=1),
        "now": NOW,
    }
    return issue_token(KEY, **(args | overrides))


def claims_token(claims: dict[str, Any], key: Any = KEY, algorithm: str = "EdDSA") -> str:
    return jwt.encode(claims, key, algorithm=algorithm)


def base_claims() -> dict[str, Any]:
    return {
        "iss": "lucid",
        "aud": "lucid",
        "sub": "alice",
        "tenant": "acme",
        "scope": "read",
        "iat": int(NOW.timestamp()),
        "exp": int((NOW + timedelta(hours=1)).timestamp()),
        "jti": "x1",
    }


def test_issued_token_verifies_to_its_principal() -> None:
    p = verify_token(token(), PUB, now=NOW + timedelta(minutes=59))
    assert (p.subject, p.tenant, p.scopes) == ("alice", "acme", frozenset({"record", "read"}))
    assert p.expires_at == NOW + timedelta(hours=1)
    assert len(p.token_id) == 32


def test_token_claims_are_the_documented_ones() -> None:
    payload = token().split(".")[1]
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    assert set(claims) == {"iss", "aud", "sub", "tenant", "scope", "iat", "exp", "jti"}
    assert (claims["iss"], claims["aud"], claims["scope"]) == ("lucid", "lucid", "record read")
    assert jwt.get_unverified_header(token())["alg"] == "EdDSA"


def test_expired_token_is_unauthorized_and_says_so() -> None:
    with pytest.raises(Unauthorized, match="expired"):
        verify_token(token(), PUB, now=NOW + timedelta(hours=1))


def test_token_from_another_key_is_unauthorized_as_forged() -> None:
    other = Ed25519PrivateKey.generate().public_key()
    with pytest.raises(Unauthorized, match="signature"):
        verify_token(token(), other, now=NOW)


def test_edited_claims_break_the_signature() -> None:
    header, _, sig = token().split(".")
    forged = base64.urlsafe_b64encode(json.dumps(base_claims() | {"scope": "admin"}).encode())
    with pytest.raises(Unauthorized, match="signature"):
        verify_token(f"{header}.{forged.decode().rstrip('=')}.{sig}", PUB, now=NOW)


def test_other_algorithms_are_refused_even_alg_none() -> None:
    unsigned = jwt.encode(base_claims(), "", algorithm="none")
    with pytest.raises(Unauthorized, match="algorithm"):
        verify_token(unsigned, PUB, now=NOW)
    hmac = jwt.encode(base_claims(), "secret-long-enough-for-hs256-00000", algorithm="HS256")
    with pytest.raises(Unauthorized, match="expected EdDSA, got 'HS256'"):
        verify_token(hmac, PUB, now=NOW)


def test_wrong_audience_is_unauthorized() -> None:
    with pytest.raises(Unauthorized, match="audience"):
        verify_token(claims_token(base_claims() | {"aud": "other"}), PUB, now=NOW)


def test_wrong_issuer_is_unauthorized() -> None:
    with pytest.raises(Unauthorized, match="issuer"):
        verify_token(claims_token(base_claims() | {"iss": "other"}), PUB, now=NOW)


@pytest.mark.parametrize("claim", ["sub", "tenant", "scope", "exp", "iat", "jti", "aud"])
def test_a_missing_claim_is_unauthorized_naming_it(claim: str) -> None:
    claims = base_claims()
    del claims[claim]
    with pytest.raises(Unauthorized, match=f"'{claim}'"):
        verify_token(claims_token(claims), PUB, now=NOW)


def test_unknown_scope_in_a_token_is_unauthorized() -> None:
    with pytest.raises(Unauthorized, match="superuser"):
        verify_token(claims_token(base_claims() | {"scope": "read superuser"}), PUB, now=NOW)


def test_token_issued_in_the_future_is_unauthorized() -> None:
    claims = base_claims() | {"iat": int((NOW + timedelta(minutes=5)).timestamp())}
    with pytest.raises(Unauthorized, match="future"):
        verify_token(claims_token(claims), PUB, now=NOW)


def test_garbage_is_unauthorized_as_malformed() -> None:
    with pytest.raises(Unauthorized, match="malformed"):
        verify_token("not.a.token", PUB, now=NOW)


def test_from_bearer_reads_the_authorization_header() -> None:
    p = Principal.from_bearer(f"Bearer {token()}", PUB, NOW)
    assert p.subject == "alice"
    with pytest.raises(Unauthorized, match="missing bearer token"):
        Principal.from_bearer(None, PUB, NOW)
    with pytest.raises(Unauthorized, match="missing bearer token"):
        Principal.from_bearer("  ", PUB, NOW)
    with pytest.raises(Unauthorized, match="'Basic'"):
        Principal.from_bearer("Basic dXNlcjpwdw==", PUB, NOW)


def test_require_raises_forbidden_for_a_missing_scope() -> None:
    p = verify_token(token(scopes=["read"]), PUB, now=NOW)
    p.require("read")
    with pytest.raises(Forbidden, match="lacks scope 'download'"):
        p.require("download")
    with pytest.raises(InvalidInput):
        p.require("everything")


def test_another_tenants_session_is_not_found_and_legacy_sessions_are_default() -> None:
    p = verify_token(token(), PUB, now=NOW)
    p.check_owns({"session_id": "a", "tenant": "acme"})
    with pytest.raises(NotFound, match="does not exist"):
        p.check_owns({"session_id": "b", "tenant": "beta"})
    with pytest.raises(NotFound):
        p.check_owns({"session_id": "c"})
    default = verify_token(token(tenant=DEFAULT_TENANT), PUB, now=NOW)
    default.check_owns({"session_id": "c"})


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"tenant": "a b"}, "tenant"),
        ({"tenant": ""}, "tenant"),
        ({"scopes": "read,root"}, "root"),
        ({"scopes": ""}, "none"),
        ({"subject": " "}, "subject"),
        ({"ttl": timedelta(0)}, "ttl"),
    ],
)
def test_issue_refuses_bad_input(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        token(**kwargs)


def test_parse_scopes_and_ttl() -> None:
    assert parse_scopes("record, read download") == {"record", "read", "download"}
    assert parse_ttl("24h") == timedelta(hours=24)
    assert parse_ttl("90s") == timedelta(seconds=90)
    assert parse_ttl("30d") == timedelta(days=30)
    for bad in ("24", "h", "-1h", "0m", "4000d", "1w"):
        with pytest.raises(InvalidInput, match="ttl"):
            parse_ttl(bad)


def test_key_dir_holds_a_token_pair_that_signs_and_verifies(tmp_path: Path) -> None:
    ensure_keys(tmp_path)
    assert stat.S_IMODE((tmp_path / "token.key").stat().st_mode) == 0o600
    signed = issue_token(
        load_token_signing_key(tmp_path),
        subject="ops",
        tenant="acme",
        scopes=["admin"],
        ttl=timedelta(minutes=5),
    )
    assert verify_token(signed, load_token_verify_key(tmp_path)).has("admin")


def test_ensure_keys_adds_the_token_pair_to_an_older_key_dir(tmp_path: Path) -> None:
    ensure_keys(tmp_path)
    recipient = (tmp_path / "recipient.key").read_bytes()
    (tmp_path / "token.key").unlink()
    (tmp_path / "token.pub").unlink()
    ensure_keys(tmp_path)
    assert (tmp_path / "recipient.key").read_bytes() == recipient
    assert stat.S_IMODE((tmp_path / "token.key").stat().st_mode) == 0o600
    load_token_signing_key(tmp_path)


def test_token_file_is_written_0600_and_read_back(tmp_path: Path) -> None:
    path = write_token_file(tmp_path / "d" / "admin.token", "abc")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert read_token_file(path) == "abc"
    path.chmod(0o644)
    with pytest.raises(KeyMaterialError, match="0600"):
        read_token_file(path)
    with pytest.raises(KeyMaterialError, match="does not exist"):
        read_token_file(tmp_path / "nope")


def test_ensure_token_file_keeps_a_good_token_and_renews_one_about_to_expire(
    tmp_path: Path,
) -> None:
    path = tmp_path / "admin.token"
    args: dict[str, Any] = {
        "subject": "lucid-up", "tenant": DEFAULT_TENANT, "scopes": ["admin", "read"],
        "ttl": timedelta(days=30),
    }  # fmt: skip
    first = ensure_token_file(path, KEY, now=NOW, **args)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert ensure_token_file(path, KEY, now=NOW + timedelta(days=28), **args) == first
    renewed = ensure_token_file(path, KEY, now=NOW + timedelta(days=29, hours=1), **args)
    assert renewed != first
    assert read_token_file(path) == renewed
    other_key = Ed25519PrivateKey.generate()
    replaced = ensure_token_file(path, other_key, now=NOW, **args)
    verify_token(replaced, other_key.public_key(), now=NOW)
    wider = ensure_token_file(path, other_key, now=NOW, **(args | {"scopes": SCOPES}))
    assert verify_token(wider, other_key.public_key(), now=NOW).scopes == set(SCOPES)
