"""Settings: the seeds' defaults, and a ConfigError naming variable and value for bad input."""

from __future__ import annotations

import logging
import re

import pytest

from lucid.errors import ConfigError
from lucid.settings import MIB, load_settings, unknown_settings


def test_defaults_match_the_seeds() -> None:
    s = load_settings({})
    assert s.chunk_size_mb == 10
    assert s.chunk_size == 10 * MIB
    assert s.compression_algorithm == "zstd"
    assert s.compression_level == 6
    assert s.encryption_algorithm == "AES-256-GCM"
    assert s.anchor_backend == "ledger"
    assert (s.task_soft_time_limit_s, s.task_time_limit_s, s.visibility_timeout_s) == (
        300,
        360,
        900,
    )


def test_the_seeds_profile_gives_the_seeds_counts() -> None:
    s = load_settings({"WORKER_PROFILE": "seeds"})
    got = {stage: s.workers_for(stage) for stage in ("compress", "encrypt", "hash")}
    got |= {stage: s.workers_for(stage) for stage in ("merkle", "anchor")}
    assert got == {"compress": 4, "encrypt": 4, "hash": 2, "merkle": 2, "anchor": 1}


def test_the_cores_profile_fits_the_counts_to_the_cores(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("os.cpu_count", lambda: 8)
    s = load_settings({})  # the default profile
    assert s.worker_profile == "cores"
    got = {stage: s.workers_for(stage) for stage in ("compress", "encrypt", "hash", "merkle")}
    assert got == {"compress": 8, "encrypt": 4, "hash": 4, "merkle": 1}
    monkeypatch.setattr("os.cpu_count", lambda: 2)
    assert [s.workers_for(st) for st in ("compress", "encrypt", "hash", "anchor")] == [2, 1, 1, 1]
    explicit = load_settings({"WORKER_PROFILE": "cores", "COMPRESS_WORKERS": "3"})
    assert explicit.workers_for("compress") == 3


def test_worker_count_is_read_from_its_variable() -> None:
    assert load_settings({"HASH_WORKERS": "7"}).workers_for("hash") == 7


def test_workers_for_unknown_stage_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="'nope'"):
        load_settings({}).workers_for("nope")


def test_64_kib_chunk_size_is_accepted_as_exact_bytes() -> None:
    assert load_settings({"CHUNK_SIZE_MB": "0.0625"}).chunk_size == 64 * 1024


def test_empty_value_means_default() -> None:
    assert load_settings({"CHUNK_SIZE_MB": ""}).chunk_size == 10 * MIB


def test_paths_derive_from_data_dir(tmp_path) -> None:
    s = load_settings({"LUCID_DATA_DIR": str(tmp_path)})
    assert s.keys_path == tmp_path / "keys"
    assert s.blobs_path == tmp_path / "blobs"
    assert s.ledger_path == tmp_path / "ledger" / "ledger.jsonl"
    other = tmp_path / "elsewhere"
    assert load_settings({"LUCID_KEY_DIR": str(other)}).keys_path == other


@pytest.mark.parametrize(
    ("env", "names"),
    [
        ({"CHUNK_SIZE_MB": "ten"}, ["CHUNK_SIZE_MB", "ten"]),
        ({"CHUNK_SIZE_MB": "0.001"}, ["CHUNK_SIZE_MB", "0.001", "4 KiB"]),
        ({"CHUNK_SIZE_MB": "0"}, ["CHUNK_SIZE_MB", "'0'"]),
        ({"COMPRESSION_LEVEL": "23"}, ["COMPRESSION_LEVEL=23", "zstd", "1..22"]),
        ({"COMPRESSION_LEVEL": "0"}, ["COMPRESSION_LEVEL=0", "zstd"]),
        (
            {"COMPRESSION_ALGORITHM": "gzip", "COMPRESSION_LEVEL": "12"},
            ["COMPRESSION_LEVEL=12", "gzip", "0..9"],
        ),
        ({"COMPRESSION_LEVEL": "high"}, ["COMPRESSION_LEVEL", "high"]),
        ({"COMPRESSION_ALGORITHM": "lz4"}, ["COMPRESSION_ALGORITHM", "lz4"]),
        ({"ENCRYPTION_ALGORITHM": "DES"}, ["ENCRYPTION_ALGORITHM", "DES"]),
        (
            {"TASK_SOFT_TIME_LIMIT": "360", "TASK_TIME_LIMIT": "360"},
            ["TASK_SOFT_TIME_LIMIT", "TASK_TIME_LIMIT", "360, 360, 900"],
        ),
        (
            {"VISIBILITY_TIMEOUT": "360"},
            ["TASK_TIME_LIMIT", "VISIBILITY_TIMEOUT", "300, 360, 360"],
        ),
        ({"ANCHOR_BACKEND": "http"}, ["ANCHOR_BACKEND=http", "BLOCKCHAIN_ANCHORING_URL"]),
        ({"ANCHOR_BACKEND": "chain"}, ["ANCHOR_BACKEND", "chain"]),
        ({"ENCRYPT_WORKERS": "0"}, ["ENCRYPT_WORKERS", "'0'"]),
    ],
)
def test_bad_value_is_a_config_error_naming_variable_and_value(
    env: dict[str, str], names: list[str]
) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(env)
    message = str(caught.value)
    for name in names:
        assert name in message


def test_http_anchor_with_url_is_accepted() -> None:
    s = load_settings({"ANCHOR_BACKEND": "http", "BLOCKCHAIN_ANCHORING_URL": "http://a.test"})
    assert s.anchoring_url == "http://a.test"


def test_every_problem_is_reported_at_once() -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings({"CHUNK_SIZE_MB": "ten", "HASH_WORKERS": "many"})
    assert "CHUNK_SIZE_MB='ten'" in str(caught.value)
    assert "HASH_WORKERS='many'" in str(caught.value)


def test_gzip_accepts_its_own_level_range() -> None:
    assert load_settings({"COMPRESSION_ALGORITHM": "gzip", "COMPRESSION_LEVEL": "9"})
    assert load_settings({"COMPRESSION_ALGORITHM": "gzip", "COMPRESSION_LEVEL": "0"})


def test_compression_none_with_level_zero_is_accepted() -> None:
    s = load_settings({"COMPRESSION_ALGORITHM": "none", "COMPRESSION_LEVEL": "0"})
    assert (s.compression_algorithm, s.compression_level) == ("none", 0)


def test_compression_none_alone_is_accepted() -> None:
    assert load_settings({"COMPRESSION_ALGORITHM": "none"}).compression_algorithm == "none"


def test_end_of_life_defaults_match_the_issue() -> None:
    s = load_settings({})
    assert (s.retention_days, s.abandoned_after_h, s.max_concurrent_sessions) == (30, 24, 100)
    assert s.retention_days_for("anyone") == 30


def test_retention_has_per_tenant_overrides() -> None:
    s = load_settings({"RETENTION_DAYS": "10", "RETENTION_DAYS_BY_TENANT": "acme=90, beta=7"})
    assert s.retention_days_by_tenant == {"acme": 90, "beta": 7}
    assert (s.retention_days_for("acme"), s.retention_days_for("beta")) == (90, 7)
    assert s.retention_days_for("gamma") == 10


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"RETENTION_DAYS_BY_TENANT": "acme"}, "RETENTION_DAYS_BY_TENANT='acme'"),
        ({"RETENTION_DAYS_BY_TENANT": "acme=0"}, "days 1..36500"),
        ({"RETENTION_DAYS_BY_TENANT": "acme=1,acme=2"}, "given twice"),
        ({"RETENTION_DAYS": "0"}, "RETENTION_DAYS='0'"),
        ({"ABANDONED_AFTER_H": "-1"}, "ABANDONED_AFTER_H='-1'"),
        ({"MAX_CONCURRENT_SESSIONS": "many"}, "MAX_CONCURRENT_SESSIONS='many'"),
    ],
)
def test_bad_end_of_life_settings_name_variable_and_value(env: dict[str, str], named: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(named)):
        load_settings(env)


def test_unknown_settings_names_lucid_lookalikes_only() -> None:
    env = {
        "PATH": "/bin",
        "HOME": "/root",
        "CELERY_BROKER_URL": "x",
        "LUCID_DATA_DIR": "d",
        "LUCID_TOKEN": "t",
        "LUCID_API_URL": "u",
        "HASH_WORKERS": "2",
        "LUCID_DATADIR": "d",
        "STORAGE_WORKERS": "2",
        "MONGODB_URI": "mongodb://x",
        "RETENTION_DAY": "3",
    }
    assert unknown_settings(env) == [
        "LUCID_DATADIR",
        "MONGODB_URI",
        "RETENTION_DAY",
        "STORAGE_WORKERS",
    ]


def test_load_settings_warns_once_naming_unknown_settings(
    caplog: pytest.LogCaptureFixture,
) -> None:
    env = {"MONGODB_URI": "mongodb://x", "LUCID_SPEED": "fast"}
    with caplog.at_level(logging.WARNING, logger="lucid.settings"):
        load_settings(env)
        load_settings(env)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [
        "ignoring unknown settings: LUCID_SPEED, MONGODB_URI (did you mean MONGODB_URL?)"
    ]


def test_known_settings_alone_warn_nothing(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="lucid.settings"):
        load_settings({"RETENTION_DAYS": "5", "COMPRESS_WORKERS": "2", "PATH": "/bin"})
    assert not caplog.records
