"""The CLI's token: --token, else $LUCID_TOKEN, else DATA_DIR/admin.token, else none."""

from __future__ import annotations

from pathlib import Path

import pytest

from cli.auth import ADMIN_TOKEN_FILE, default_token
from lucid.crypto.tokens import write_token_file
from lucid.errors import KeyMaterialError


def test_explicit_beats_environment_beats_token_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_token_file(tmp_path / ADMIN_TOKEN_FILE, "from-file")
    monkeypatch.setenv("LUCID_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("LUCID_TOKEN", raising=False)
    assert default_token() == "from-file"
    monkeypatch.setenv("LUCID_TOKEN", "from-env")
    assert default_token() == "from-env"
    assert default_token("from-flag") == "from-flag"


def test_no_token_anywhere_is_none_and_an_unsafe_file_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("LUCID_TOKEN", raising=False)
    assert default_token(data_dir=tmp_path) is None
    write_token_file(tmp_path / ADMIN_TOKEN_FILE, "t").chmod(0o644)
    with pytest.raises(KeyMaterialError, match="0600"):
        default_token(data_dir=tmp_path)
