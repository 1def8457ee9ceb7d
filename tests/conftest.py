"""Session-wide real servers: redis-server, SecantusDB and SeaweedFS on free ports."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pymongo
import pytest

from cli.servers import seaweedfs_credentials, start_redis, start_seaweedfs, start_secantus


@pytest.fixture(scope="session")
def servers_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("servers")


@pytest.fixture(scope="session")
def redis_url(servers_dir: Path) -> Iterator[str]:
    """URL of a real redis-server started for this test session."""
    proc, url = start_redis(servers_dir / "redis")
    yield url
    proc.stop()


@pytest.fixture(scope="session")
def mongodb_url(servers_dir: Path) -> Iterator[str]:
    """URL of a real MongoDB-wire server (SecantusDB) started for this test session."""
    proc, url = start_secantus(servers_dir / "secantus")
    yield url
    proc.stop()


@pytest.fixture(scope="session")
def s3_url(servers_dir: Path) -> Iterator[str]:
    """Endpoint of a real S3 server (SeaweedFS) started for this test session, on first use.

    Its bucket "lucid" exists; `s3_env` has the credentials."""
    proc, url = start_seaweedfs(servers_dir / "seaweedfs")
    yield url
    proc.stop()


@pytest.fixture(scope="session")
def s3_env(s3_url: str, servers_dir: Path) -> dict[str, str]:
    """The settings that point Lucid's blob store at the session's SeaweedFS bucket."""
    access, secret = seaweedfs_credentials(servers_dir / "seaweedfs")
    return {
        "BLOB_BACKEND": "s3",
        "S3_ENDPOINT_URL": s3_url,
        "S3_BUCKET": "lucid",
        "S3_ACCESS_KEY_ID": access,
        "S3_SECRET_ACCESS_KEY": secret,
    }


@pytest.fixture
def mongo_db(
    mongodb_url: str, request: pytest.FixtureRequest
) -> Iterator[pymongo.database.Database[dict[str, Any]]]:
    """A fresh database per test on the shared server."""
    client: pymongo.MongoClient[dict[str, Any]] = pymongo.MongoClient(
        mongodb_url, serverSelectionTimeoutMS=10000
    )
    name = "t_" + "".join(c if c.isalnum() else "_" for c in request.node.name)[:50]
    client.drop_database(name)
    yield client[name]
    client.drop_database(name)
    client.close()
