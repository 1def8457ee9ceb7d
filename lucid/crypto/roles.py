"""Keys by role: which key files each kind of process may hold, and the start-up check.

=========  ==============================  ===========================================
role       private keys it may hold        why
=========  ==============================  ===========================================
api        token.key                       answers requests; verifies the ledger with
                                           ledger.pub, wraps session keys to
                                           recipient.pub; may mint API tokens
ingest     none                            compress / encrypt / hash: encrypts to the
                                           session public key only
seal       none                            builds the Merkle root, runs the reconciler
anchor     ledger.key                      signs ledger entries and checkpoints
restore    recipient.key                   unwraps session keys: decrypts recordings
all        every key                       the single-process demo and the CLI tools
=========  ==============================  ===========================================

Every role may hold every public key (recipient.pub, ledger.pub, token.pub): they give
nothing away. A process may take several roles (`LUCID_ROLE=api,restore`).

Decision: **a process refuses to start** (KeyMaterialError) when its key directory holds
a private key file that none of its roles may hold, whether or not it would read it. A
warning is easy to miss in a log, and a key that sits where a compromised process can
read it is exposed whether the code loads it or not. The check looks at the presence of
the file, not its mode. `lucid up` therefore gives each process its own key directory
(DATA_DIR/role-keys/<roles>/) with copies of the public keys and only the private keys
its roles may hold, and points LUCID_KEY_DIR at it; in a real deployment each host or
container mounts only its role's files. Loaders go through `load_private_for`, which
refuses a key the role may not hold even if the file were there.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterable
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from lucid.crypto.keys import (
    KEY_FILES,
    LEDGER_KEY,
    RECIPIENT_KEY,
    TOKEN_KEY,
    load_ledger_signing_key,
    load_recipient_private,
)
from lucid.errors import ConfigError, DecryptionNotHere, KeyMaterialError
from lucid.settings import ROLES

__all__ = [
    "PRIVATE_KEYS",
    "ROLE_PRIVATE_KEYS",
    "allowed_private",
    "check_role_keys",
    "load_ledger_signing_key_for",
    "load_recipient_private_for",
    "make_role_key_dir",
    "role_dir_name",
]

PRIVATE_KEYS: frozenset[str] = frozenset({RECIPIENT_KEY, LEDGER_KEY, TOKEN_KEY})
ROLE_PRIVATE_KEYS: dict[str, frozenset[str]] = {
    "api": frozenset({TOKEN_KEY}),
    "ingest": frozenset(),
    "seal": frozenset(),
    "anchor": frozenset({LEDGER_KEY}),
    "restore": frozenset({RECIPIENT_KEY}),
    "all": PRIVATE_KEYS,
}
_PUBLIC_FILES = tuple(name for name in KEY_FILES if name not in PRIVATE_KEYS)


def _checked(roles: Iterable[str]) -> frozenset[str]:
    chosen = frozenset(roles)
    unknown = sorted(chosen - set(ROLES))
    if not chosen or unknown:
        raise ConfigError(f"roles: expected some of {', '.join(ROLES)}, got {sorted(chosen)}")
    return chosen


def allowed_private(roles: Iterable[str]) -> frozenset[str]:
    """The private key files that a process with `roles` may hold."""
    allowed: frozenset[str] = frozenset()
    for role in _checked(roles):
        allowed |= ROLE_PRIVATE_KEYS[role]
    return allowed


def _describe(roles: Iterable[str]) -> str:
    return ",".join(sorted(roles))


def check_role_keys(roles: Iterable[str], key_dir: Path) -> None:
    """Refuse to start if `key_dir` holds a private key that none of `roles` may hold."""
    allowed = allowed_private(roles)
    present = sorted(name for name in PRIVATE_KEYS - allowed if (key_dir / name).exists())
    if present:
        raise KeyMaterialError(
            f"role {_describe(roles)} must not hold {', '.join(present)}: expected "
            f"{key_dir} without them, got them present; give this process a key directory "
            "with only its role's files (see lucid.crypto.roles)"
        )


def _require(roles: Iterable[str], name: str) -> None:
    if name in allowed_private(roles):
        return
    if name == RECIPIENT_KEY:
        raise DecryptionNotHere(
            f"role {_describe(roles)} may not load {name}: this server does not decrypt "
            "recordings. Decrypt on your side with `lucid get SESSION_ID --key recipient.key "
            "-o FILE`, which verifies every chunk against the anchored root first"
        )
    raise KeyMaterialError(
        f"role {_describe(roles)} may not load {name}: expected a role holding it "
        f"({', '.join(r for r, keys in ROLE_PRIVATE_KEYS.items() if name in keys)})"
    )


def load_ledger_signing_key_for(roles: Iterable[str], key_dir: Path) -> Ed25519PrivateKey:
    """ledger.key, for a process whose roles may hold it (anchor)."""
    _require(roles, LEDGER_KEY)
    return load_ledger_signing_key(key_dir)


def load_recipient_private_for(roles: Iterable[str], key_dir: Path) -> X25519PrivateKey:
    """recipient.key, for a process whose roles may hold it (restore)."""
    _require(roles, RECIPIENT_KEY)
    return load_recipient_private(key_dir)


def role_dir_name(roles: Iterable[str]) -> str:
    """The directory name of a role set's key directory: `api+restore`."""
    return "+".join(sorted(_checked(roles)))


def make_role_key_dir(master: Path, target_root: Path, roles: Iterable[str]) -> Path:
    """Copy the public keys and the private keys `roles` may hold from `master` into
    `target_root/<roles>/` (0700; files keep their modes); drop any other private key
    left there. Returns the directory to pass as LUCID_KEY_DIR."""
    target = target_root / role_dir_name(roles)
    target.mkdir(parents=True, exist_ok=True, mode=0o700)
    target.chmod(0o700)
    allowed = allowed_private(roles)
    for name in (*_PUBLIC_FILES, *sorted(allowed)):
        source = master / name
        if source.exists():
            shutil.copy2(source, target / name)
    for name in PRIVATE_KEYS - allowed:
        (target / name).unlink(missing_ok=True)
    return target
