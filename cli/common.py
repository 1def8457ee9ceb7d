"""What many `lucid` commands share: the API and token options, the client, and output."""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from cli.auth import default_token
from cli.client import Client, default_api_url

API_OPTION = click.option(
    "--api", "api_url", default=default_api_url, show_default="$LUCID_API_URL or http://127.0.0.1:8087",
    help="Base URL of the session API.",
)  # fmt: skip


TOKEN_OPTION = click.option(
    "--token", "token", default=None, metavar="JWT",
    help="Bearer token. Default: $LUCID_TOKEN, else the admin token `lucid up` keeps in "
    "$LUCID_DATA_DIR/admin.token (default lucid-data/).",
)  # fmt: skip

_F = TypeVar("_F", bound=Callable[..., Any])


def api_options(f: _F) -> _F:
    """`--api` and `--token`: every command that talks to the API takes both."""
    return API_OPTION(TOKEN_OPTION(f))


# A file that must exist: a key, a kept checkpoint, a recording.
EXISTING_FILE = click.Path(exists=True, dir_okay=False, path_type=Path)


def checkpoint_option(help: str) -> Callable[[_F], _F]:
    """`--checkpoint FILE`: a ledger checkpoint kept earlier (`lucid checkpoint`)."""
    return click.option(
        "--checkpoint", "checkpoint_file", type=EXISTING_FILE, default=None, help=help
    )


JSON_OPTION = click.option("--json", "as_json", is_flag=True, help="Print JSON on stdout.")


def api_client(api_url: str, token: str | None, **options: Any) -> Client:
    """A client for `api_url` sending `--token`, $LUCID_TOKEN or the stack's admin token."""
    return Client(api_url, token=default_token(token), **options)


def fail(message: str, code: int = 1) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def say(message: str) -> None:
    """A line on stderr that never fails: after SIGHUP the terminal may be gone."""
    with contextlib.suppress(OSError):
        click.echo(message, err=True)


def show(obj: dict[str, Any], as_json: bool) -> None:
    """`obj` as one JSON object, or as `key value` lines."""
    if as_json:
        click.echo(json.dumps(obj, indent=2, sort_keys=False))
        return
    for key, value in obj.items():
        if isinstance(value, dict | list):
            value = json.dumps(value)
        click.echo(f"{key:14s} {value}")
