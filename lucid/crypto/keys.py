"""Key material: the recipient and ledger key files, and per-session wrapped keys.

Files in `key_dir` (PEM; private keys PKCS#8 unencrypted, mode 0600, dir 0700):

    recipient.key / recipient.pub   X25519: session keys are wrapped to this public key
    ledger.key    / ledger.pub      Ed25519: signs ledger entries
    token.key     / token.pub       Ed25519: signs API bearer tokens (lucid.crypto.tokens)

Each session has its own X25519 key pair. Its private half is wrapped to the recipient
public key (ECIES: ephemeral X25519 -> HKDF-SHA256 -> AES-256-GCM, session id bound in
both the KDF info and the AAD) and then forgotten, so ingest workers hold only the
session public key: they can encrypt chunks but never decrypt them.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from lucid.errors import DecryptionError, InvalidInput, KeyMaterialError

__all__ = [
    "KEY_FILES",
    "SessionKeyEnvelope",
    "ensure_keys",
    "init_keys",
    "load_ledger_signing_key",
    "load_ledger_verify_key",
    "load_recipient_private",
    "load_recipient_public",
    "load_token_signing_key",
    "load_token_verify_key",
    "new_session_key",
    "unwrap_session_key",
]

RECIPIENT_KEY, RECIPIENT_PUB = "recipient.key", "recipient.pub"
LEDGER_KEY, LEDGER_PUB = "ledger.key", "ledger.pub"
TOKEN_KEY, TOKEN_PUB = "token.key", "token.pub"
# recipient.pub is written last: ensure_keys treats it as "the set is complete".
KEY_FILES = (LEDGER_KEY, LEDGER_PUB, TOKEN_KEY, TOKEN_PUB, RECIPIENT_KEY, RECIPIENT_PUB)
_WRAP_DOMAIN = b"lucid.session-key.v1\x00"
_RAW = serialization.Encoding.Raw, serialization.PublicFormat.Raw
_WRAPPED_SIZE = 32 + 32 + 16  # ephemeral public || wrapped private || tag


def _write_atomic(path: Path, data: bytes, mode: int) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)  # left by a crash; we hold the directory lock
    # The mode is set by open() itself, so no secret byte ever sits in a readable file.
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        os.fchmod(fd, mode)
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def _dir_lock(key_dir: Path) -> Iterator[None]:
    # Several workers may start at once on a fresh deployment; only one may create keys.
    with open(key_dir / ".lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def _make_dir(key_dir: Path) -> None:
    try:
        key_dir.mkdir(parents=True, mode=0o700)
    except FileExistsError:
        return
    key_dir.chmod(0o700)  # mkdir's mode is filtered by the umask


def _private_pem(key: X25519PrivateKey | Ed25519PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _public_pem(key: X25519PublicKey | Ed25519PublicKey) -> bytes:
    return key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _init_locked(key_dir: Path, overwrite: bool) -> list[Path]:
    paths = [key_dir / name for name in KEY_FILES]
    existing = [p.name for p in paths if p.exists()]
    if existing and not overwrite:
        raise KeyMaterialError(
            f"refusing to overwrite existing key files in {key_dir}: {', '.join(existing)}"
        )
    recipient, ledger = X25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    contents = {
        LEDGER_KEY: (_private_pem(ledger), 0o600),
        LEDGER_PUB: (_public_pem(ledger.public_key()), 0o644),
        **_token_pair(),
        RECIPIENT_KEY: (_private_pem(recipient), 0o600),
        RECIPIENT_PUB: (_public_pem(recipient.public_key()), 0o644),
    }
    for path in paths:
        data, mode = contents[path.name]
        _write_atomic(path, data, mode)
    _fsync_dir(key_dir)
    return paths


def _token_pair() -> dict[str, tuple[bytes, int]]:
    token = Ed25519PrivateKey.generate()
    return {
        TOKEN_KEY: (_private_pem(token), 0o600),
        TOKEN_PUB: (_public_pem(token.public_key()), 0o644),
    }


def init_keys(key_dir: Path, *, overwrite: bool = False) -> list[Path]:
    """Create the recipient, ledger and token key pairs; refuse to replace keys unless told."""
    _make_dir(key_dir)
    with _dir_lock(key_dir):
        return _init_locked(key_dir, overwrite)


def ensure_keys(key_dir: Path) -> None:
    """Create the keys if `recipient.pub` is missing (the token pair if only it is)."""
    if (key_dir / RECIPIENT_PUB).exists() and (key_dir / TOKEN_PUB).exists():
        return
    _make_dir(key_dir)
    with _dir_lock(key_dir):
        if not (key_dir / RECIPIENT_PUB).exists():
            _init_locked(key_dir, overwrite=False)
        elif not (key_dir / TOKEN_PUB).exists():  # a key dir from before tokens existed
            for name, (data, mode) in _token_pair().items():  # token.pub last: "complete"
                _write_atomic(key_dir / name, data, mode)
            _fsync_dir(key_dir)


def _read(key_dir: Path, name: str, *, secret: bool) -> bytes:
    path = key_dir / name
    try:
        info = path.stat()
        if secret and stat.S_IMODE(info.st_mode) & 0o077:
            raise KeyMaterialError(
                f"{path} is readable by group or others: expected mode 0600, "
                f"got {stat.S_IMODE(info.st_mode):04o}; run chmod 600 {path}"
            )
        return path.read_bytes()
    except FileNotFoundError:
        raise KeyMaterialError(
            f"key file {path} does not exist; run `lucid keys init` to create the keys"
        ) from None
    except OSError as exc:
        raise KeyMaterialError(f"cannot read key file {path}: {exc.strerror}") from None


def _load_key(key_dir: Path, name: str, kind: type) -> Any:
    """The key in `key_dir / name`, which must be a `kind`; a private kind's file must be
    0600."""
    path = key_dir / name
    private = issubclass(kind, X25519PrivateKey | Ed25519PrivateKey)
    try:
        data = _read(key_dir, name, secret=private)
        if private:
            key: Any = serialization.load_pem_private_key(data, None)
        else:
            key = serialization.load_pem_public_key(data)
    except (ValueError, TypeError) as exc:
        visibility = "private" if private else "public"
        raise KeyMaterialError(f"{path} is not a valid {visibility} key: {exc}") from None
    if not isinstance(key, kind):
        raise KeyMaterialError(f"{path}: expected a {kind.__name__}, got {type(key).__name__}")
    return key


def load_recipient_public(key_dir: Path) -> X25519PublicKey:
    """The X25519 public key that session keys are wrapped to."""
    key: X25519PublicKey = _load_key(key_dir, RECIPIENT_PUB, X25519PublicKey)
    return key


def load_recipient_private(key_dir: Path) -> X25519PrivateKey:
    """The X25519 private key that unwraps session keys (file must be 0600)."""
    key: X25519PrivateKey = _load_key(key_dir, RECIPIENT_KEY, X25519PrivateKey)
    return key


def load_ledger_signing_key(key_dir: Path) -> Ed25519PrivateKey:
    """The Ed25519 key that signs ledger entries (file must be 0600)."""
    key: Ed25519PrivateKey = _load_key(key_dir, LEDGER_KEY, Ed25519PrivateKey)
    return key


def load_ledger_verify_key(key_dir: Path) -> Ed25519PublicKey:
    """The Ed25519 public key that checks ledger signatures."""
    key: Ed25519PublicKey = _load_key(key_dir, LEDGER_PUB, Ed25519PublicKey)
    return key


def load_token_signing_key(key_dir: Path) -> Ed25519PrivateKey:
    """The Ed25519 key that signs API bearer tokens (file must be 0600)."""
    key: Ed25519PrivateKey = _load_key(key_dir, TOKEN_KEY, Ed25519PrivateKey)
    return key


def load_token_verify_key(key_dir: Path) -> Ed25519PublicKey:
    """The Ed25519 public key that checks API bearer tokens."""
    key: Ed25519PublicKey = _load_key(key_dir, TOKEN_PUB, Ed25519PublicKey)
    return key


@dataclass(frozen=True)
class SessionKeyEnvelope:
    """A session's public key and its private key wrapped to the recipient key."""

    session_public: bytes
    wrapped_private: bytes

    def __post_init__(self) -> None:
        if len(self.session_public) != 32:
            raise InvalidInput(f"session_public: expected 32 bytes, got {len(self.session_public)}")
        if len(self.wrapped_private) != _WRAPPED_SIZE:
            raise InvalidInput(
                f"wrapped_private: expected {_WRAPPED_SIZE} bytes, got {len(self.wrapped_private)}"
            )

    def to_dict(self) -> dict[str, str]:
        """JSON-safe form, both fields lowercase hex."""
        return {
            "session_public": self.session_public.hex(),
            "wrapped_private": self.wrapped_private.hex(),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SessionKeyEnvelope:
        """Inverse of `to_dict()`; bad input raises InvalidInput."""
        try:
            return cls(
                session_public=bytes.fromhex(data["session_public"]),
                wrapped_private=bytes.fromhex(data["wrapped_private"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidInput(
                f"session key envelope: expected two hex fields, got {exc}"
            ) from None


def _wrap_params(
    shared: bytes, ephemeral: bytes, recipient: bytes, session_public: bytes, session_id: str
) -> tuple[bytes, bytes, bytes]:
    sid = session_id.encode()
    context = _WRAP_DOMAIN + len(sid).to_bytes(2, "big") + sid + session_public
    okm = HKDF(
        algorithm=hashes.SHA256(), length=44, salt=ephemeral + recipient, info=context
    ).derive(shared)
    return okm[:32], okm[32:], context


def new_session_key(recipient_pub: X25519PublicKey, session_id: str) -> SessionKeyEnvelope:
    """Make a session key pair and wrap its private half to `recipient_pub`."""
    session = X25519PrivateKey.generate()
    session_public = session.public_key().public_bytes(*_RAW)
    ephemeral = X25519PrivateKey.generate()
    ephemeral_public = ephemeral.public_key().public_bytes(*_RAW)
    key, nonce, context = _wrap_params(
        ephemeral.exchange(recipient_pub),
        ephemeral_public,
        recipient_pub.public_bytes(*_RAW),
        session_public,
        session_id,
    )
    secret = session.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    wrapped = AESGCM(key).encrypt(nonce, secret, context)
    return SessionKeyEnvelope(
        session_public=session_public, wrapped_private=ephemeral_public + wrapped
    )


def unwrap_session_key(
    envelope: SessionKeyEnvelope, recipient_private: X25519PrivateKey, session_id: str
) -> X25519PrivateKey:
    """Recover the session private key; wrong key, session or bytes raise DecryptionError."""
    ephemeral_public, wrapped = envelope.wrapped_private[:32], envelope.wrapped_private[32:]
    try:
        shared = recipient_private.exchange(X25519PublicKey.from_public_bytes(ephemeral_public))
        key, nonce, context = _wrap_params(
            shared,
            ephemeral_public,
            recipient_private.public_key().public_bytes(*_RAW),
            envelope.session_public,
            session_id,
        )
        session = X25519PrivateKey.from_private_bytes(AESGCM(key).decrypt(nonce, wrapped, context))
    except (InvalidTag, ValueError):
        raise DecryptionError(
            "cannot unwrap the session key: wrong recipient key, session or tampered envelope",
            session_id=session_id,
        ) from None
    got = session.public_key().public_bytes(*_RAW)
    if got != envelope.session_public:
        raise DecryptionError(
            f"unwrapped key: expected public key {envelope.session_public.hex()}, got {got.hex()}",
            session_id=session_id,
        )
    return session
