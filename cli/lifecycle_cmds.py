"""The lifecycle commands: list, start/pause/resume/stop/delete ID, stats [ID].

They are plain click commands; `cli.main` adds `COMMANDS` to the group it runs, so they
attach to that group whether it was imported as `cli.main` or run as `python -m cli.main`.
"""

from __future__ import annotations

import json

import click

from cli.common import JSON_OPTION, api_client, api_options, show


@click.command("list")
@click.option("--state", "states", multiple=True, help="Only sessions in this state (repeatable).")
@click.option("--limit", type=click.IntRange(1, 1000), default=50, show_default=True)
@click.option("--sort", type=click.Choice(["created_at", "-created_at", "updated_at",
              "-updated_at"]), default="-created_at", show_default=True)  # fmt: skip
@click.option("--total", is_flag=True, help="Also count every match (slow with many sessions).")
@JSON_OPTION
@api_options
def list_(
    states: tuple[str, ...],
    limit: int,
    sort: str,
    total: bool,
    as_json: bool,
    api_url: str,
    token: str | None,
) -> None:
    """List sessions, newest first: id, state, chunks, bytes, created."""
    page = api_client(api_url, token).list_sessions(
        state=",".join(states) or None, limit=str(limit), sort=sort, total="true" if total else None
    )
    if as_json:
        click.echo(json.dumps(page, indent=2))
        return
    for s in page["sessions"]:
        click.echo(
            f"{s['session_id']}  {s['state']:9s} {s.get('chunk_count') or 0:>6} chunks "
            f"{s.get('bytes_received') or 0:>14} B  {s.get('created_at')}"
        )
    shown = len(page["sessions"])
    count = f"{shown} of {page['total']}" if "total" in page else str(shown)
    more = "more follow (raise --limit, or the API's cursor)" if page.get("next") else "no more"
    click.echo(f"{count} sessions shown; {more}", err=True)


def _control(action: str, helptext: str) -> click.Command:
    @click.command(action, help=helptext)
    @click.argument("session_id")
    @JSON_OPTION
    @api_options
    def command(session_id: str, as_json: bool, api_url: str, token: str | None) -> None:
        client = api_client(api_url, token)
        doc = (
            client.delete(session_id) if action == "delete" else client.control(session_id, action)
        )
        shown = {k: doc.get(k) for k in ("session_id", "state", "destroyed_at", "destroyed_by")}
        show(doc if as_json else {k: v for k, v in shown.items() if v is not None}, as_json)

    return command


@click.command()
@click.argument("session_id", required=False)
@JSON_OPTION
@api_options
def stats(session_id: str | None, as_json: bool, api_url: str, token: str | None) -> None:
    """A session's statistics, or the deployment's without SESSION_ID."""
    show(api_client(api_url, token).statistics(session_id), as_json)


_CONTROLS = (
    ("start", "Start a CREATED session: it accepts data."),
    ("pause", "Pause an ACTIVE session's recording (no data accepted until resumed)."),
    ("resume", "Resume a PAUSED session's recording."),
    ("stop", "Stop a session: cut its final chunk and seal it (root, then anchor)."),
    ("delete", "Delete a session by crypto-shredding: its key and bytes go, a tombstone "
               "with the anchored root stays. Refused while on legal hold."),
)  # fmt: skip

COMMANDS: tuple[click.Command, ...] = (
    list_,
    *(_control(action, helptext) for action, helptext in _CONTROLS),
    stats,
)
