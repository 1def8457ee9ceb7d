"""A deployment in which no server can read a recording: the API runs in the `api` role
with a key directory that lacks recipient.key, and `lucid get ID --key recipient.key`
verifies and decrypts on the user's side. Processes given a key their role must not
hold refuse to start."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pymongo
import pytest
from click.testing import CliRunner

from cli.main import cli
from lucid.crypto.keys import load_token_signing_key
from lucid.crypto.roles import make_role_key_dir
from lucid.crypto.tokens import DEFAULT_TENANT, SCOPES, issue_token
from lucid.runtime import Runtime
from lucid.settings import load_settings
from lucid.storage import layout
from lucid.storage.blobs import FileBlobStore
from tests.integration.apiserver import running_api, start_api
from tests.lucid.conftest import compressible, sealed_session

CHUNK_MB = str(64 / 1024)
Db = pymongo.database.Database[dict[str, Any]]


@pytest.fixture
def env(tmp_path: Path, redis_url: str, mongodb_url: str, mongo_db: Db) -> dict[str, str]:
    return {
        "LUCID_DATA_DIR": str(tmp_path / "data"),
        "REDIS_URL": redis_url,
        "MONGODB_URL": mongodb_url,
        "MONGODB_DATABASE": mongo_db.name,
        "CHUNK_SIZE_MB": CHUNK_MB,
    }


@pytest.fixture
def sealed(env: dict[str, str]) -> tuple[str, bytes, Runtime]:
    """A session sealed and anchored in the shared database by an all-in-one runtime."""
    rt = Runtime(load_settings(env))
    rt.meta.ensure_indexes()
    data = compressible(300 * 1024, seed=7)
    return sealed_session(rt, data), data, rt


@pytest.fixture
def api_without_private_keys(
    env: dict[str, str], sealed: tuple[str, bytes, Runtime], tmp_path: Path
) -> Iterator[str]:
    rt = sealed[2]
    key_dir = make_role_key_dir(rt.settings.keys_path, tmp_path / "role-keys", ("api",))
    assert not (key_dir / "recipient.key").exists() and not (key_dir / "ledger.key").exists()
    role_env = {**env, "LUCID_ROLE": "api", "LUCID_KEY_DIR": str(key_dir)}
    with running_api(tmp_path / "data", role_env) as url:
        yield url


def _token(keys: Path) -> str:
    """An every-scope token signed with the deployment's token key."""
    return issue_token(
        load_token_signing_key(keys),
        subject="test:offline",
        tenant=DEFAULT_TENANT,
        scopes=SCOPES,
        ttl=timedelta(hours=1),
    )


def _get(
    url: str, sid: str, out: Path, keys: Path, token_keys: Path | None = None
) -> tuple[int, str]:
    result = CliRunner().invoke(
        cli,
        ["get", sid, "-o", str(out), "--key", str(keys / "recipient.key"),
         "--ledger-pub", str(keys / "ledger.pub"), "--api", url,
         "--token", _token(token_keys or keys)],
    )  # fmt: skip
    return result.exit_code, result.output


def test_get_with_key_restores_byte_identical_from_an_api_holding_no_private_key(
    sealed: tuple[str, bytes, Runtime], api_without_private_keys: str, tmp_path: Path
) -> None:
    sid, data, rt = sealed
    url = api_without_private_keys
    # The API cannot decrypt: it holds no recipient.key.
    auth = {"Authorization": f"Bearer {_token(rt.settings.keys_path)}"}
    base = f"{url}/api/v1/sessions/{sid}"
    for path, extra in (("/download", {}), ("/download", {"Range": "bytes=0-9"}),
                        ("/chunks/0/download", {})):  # fmt: skip
        answer = httpx.get(base + path, timeout=30, headers={**auth, **extra})
        # A clear refusal that says where decryption happens, not a server error.
        assert answer.status_code == 403, (path, answer.status_code, answer.text)
        assert answer.json()["error"] == "decryption_not_here"
        assert "lucid get" in answer.json()["message"] and "--key" in answer.json()["message"]
    # Verification reads the ledger from the shared store, not a local file.
    assert not (rt.settings.data_dir / "ledger").exists()
    verified = httpx.get(f"{url}/api/v1/sessions/{sid}/verify", timeout=30, headers=auth)
    assert verified.json()["ok"] is True
    code, output = _get(url, sid, tmp_path / "out.rec", rt.settings.keys_path)
    assert code == 0, output
    assert (tmp_path / "out.rec").read_bytes() == data


def test_get_with_key_refuses_a_tampered_chunk_naming_it(
    sealed: tuple[str, bytes, Runtime], api_without_private_keys: str, tmp_path: Path
) -> None:
    sid, _, rt = sealed
    assert isinstance(rt.blobs, FileBlobStore)
    path = rt.blobs.root / layout.encrypted_key(sid, 2)
    blob = bytearray(path.read_bytes())
    blob[10] ^= 0x01
    path.chmod(0o600)
    path.write_bytes(bytes(blob))
    code, output = _get(api_without_private_keys, sid, tmp_path / "out.rec", rt.settings.keys_path)
    assert code == 1
    assert "chunk 2" in output and "ciphertext_digest: expected" in output
    assert not (tmp_path / "out.rec").exists()
    assert not (tmp_path / "out.rec.part").exists()


def test_get_with_key_refuses_a_ledger_key_it_does_not_trust(
    sealed: tuple[str, bytes, Runtime], api_without_private_keys: str, tmp_path: Path
) -> None:
    sid, _, rt = sealed
    other = tmp_path / "other-keys"
    from lucid.crypto.keys import init_keys

    init_keys(other)
    (other / "recipient.key").write_bytes((rt.settings.keys_path / "recipient.key").read_bytes())
    code, output = _get(
        api_without_private_keys, sid, tmp_path / "out.rec", other, rt.settings.keys_path
    )
    assert code == 1 and "ledger key: expected" in output


def test_an_api_given_the_recipient_key_refuses_to_start(
    env: dict[str, str], sealed: tuple[str, bytes, Runtime], tmp_path: Path
) -> None:
    master = sealed[2].settings.keys_path
    role_env = {**env, "LUCID_ROLE": "api", "LUCID_KEY_DIR": str(master)}
    with pytest.raises(RuntimeError, match=r"role api must not hold ledger\.key, recipient\.key"):
        start_api(tmp_path / "data", role_env, timeout=60, logs=tmp_path / "logs")


def test_an_ingest_worker_given_the_ledger_key_refuses_to_start(
    env: dict[str, str], sealed: tuple[str, bytes, Runtime]
) -> None:
    master = sealed[2].settings.keys_path
    worker_env = {**os.environ, **env, "LUCID_ROLE": "ingest", "LUCID_KEY_DIR": str(master)}
    argv = [sys.executable, "-m", "celery", "-A", "tasks.app", "worker", "-Q", "compress",
            "-c", "1", "--pool", "solo", "--without-mingle", "--without-gossip"]  # fmt: skip
    done = subprocess.run(argv, env=worker_env, capture_output=True, text=True, timeout=90)
    assert done.returncode != 0
    assert "role ingest must not hold ledger.key, recipient.key" in done.stdout + done.stderr
