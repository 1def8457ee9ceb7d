"""The data dir is private: 0700, files created 0600, looser permissions fixed."""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from lucid.storage.datadir import secure_data_dir


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture(autouse=True)
def _restore_umask() -> Iterator[None]:
    old = os.umask(0o022)
    yield
    os.umask(old)


def test_a_new_data_dir_is_0700_and_files_created_after_are_private(tmp_path: Path) -> None:
    data = secure_data_dir(tmp_path / "data")
    assert _mode(data) == 0o700
    (data / "staging").mkdir()
    (data / "staging" / "current").write_bytes(b"plaintext")
    assert _mode(data / "staging") == 0o700
    assert _mode(data / "staging" / "current") == 0o600


def test_a_looser_data_dir_and_its_folders_are_fixed_and_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    data = tmp_path / "data"
    (data / "blobs").mkdir(parents=True)
    data.chmod(0o755)
    (data / "blobs").chmod(0o777)
    with caplog.at_level(logging.WARNING, logger="lucid.storage.datadir"):
        secure_data_dir(data)
    assert _mode(data) == 0o700
    assert _mode(data / "blobs") == 0o700
    assert caplog.text.count("event=data_dir_permissions_fixed") == 2
