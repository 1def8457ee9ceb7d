"""The per-process wiring of the core: settings, stores, keys and anchor, built once."""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PublicKey

from lucid.crypto.aead import ChunkContext
from lucid.crypto.keys import ensure_keys, load_ledger_verify_key, load_recipient_public
from lucid.errors import ConfigError, NotFound
from lucid.integrity.anchors import Anchor, make_anchor
from lucid.integrity.ledger import Ledger
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
        ensure_keys(s.keys_path)
        return make_anchor(
            s.anchor_backend,
            ledger_path=s.ledger_path,
            key_dir=s.keys_path,
            url=s.anchoring_url,
            timeout=s.anchor_timeout_s,
            retries=s.anchor_retries,
        )

    @cached_property
    def ledger(self) -> Ledger:
        """The local ledger, opened to read and verify only: no signing key is loaded.

        Appends go through `anchor` in the anchor role, which loads ledger.key at its first
        append; the API serves checkpoints that the anchor side signed.
        """
        s = self.settings
        if s.anchor_backend != "ledger":
            raise NotFound(f"no local ledger: ANCHOR_BACKEND is {s.anchor_backend!r}")
        ensure_keys(s.keys_path)
        return Ledger(s.ledger_path, None, load_ledger_verify_key(s.keys_path))

    @cached_property
    def recipient_public(self) -> X25519PublicKey:
        ensure_keys(self.settings.keys_path)
        return load_recipient_public(self.settings.keys_path)

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
