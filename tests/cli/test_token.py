"""`lucid token create`: a token signed with the deployment's key, or a one-line error."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from cli.main import cli
from lucid.crypto.keys import init_keys, load_token_verify_key
from lucid.crypto.tokens import verify_token
from lucid.errors import Unauthorized


def run(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, ["token", "create", *args], env=env)
    return result.exit_code, result.stdout, result.stderr


def test_token_create_prints_a_token_the_key_dir_verifies(tmp_path: Path) -> None:
    init_keys(tmp_path / "keys")
    code, out, err = run(
        "--tenant", "acme", "--scope", "record,read", "--ttl", "2h", "--subject", "ci",
        env={"LUCID_KEY_DIR": str(tmp_path / "keys")},
    )  # fmt: skip
    assert code == 0, err
    principal = verify_token(out.strip(), load_token_verify_key(tmp_path / "keys"))
    assert (principal.subject, principal.tenant) == ("ci", "acme")
    assert principal.scopes == {"record", "read"}
    expected = datetime.now(UTC) + timedelta(hours=2)
    assert abs(principal.expires_at - expected) < timedelta(seconds=5)
    assert "tenant acme, scopes read record" in err
    assert out.count("\n") == 1  # only the token on stdout, for $(lucid token create ...)


def test_token_create_uses_the_data_dirs_keys_and_a_default_subject(tmp_path: Path) -> None:
    init_keys(tmp_path / "keys")
    code, out, _ = run("--tenant", "t1", "--scope", "admin", env={"LUCID_DATA_DIR": str(tmp_path)})
    assert code == 0
    principal = verify_token(out.strip(), load_token_verify_key(tmp_path / "keys"))
    assert principal.subject.startswith("cli:")
    assert principal.expires_at - datetime.now(UTC) > timedelta(hours=23)


def test_a_token_from_another_deployment_does_not_verify(tmp_path: Path) -> None:
    init_keys(tmp_path / "a")
    init_keys(tmp_path / "b")
    _, out, _ = run("--tenant", "t", "--scope", "read", "--key-dir", str(tmp_path / "a"))
    with pytest.raises(Unauthorized, match="signature"):
        verify_token(out.strip(), load_token_verify_key(tmp_path / "b"))


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--tenant", "acme", "--scope", "read,root"], "root"),
        (["--tenant", "a b", "--scope", "read"], "tenant"),
        (["--tenant", "acme", "--scope", "read", "--ttl", "forever"], "ttl"),
    ],
)
def test_bad_input_is_a_one_line_error(tmp_path: Path, args: list[str], message: str) -> None:
    init_keys(tmp_path)
    code, out, err = run(*args, "--key-dir", str(tmp_path))
    assert code == 1
    assert out == ""
    assert err.startswith("error: ") and message in err and err.count("\n") == 1


def test_missing_keys_say_how_to_make_them(tmp_path: Path) -> None:
    code, out, err = run("--tenant", "acme", "--scope", "read", "--key-dir", str(tmp_path / "no"))
    assert code == 1
    assert out == ""
    assert "lucid keys init" in err
    assert not (tmp_path / "no").exists()  # never mints a fresh deployment's keys by accident
