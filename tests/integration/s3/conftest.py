"""The whole stack with BLOB_BACKEND=s3, against the test session's SeaweedFS.

The fixtures `stack`, `client`, `runtime` and `slow_stack` override the filesystem ones
for the tests in this folder, so backend-agnostic tests are imported here and run again
on S3. Each stack has its own Redis database, metadata database and bucket, so neither
the filesystem stack's workers nor the contract tests (which empty bucket "lucid") touch
its tasks or blobs.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from cli.client import Client
from cli.servers import free_port
from cli.stack import Stack, StackConfig
from lucid.runtime import Runtime
from lucid.settings import load_settings
from lucid.storage.s3 import s3_client
from tests.integration.conftest import stack_env


def s3_stack_env(
    redis_url: str, mongodb_url: str, s3_env: dict[str, str], name: str, redis_db: int, **extra: str
) -> dict[str, str]:
    """Settings for a stack on its own Redis database, metadata database and bucket."""
    bucket = name.replace("_", "-")
    client = s3_client(
        s3_env["S3_ENDPOINT_URL"],
        access_key_id=s3_env["S3_ACCESS_KEY_ID"],
        secret_access_key=s3_env["S3_SECRET_ACCESS_KEY"],
    )
    try:
        client.create_bucket(Bucket=bucket)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") != "BucketAlreadyOwnedByYou":
            raise
    return stack_env(
        redis_url.rsplit("/", 1)[0] + f"/{redis_db}",
        mongodb_url,
        name,
        **{**s3_env, "S3_BUCKET": bucket},
        **extra,
    )


@pytest.fixture(scope="session")
def stack(
    redis_url: str,
    mongodb_url: str,
    s3_env: dict[str, str],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Stack]:
    """The embedded stack with its blobs in SeaweedFS: the filesystem stack's workers, no Flower."""
    config = StackConfig(
        data_dir=tmp_path_factory.mktemp("stack-s3"),
        api_port=free_port(),
        flower_port=None,
        extra_env=s3_stack_env(redis_url, mongodb_url, s3_env, "lucid_it_s3", 8),
        loglevel="WARNING",
    )
    with Stack(config) as running:
        yield running


@pytest.fixture
def client(stack: Stack) -> Client:
    return Client(stack.api_url, timeout=120, token=stack.admin_token)


@pytest.fixture(scope="session")
def runtime(stack: Stack) -> Runtime:
    """The core wired to the same stores (the S3 bucket) as the running stack."""
    return Runtime(load_settings(stack.env))


@pytest.fixture
def slow_stack(
    redis_url: str, mongodb_url: str, s3_env: dict[str, str], tmp_path: Path
) -> Iterator[Stack]:
    """As tests/integration/test_tamper_and_redelivery.py's, with its blobs in SeaweedFS."""
    env = s3_stack_env(
        redis_url, mongodb_url, s3_env, "lucid_kill_s3", 9,
        CHUNK_SIZE_MB="16", COMPRESSION_LEVEL="19", COMPRESS_WORKERS="1", ENCRYPT_WORKERS="1",
    )  # fmt: skip
    config = StackConfig(
        data_dir=tmp_path / "stack", api_port=free_port(), flower_port=None, extra_env=env,
        loglevel="WARNING",
    )  # fmt: skip
    with Stack(config) as running:
        yield running
