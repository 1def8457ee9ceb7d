"""Keys by role: each role's key directory and the start-up refusal of a forbidden key."""

from __future__ import annotations

from pathlib import Path

import pytest

from lucid.crypto.keys import init_keys
from lucid.crypto.roles import (
    allowed_private,
    check_role_keys,
    load_ledger_signing_key_for,
    load_recipient_private_for,
    make_role_key_dir,
)
from lucid.errors import ConfigError, KeyMaterialError
from lucid.runtime import Runtime
from lucid.settings import load_settings

PUBLIC = {"recipient.pub", "ledger.pub", "token.pub"}


@pytest.fixture
def master(tmp_path: Path) -> Path:
    init_keys(tmp_path / "keys")
    return tmp_path / "keys"


@pytest.mark.parametrize(
    ("roles", "private"),
    [
        (("api",), {"token.key"}),
        (("ingest",), set()),
        (("seal",), set()),
        (("anchor",), {"ledger.key"}),
        (("restore",), {"recipient.key"}),
        (("api", "restore"), {"token.key", "recipient.key"}),
        (("all",), {"token.key", "recipient.key", "ledger.key"}),
    ],
)
def test_a_role_key_dir_holds_the_public_keys_and_only_its_private_keys(
    master: Path, tmp_path: Path, roles: tuple[str, ...], private: set[str]
) -> None:
    target = make_role_key_dir(master, tmp_path / "role-keys", roles)
    assert {p.name for p in target.iterdir()} == PUBLIC | private
    assert target.stat().st_mode & 0o777 == 0o700
    for name in private:
        assert (target / name).stat().st_mode & 0o777 == 0o600
    check_role_keys(roles, target)  # its own directory passes the start-up check


@pytest.mark.parametrize(
    ("role", "forbidden"),
    [("api", "recipient.key"), ("ingest", "ledger.key"), ("anchor", "recipient.key")],
)
def test_a_process_holding_a_forbidden_private_key_refuses_to_start(
    master: Path, tmp_path: Path, role: str, forbidden: str
) -> None:
    with pytest.raises(KeyMaterialError, match=f"role {role} must not hold .*{forbidden}"):
        check_role_keys((role,), master)
    env = {"LUCID_DATA_DIR": str(tmp_path), "LUCID_KEY_DIR": str(master), "LUCID_ROLE": role}
    with pytest.raises(KeyMaterialError, match="must not hold"):
        Runtime(load_settings(env))


def test_a_role_may_not_load_another_roles_key_even_if_the_file_is_there(master: Path) -> None:
    with pytest.raises(KeyMaterialError, match=r"role api may not load recipient\.key"):
        load_recipient_private_for({"api"}, master)
    with pytest.raises(KeyMaterialError, match=r"role ingest may not load ledger\.key"):
        load_ledger_signing_key_for({"ingest"}, master)
    assert load_recipient_private_for({"restore"}, master) is not None
    assert load_ledger_signing_key_for({"anchor"}, master) is not None


def test_a_role_key_dir_made_again_drops_a_private_key_no_longer_allowed(
    master: Path, tmp_path: Path
) -> None:
    target = make_role_key_dir(master, tmp_path / "rk", ("api", "restore"))
    (target / "ledger.key").write_bytes((master / "ledger.key").read_bytes())
    again = make_role_key_dir(master, tmp_path / "rk", ("api", "restore"))
    assert not (again / "ledger.key").exists()


def test_a_role_process_never_creates_keys_in_its_empty_key_dir(tmp_path: Path) -> None:
    env = {
        "LUCID_DATA_DIR": str(tmp_path),
        "LUCID_KEY_DIR": str(tmp_path / "empty"),
        "LUCID_ROLE": "ingest",
    }
    rt = Runtime(load_settings(env))
    with pytest.raises(KeyMaterialError, match="does not exist"):
        _ = rt.recipient_public
    assert not (tmp_path / "empty" / "recipient.key").exists()


def test_unknown_roles_are_refused() -> None:
    with pytest.raises(ConfigError, match="LUCID_ROLE"):
        load_settings({"LUCID_ROLE": "api,janitor"})
    with pytest.raises(ConfigError):
        allowed_private(["janitor"])
