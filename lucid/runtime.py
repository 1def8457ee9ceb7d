"""The per-process wiring of the core: settings, stores, keys and anchor, built once."""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

from lucid.crypto.aead import ChunkContext
from lucid.crypto.keys import ensure_keys, load_ledger_verify_key, load_recipient_public
from lucid.crypto.roles import (
    check_role_keys,
    load_ledger_signing_key_for,
    load_recipient_private_for,
)
from lucid.errors import ConfigError, NotFound
from lucid.integrity.anchors import Anchor, make_anchor
from lucid.integrity.ledger import Ledger, SignedLedger
from lucid.integrity.ledger_db import DbLedger
from lucid.pipeline.codecs import Codec, get_codec
from lucid.settings import Settings, load_settings
from lucid.storage.blobs import BlobStore
from lucid.storage.datadir import PRIVATE_UMASK
from lucid.storage.fs import FileBlobStore
from lucid.storage.metadata import MetadataStore

__all__ = ["Runtime", "SessionParams", "get_runtime", "reset_runtime"]


@dataclass(frozen=True)
class SessionParams:
    """What every stage needs to know about a session; fixed when it is created."""

    session_id: str
    chunk_size: int
    compression: str
    compression_level: int
    encryption: str
    session_public: bytes

    @classmethod
    def from_session(cls, doc: dict[str, Any]) -> SessionParams:
        return cls(
            session_id=doc["session_id"],
            chunk_size=int(doc["chunk_size"]),
            compression=doc["compression"],
            compression_level=int(doc["compression_level"]),
            encryption=doc["encryption"],
            session_public=bytes.fromhex(doc["key"]["session_public"]),
        )

    def chunk_context(self, index: int, final: bool) -> ChunkContext:
        """What a chunk's AEAD binds: session, position, final flag, algorithms."""
        return ChunkContext(self.session_id, index, final, self.compression, self.encryption)


@dataclass
class Runtime:
    """Settings plus the adapters built from them; one per process."""

    settings: Settings
    _params: dict[str, SessionParams] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        # Fail at start-up, not at the first request, if this process holds a key its
        # roles must not (lucid.crypto.roles).
        check_role_keys(self.settings.roles, self.settings.keys_path)

    def _ensure_keys(self) -> None:
        """Create missing keys, in the all-in-one role only: a role's key directory is
        provisioned from outside and a missing file is an error, not a new key set."""
        if "all" in self.settings.roles:
            ensure_keys(self.settings.keys_path)

    @cached_property
    def blobs(self) -> BlobStore:
        """The blob backend BLOB_BACKEND names: files under DATA_DIR/blobs, or S3."""
        s = self.settings
        if s.blob_backend == "s3":
            from lucid.storage.s3 import S3BlobStore, s3_client

            secret = s.s3_secret_access_key
            client = s3_client(
                s.s3_endpoint_url,
                access_key_id=s.s3_access_key_id,
                secret_access_key=secret.get_secret_value() if secret else None,
                region=s.s3_region,
                timeout_s=s.s3_timeout_s,
            )
            return S3BlobStore(client, s.s3_bucket or "")
        return FileBlobStore(s.blobs_path)

    @cached_property
    def meta(self) -> MetadataStore:
        s = self.settings
        if not s.mongodb_url:
            raise ConfigError("MONGODB_URL is not set (lucid up sets it for the embedded stack)")
        return MetadataStore.connect(
            s.mongodb_url, s.mongodb_database, timeout_s=s.mongodb_timeout_s
        )

    @cached_property
    def anchor(self) -> Anchor:
        s = self.settings
        if s.anchor_backend == "http":
            return make_anchor("http", url=s.anchoring_url, timeout=s.anchor_timeout_s,
                               retries=s.anchor_retries)  # fmt: skip
        return make_anchor("ledger", ledger=self._open_ledger(signing=True))

    def _open_ledger(self, *, signing: bool) -> SignedLedger:
        s = self.settings
        self._ensure_keys()
        verify_key = load_ledger_verify_key(s.keys_path)
        # The signing key is loaded at the first append, and only in a role that may hold
        # it (anchor): a process that only confirms receipts never reads ledger.key.
        signer = (lambda: load_ledger_signing_key_for(s.roles, s.keys_path)) if signing else None
        if s.ledger_backend == "file":
            return Ledger(s.ledger_path, signer, verify_key)
        return DbLedger(self.meta, signer, verify_key)

    @cached_property
    def ledger(self) -> SignedLedger:
        """The ledger, opened to read and verify only: no signing key is loaded.

        Appends go through `anchor` in the anchor role; the API serves checkpoints that
        the anchor side signed, read from the shared store (LEDGER_BACKEND=db).
        """
        if self.settings.anchor_backend != "ledger":
            raise NotFound(f"no ledger: ANCHOR_BACKEND is {self.settings.anchor_backend!r}")
        return self._open_ledger(signing=False)

    @cached_property
    def recipient_public(self) -> X25519PublicKey:
        self._ensure_keys()
        return load_recipient_public(self.settings.keys_path)

    def recipient_private(self) -> X25519PrivateKey:
        """recipient.key, for a process in the restore role (else KeyMaterialError)."""
        self._ensure_keys()
        return load_recipient_private_for(self.settings.roles, self.settings.keys_path)

    def warm_up(self) -> None:
        """Connect and load keys now, so the first task does not pay for it."""
        self.meta.ping()
        _ = self.recipient_public
        _ = self.blobs  # an S3 client costs ~1 s of imports and service-model loading

    def codec(self, params: SessionParams) -> Codec:
        return get_codec(params.compression, params.compression_level)

    def session_params(self, session_id: str) -> SessionParams:
        """Immutable per-session parameters, cached so stages skip a metadata read."""
        params = self._params.get(session_id)
        if params is None:
            params = SessionParams.from_session(self.meta.get_session(session_id))
            if len(self._params) > 4096:
                self._params.clear()
            self._params[session_id] = params
        return params


_lock = threading.Lock()
_runtime: Runtime | None = None


def get_runtime() -> Runtime:
    """The process-wide runtime, built from the environment on first use."""
    global _runtime
    with _lock:
        if _runtime is None:
            os.umask(PRIVATE_UMASK)  # staging files and blobs hold plaintext: owner only
            _runtime = Runtime(load_settings())
        return _runtime


def reset_runtime(settings: Settings | None = None) -> Runtime:
    """Replace the process-wide runtime (after fork, or with explicit settings)."""
    global _runtime
    with _lock:
        os.umask(PRIVATE_UMASK)
        _runtime = Runtime(settings or load_settings())
        return _runtime
