"""What only the S3 backend has to get right: its settings, and botocore's errors mapped
to Lucid's (a server down is a transient "blob store unavailable", bad credentials or a
missing bucket a ConfigError), against real SeaweedFS servers."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from cli.servers import free_port, seaweedfs_credentials, start_seaweedfs
from lucid.errors import ConfigError, DependencyUnavailable
from lucid.runtime import Runtime
from lucid.settings import load_settings
from lucid.storage.fs import FileBlobStore
from lucid.storage.s3 import S3BlobStore, s3_client

S3 = {"BLOB_BACKEND": "s3", "S3_ENDPOINT_URL": "http://127.0.0.1:9", "S3_BUCKET": "b"}


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"BLOB_BACKEND": "s3"}, "BLOB_BACKEND=s3 needs S3_ENDPOINT_URL and S3_BUCKET"),
        ({**S3, "S3_BUCKET": ""}, "needs S3_BUCKET"),
        ({**S3, "S3_ENDPOINT_URL": "127.0.0.1:9"}, "expected an http:// or https:// URL"),
        ({**S3, "S3_ACCESS_KEY_ID": "k"}, "S3_ACCESS_KEY_ID and S3_SECRET_ACCESS_KEY go together"),
        ({"BLOB_BACKEND": "gcs"}, "BLOB_BACKEND='gcs'"),
    ],
)
def test_bad_s3_settings_are_config_errors(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_settings(env)


def test_the_secret_key_is_not_shown_in_settings() -> None:
    s = load_settings({**S3, "S3_ACCESS_KEY_ID": "k", "S3_SECRET_ACCESS_KEY": "hunter2"})
    assert "hunter2" not in repr(s)
    assert s.s3_secret_access_key is not None
    assert s.s3_secret_access_key.get_secret_value() == "hunter2"


def test_runtime_picks_the_backend_from_settings(tmp_path: Path, s3_env: dict[str, str]) -> None:
    fs = Runtime(load_settings({"LUCID_DATA_DIR": str(tmp_path)})).blobs
    assert isinstance(fs, FileBlobStore)
    s3 = Runtime(load_settings({"LUCID_DATA_DIR": str(tmp_path), **s3_env})).blobs
    assert isinstance(s3, S3BlobStore)
    s3.delete("runtime/probe")
    assert s3.put("runtime/probe", b"x") is True
    assert s3.get("runtime/probe") == b"x"
    s3.delete("runtime/probe")


def test_an_unreachable_server_is_a_transient_blob_store_error() -> None:
    store = S3BlobStore(s3_client(f"http://127.0.0.1:{free_port()}", timeout_s=2), "lucid")
    for call in (lambda: store.put("k", b"x"), lambda: store.get("k"), lambda: store.exists("k")):
        with pytest.raises(DependencyUnavailable, match="blob store unavailable") as caught:
            call()
        assert caught.value.dependency == "blob store"


def test_refused_credentials_and_a_missing_bucket_are_config_errors(s3_env: dict[str, str]) -> None:
    wrong = s3_client(
        s3_env["S3_ENDPOINT_URL"], access_key_id="nobody", secret_access_key="not-the-secret"
    )
    with pytest.raises(ConfigError, match="S3_ACCESS_KEY_ID"):
        S3BlobStore(wrong, "lucid").put("k", b"x")
    right = s3_client(
        s3_env["S3_ENDPOINT_URL"],
        access_key_id=s3_env["S3_ACCESS_KEY_ID"],
        secret_access_key=s3_env["S3_SECRET_ACCESS_KEY"],
    )
    with pytest.raises(ConfigError, match=r"'no-such-bucket'.*S3_BUCKET"):
        S3BlobStore(right, "no-such-bucket").get("k")


def test_objects_that_are_not_blob_keys_are_not_listed(s3_env: dict[str, str]) -> None:
    client = s3_client(
        s3_env["S3_ENDPOINT_URL"],
        access_key_id=s3_env["S3_ACCESS_KEY_ID"],
        secret_access_key=s3_env["S3_SECRET_ACCESS_KEY"],
    )
    store = S3BlobStore(client, "lucid")
    client.put_object(Bucket="lucid", Key="foreign/with space", Body=b"x")
    try:
        store.put("foreign/ok", b"x")
        assert list(store.keys("foreign/")) == ["foreign/ok"]
    finally:
        client.delete_object(Bucket="lucid", Key="foreign/with space")
        store.delete_prefix("foreign/")


def test_blobs_outlive_a_server_restart_and_a_stopped_server_is_transient(
    tmp_path: Path,
) -> None:
    proc, url = start_seaweedfs(tmp_path / "weed")
    try:
        access, secret = seaweedfs_credentials(tmp_path / "weed")
        store = S3BlobStore(
            s3_client(url, access_key_id=access, secret_access_key=secret, timeout_s=2), "lucid"
        )
        assert store.put("kept/0", b"before the restart") is True
        proc.stop()
        with pytest.raises(DependencyUnavailable, match="blob store"):
            store.get("kept/0")
        proc, _ = start_seaweedfs(tmp_path / "weed", port=int(url.rsplit(":", 1)[1]))
        assert store.get("kept/0") == b"before the restart"
        assert store.put("kept/0", b"after") is False
    finally:
        proc.stop()
