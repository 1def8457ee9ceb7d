"""`lucid token create`: issue API bearer tokens signed with the deployment's token key."""

from __future__ import annotations

from pathlib import Path

import click

from cli.common import fail
from lucid.errors import LucidError


def _login_name() -> str:
    import getpass

    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no $USER and no passwd entry (some containers)
        return "unknown"


@click.group()
def token() -> None:
    """Issue API bearer tokens."""


@token.command("create")
@click.option("--tenant", required=True, help="Whose sessions the token may touch.")
@click.option(
    "--scope", required=True, help="Comma-separated scopes: record, read, download, admin."
)
@click.option("--ttl", default="24h", show_default=True, help="Lifetime: 90s, 15m, 24h, 30d.")
@click.option("--subject", default=None, help="Who acts with it (default: cli:$USER).")
@click.option(
    "--key-dir",
    type=click.Path(path_type=Path),
    default=None,
    help="Default: $LUCID_KEY_DIR or DATA_DIR/keys.",
)
def token_create(
    tenant: str, scope: str, ttl: str, subject: str | None, key_dir: Path | None
) -> None:
    """Print a token signed with the deployment's token key (export it as LUCID_TOKEN)."""
    from lucid.crypto.keys import RECIPIENT_PUB, ensure_keys, load_token_signing_key
    from lucid.crypto.tokens import issue_token, parse_ttl, verify_token
    from lucid.settings import load_settings

    try:
        target = key_dir or load_settings().keys_path
        if not (target / RECIPIENT_PUB).exists():
            fail(
                f"no keys in {target}: start the stack (`lucid up`), run `lucid keys init`, "
                "or point LUCID_KEY_DIR / --key-dir at the deployment's keys"
            )
        ensure_keys(target)  # adds the token pair to a key dir made before tokens existed
        signing_key = load_token_signing_key(target)
        signed = issue_token(
            signing_key,
            subject=subject or f"cli:{_login_name()}",
            tenant=tenant,
            scopes=scope,
            ttl=parse_ttl(ttl),
        )
        issued = verify_token(signed, signing_key.public_key())
    except LucidError as exc:
        fail(str(exc))
    click.echo(signed)
    click.echo(
        f"token for {issued.subject}: tenant {issued.tenant}, scopes "
        f"{' '.join(sorted(issued.scopes))}, expires {issued.expires_at.isoformat()}",
        err=True,
    )
