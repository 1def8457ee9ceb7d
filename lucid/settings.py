"""All configuration in one validated object, read from environment variables.

Names follow the seed documents where they exist (CHUNK_SIZE_MB, COMPRESSION_LEVEL,
ENCRYPTION_ALGORITHM, MONGODB_URL, REDIS_URL, BLOCKCHAIN_ANCHORING_URL, ...). A bad value
fails at start-up with a ConfigError naming the variable, the value and what is allowed.
"""

from __future__ import annotations

import difflib
import logging
import os
import re
from collections.abc import Mapping
from functools import cached_property
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from lucid.errors import ConfigError

log = logging.getLogger(__name__)

STAGES: tuple[str, ...] = ("compress", "encrypt", "hash", "merkle", "anchor")
# What a process is for, and so which keys it may hold (lucid.crypto.roles).
ROLES: tuple[str, ...] = ("api", "ingest", "seal", "anchor", "restore", "all")
COMPRESSION_LEVELS: dict[str, tuple[int, int]] = {"zstd": (1, 22), "gzip": (0, 9), "none": (0, 0)}
MIB = 1024 * 1024
# Read outside Settings (by the CLI), so not unknown even though no field has them.
OTHER_KNOWN = frozenset({"LUCID_API_URL", "LUCID_TOKEN"})
_TENANT_DAYS = re.compile(r"^([A-Za-z0-9][A-Za-z0-9_.-]{0,63})=(\d+)$")
# A queue name part: safe as a Redis key, an AMQP queue/exchange name and a KEDA listName.
_QUEUE_PREFIX = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")


class Settings(BaseSettings):
    """Validated settings; build with `load_settings()` to get friendly errors."""

    model_config = SettingsConfigDict(extra="ignore", frozen=True, populate_by_name=True)

    chunk_size_mb: float = Field(10.0, alias="CHUNK_SIZE_MB", gt=0, le=256)
    compression_algorithm: Literal["zstd", "gzip", "none"] = Field(
        "zstd", alias="COMPRESSION_ALGORITHM"
    )
    compression_level: int = Field(6, alias="COMPRESSION_LEVEL")
    encryption_algorithm: Literal["AES-256-GCM", "XChaCha20-Poly1305"] = Field(
        "AES-256-GCM", alias="ENCRYPTION_ALGORITHM"
    )

    compress_workers: int = Field(4, alias="COMPRESS_WORKERS", ge=1, le=256)
    encrypt_workers: int = Field(4, alias="ENCRYPT_WORKERS", ge=1, le=256)
    hash_workers: int = Field(2, alias="HASH_WORKERS", ge=1, le=256)
    merkle_workers: int = Field(2, alias="MERKLE_WORKERS", ge=1, le=256)
    anchor_workers: int = Field(1, alias="ANCHOR_WORKERS", ge=1, le=256)
    worker_profile: Literal["seeds", "cores"] = Field("cores", alias="WORKER_PROFILE")

    data_dir: Path = Field(Path("./lucid-data"), alias="LUCID_DATA_DIR")
    key_dir: Path | None = Field(None, alias="LUCID_KEY_DIR")
    redis_url: str | None = Field(None, alias="REDIS_URL")
    broker_url: str | None = Field(None, alias="BROKER_URL")
    mongodb_url: str | None = Field(None, alias="MONGODB_URL")
    mongodb_database: str = Field("lucid", alias="MONGODB_DATABASE")
    # Names this deployment's queues, exchanges and counters, so two deployments sharing one
    # broker (a Redis db, a RabbitMQ vhost) never take each other's tasks. Empty: bare names.
    queue_prefix: str = Field("", alias="QUEUE_PREFIX")
    # Bounds on every call to a dependency, so a dead or hung server fails a request in
    # seconds (503) instead of holding it: MongoDB server selection and socket reads; Redis
    # and broker connects, socket reads and publish retries; each /health check.
    mongodb_timeout_s: float = Field(5.0, alias="MONGODB_TIMEOUT_SECONDS", gt=0, le=300)
    broker_timeout_s: float = Field(3.0, alias="BROKER_TIMEOUT_SECONDS", gt=0, le=300)
    health_timeout_s: float = Field(1.5, alias="HEALTH_TIMEOUT_SECONDS", gt=0, le=10)

    # Where blobs live: files under DATA_DIR/blobs, or a bucket of an S3-compatible server.
    # Without S3_ACCESS_KEY_ID boto3 finds credentials itself (AWS_ACCESS_KEY_ID, ~/.aws).
    blob_backend: Literal["fs", "s3"] = Field("fs", alias="BLOB_BACKEND")
    s3_endpoint_url: str | None = Field(None, alias="S3_ENDPOINT_URL")
    s3_bucket: str | None = Field(None, alias="S3_BUCKET")
    s3_access_key_id: str | None = Field(None, alias="S3_ACCESS_KEY_ID")
    s3_secret_access_key: SecretStr | None = Field(None, alias="S3_SECRET_ACCESS_KEY")
    s3_region: str = Field("us-east-1", alias="S3_REGION")
    s3_timeout_s: float = Field(10.0, alias="S3_TIMEOUT_SECONDS", gt=0, le=300)

    anchor_backend: Literal["ledger", "http"] = Field("ledger", alias="ANCHOR_BACKEND")
    anchoring_url: str | None = Field(None, alias="BLOCKCHAIN_ANCHORING_URL")
    anchor_timeout_s: float = Field(10.0, alias="ANCHOR_TIMEOUT_SECONDS", gt=0)
    anchor_retries: int = Field(3, alias="ANCHOR_RETRY_COUNT", ge=0, le=20)
    # Where the signed ledger lives: "db" (the shared metadata store, seen by every host)
    # or "file" (a JSON Lines file under DATA_DIR: one host only).
    ledger_backend: Literal["db", "file"] = Field("db", alias="LEDGER_BACKEND")
    # The roles of this process, comma-separated (api, ingest, seal, anchor, restore, or
    # all): each loads only its keys and refuses to start holding a private key it must
    # not (lucid.crypto.roles). `lucid up` sets it per process.
    role: str = Field("all", alias="LUCID_ROLE")
    # `lucid up` only: the API process also takes the restore role (server-side download).
    # False: no server holds recipient.key; recordings are read with `lucid get --key`.
    api_decrypts: bool = Field(True, alias="API_DECRYPTS")

    max_recording_mb: float = Field(16384.0, alias="MAX_RECORDING_MB", gt=0)
    task_soft_time_limit_s: int = Field(300, alias="TASK_SOFT_TIME_LIMIT", ge=1)
    task_time_limit_s: int = Field(360, alias="TASK_TIME_LIMIT", ge=2)
    visibility_timeout_s: int = Field(900, alias="VISIBILITY_TIMEOUT", ge=3)
    task_max_retries: int = Field(5, alias="TASK_MAX_RETRIES", ge=0, le=50)
    redelivery_cap: int = Field(5, alias="REDELIVERY_CAP", ge=1, le=100)
    # The reconciler re-enqueues work idle this long (a chunk or seal committed while the
    # broker was down); a duplicate of work still queued is cheap, since FIFO runs it second.
    reconcile_after_s: float = Field(60.0, alias="RECONCILE_AFTER_S", gt=0, le=86400)
    reconcile_interval_s: float = Field(30.0, alias="RECONCILE_INTERVAL_S", gt=0, le=3600)

    retention_days: int = Field(30, alias="RETENTION_DAYS", ge=1, le=36500)
    retention_days_by_tenant: dict[str, int] = Field(
        default_factory=dict, alias="RETENTION_DAYS_BY_TENANT"
    )
    abandoned_after_h: float = Field(24.0, alias="ABANDONED_AFTER_H", gt=0, le=24 * 365)
    max_concurrent_sessions: int = Field(100, alias="MAX_CONCURRENT_SESSIONS", ge=1, le=1_000_000)
    # How often the end-of-life sweep runs (tasks/lifecycle.py).
    retention_sweep_interval_s: float = Field(
        3600.0, alias="RETENTION_SWEEP_INTERVAL_S", gt=0, le=86400
    )

    @field_validator("retention_days_by_tenant", mode="before")
    @classmethod
    def _parse_tenant_days(cls, value: object) -> object:
        """Parse `acme=90,beta=7` into {"acme": 90, "beta": 7}; each value 1..36500 days."""
        if not isinstance(value, str):
            return value
        parsed: dict[str, int] = {}
        for item in filter(None, (part.strip() for part in value.split(","))):
            match = _TENANT_DAYS.match(item)
            if match is None or not 1 <= int(match[2]) <= 36500:
                raise ValueError(f"expected tenant=days with days 1..36500, got {item!r}")
            if match[1] in parsed:
                raise ValueError(f"tenant {match[1]!r} is given twice")
            parsed[match[1]] = int(match[2])
        return parsed

    @field_validator("role")
    @classmethod
    def _check_roles(cls, value: str) -> str:
        """`api,restore`: comma-separated, each one of ROLES; stored sorted."""
        names = {part.strip() for part in value.split(",")} - {""}
        unknown = sorted(names - set(ROLES))
        if not names or unknown:
            raise ValueError(f"expected roles from {', '.join(ROLES)}, got {value!r}")
        return ",".join(sorted(names))

    @property
    def roles(self) -> frozenset[str]:
        """The roles of this process (LUCID_ROLE)."""
        return frozenset(self.role.split(","))

    @field_validator("queue_prefix")
    @classmethod
    def _check_queue_prefix(cls, value: str) -> str:
        if value and not _QUEUE_PREFIX.match(value):
            raise ValueError(
                "expected 1-32 of a-z, 0-9, '_' or '-' starting with a letter or digit, "
                f"got {value!r}"
            )
        return value

    @field_validator("chunk_size_mb")
    @classmethod
    def _chunk_at_least_4k(cls, value: float) -> float:
        if value * MIB < 4096:
            raise ValueError("must be at least 4 KiB (0.00390625)")
        return value

    @model_validator(mode="after")
    def _check_cross_field(self) -> Settings:
        low, high = COMPRESSION_LEVELS[self.compression_algorithm]
        if "compression_level" not in self.model_fields_set:
            # The default level (6) is zstd's and gzip's; "none" has only level 0.
            self.__dict__["compression_level"] = min(max(self.compression_level, low), high)
        if not low <= self.compression_level <= high:
            raise ValueError(
                f"COMPRESSION_LEVEL={self.compression_level} is not allowed for "
                f"{self.compression_algorithm}: allowed {low}..{high}"
            )
        if not self.task_soft_time_limit_s < self.task_time_limit_s < self.visibility_timeout_s:
            raise ValueError(
                "TASK_SOFT_TIME_LIMIT < TASK_TIME_LIMIT < VISIBILITY_TIMEOUT must hold, got "
                f"{self.task_soft_time_limit_s}, {self.task_time_limit_s}, "
                f"{self.visibility_timeout_s}"
            )
        if self.blob_backend == "s3":
            missing = [
                name
                for name, value in (
                    ("S3_ENDPOINT_URL", self.s3_endpoint_url),
                    ("S3_BUCKET", self.s3_bucket),
                )
                if not value
            ]
            if missing:
                raise ValueError(f"BLOB_BACKEND=s3 needs {' and '.join(missing)}")
            if not (self.s3_endpoint_url or "").startswith(("http://", "https://")):
                raise ValueError(
                    f"S3_ENDPOINT_URL: expected an http:// or https:// URL, "
                    f"got {self.s3_endpoint_url!r}"
                )
            if (self.s3_access_key_id is None) != (self.s3_secret_access_key is None):
                raise ValueError("S3_ACCESS_KEY_ID and S3_SECRET_ACCESS_KEY go together")
        if self.anchor_backend == "http" and not self.anchoring_url:
            raise ValueError("ANCHOR_BACKEND=http needs BLOCKCHAIN_ANCHORING_URL")
        return self

    @cached_property
    def chunk_size(self) -> int:
        """Chunk size in bytes."""
        return int(self.chunk_size_mb * MIB)

    def retention_days_for(self, tenant: str) -> int:
        """How many days a tenant's sessions are kept (its override, else RETENTION_DAYS)."""
        return self.retention_days_by_tenant.get(tenant, self.retention_days)

    @property
    def keys_path(self) -> Path:
        """Directory of the key files (default: DATA_DIR/keys)."""
        return self.key_dir if self.key_dir is not None else self.data_dir / "keys"

    @property
    def blobs_path(self) -> Path:
        return self.data_dir / "blobs"

    @property
    def ledger_path(self) -> Path:
        return self.data_dir / "ledger" / "ledger.jsonl"

    def queue_name(self, stage: str) -> str:
        """The broker queue (and, on Redis, the list key) of one stage: `<prefix>.<stage>`."""
        if stage not in STAGES:
            raise ConfigError(f"unknown stage {stage!r}; allowed: {', '.join(STAGES)}")
        return f"{self.queue_prefix}.{stage}" if self.queue_prefix else stage

    def prefixed(self, name: str) -> str:
        """Any other broker-wide name (exchange, counter key) of this deployment."""
        return f"{self.queue_prefix}.{name}" if self.queue_prefix else name

    def workers_for(self, stage: str) -> int:
        """Worker concurrency of one stage queue.

        An explicit <STAGE>_WORKERS wins. Otherwise the "cores" profile (the default) fits
        the processes to the machine: compress one per core, encrypt and hash one per two
        cores (each does a tenth of compress's work per byte), merkle and anchor one; the
        "seeds" profile gives the seeds' counts (compress 4, encrypt 4, hash 2, merkle 2,
        anchor 1). On 2 cores the seeds' 13 pool processes measured ~25 % more stack
        CPU per byte than the cores' 6 (docs/benchmarks/efficiency.md).
        """
        if stage not in STAGES:
            raise ConfigError(f"unknown stage {stage!r}; allowed: {', '.join(STAGES)}")
        field = f"{stage}_workers"
        if self.worker_profile == "cores" and field not in self.model_fields_set:
            cores = os.cpu_count() or 1
            return {
                "compress": cores,
                "encrypt": max(1, cores // 2),
                "hash": max(1, cores // 2),
            }.get(stage, 1)
        return int(getattr(self, field))


def _alias_of(field: str) -> str:
    info = Settings.model_fields.get(field)
    return (info.alias if info and info.alias else field.upper()) if field else "settings"


def _known_names() -> frozenset[str]:
    return frozenset(f.alias for f in Settings.model_fields.values() if f.alias) | OTHER_KNOWN


def unknown_settings(environ: Mapping[str, str]) -> list[str]:
    """Variables that look like Lucid settings but are not: `LUCID_*`, `*_WORKERS`, and
    near-misses of a known name (MONGODB_URI for MONGODB_URL), sorted."""
    known = _known_names()
    suspects = []
    for name in environ:
        if name in known:
            continue
        if (
            name.startswith("LUCID_")
            or name.endswith("_WORKERS")
            or difflib.get_close_matches(name, known, n=1, cutoff=0.85)
        ):
            suspects.append(name)
    return sorted(suspects)


def describe_unknown(names: list[str]) -> str:
    """One line naming each unknown variable, with the known name it is closest to."""
    known = sorted(_known_names())
    parts = []
    for name in names:
        close = difflib.get_close_matches(name, known, n=1, cutoff=0.8)
        parts.append(f"{name} (did you mean {close[0]}?)" if close else name)
    return "ignoring unknown settings: " + ", ".join(parts)


_warned: set[frozenset[str]] = set()


def load_settings(environ: dict[str, str] | None = None) -> Settings:
    """Read and validate settings from `environ` (default: the process environment).

    Variables that look like Lucid's but are unknown are named in one warning (logged
    once per process for the same set), instead of being silently ignored.
    """
    env = dict(os.environ if environ is None else environ)
    known = _known_names()
    unknown = unknown_settings(env)
    if unknown and frozenset(unknown) not in _warned:
        _warned.add(frozenset(unknown))
        log.warning(describe_unknown(unknown))
    values = {k: v for k, v in env.items() if k in known and v != ""}
    try:
        return Settings.model_validate(values)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            loc = err.get("loc") or ()
            name = _alias_of(str(loc[0])) if loc else "settings"
            shown = values.get(name, err.get("input"))
            msg = err.get("msg", "invalid").removeprefix("Value error, ")
            if loc:
                problems.append(f"{name}={shown!r}: {msg}")
            else:
                problems.append(msg)
        raise ConfigError("invalid configuration: " + "; ".join(problems)) from None
