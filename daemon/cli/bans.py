"""Addresses the FTP and SFTP endpoints refuse: ban list|remove."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import click

from daemon.cli.app import App, emit_json, fmt_time, table
from daemon.db import bans as rows
from daemon.errors import NotFound


@dataclass(frozen=True)
class _Listed:
    address: str
    banned_until: datetime
    active: bool
    bans: int  # how many times in a row (each lasts longer)
    reason: str
    node: str | None  # the daemon that banned it
    banned_at: datetime


@click.group("ban")
def ban() -> None:
    """Addresses banned from the FTP and SFTP endpoints: list them, lift a ban."""


@ban.command("list")
@click.option("--all", "show_all", is_flag=True,
              help="Also bans that ended but still count towards a longer next one.")
@click.option("--json", "as_json", is_flag=True,
              help='{"bans": [{address, banned_until, active, bans, reason, node, banned_at}]}')
@click.pass_obj
def ban_list(app: App, show_all: bool, as_json: bool) -> None:
    """Bans in force (every daemon on the database honours them), oldest first."""
    now = app.now()
    remember = timedelta(seconds=app.settings.listeners.bans.remember_seconds)
    with app.transaction() as session:
        found = [_Listed(r.address, r.banned_until, r.banned_until > now, r.bans, r.reason, r.node, r.banned_at)
                 for r in rows.recent_bans(session, now - remember if show_all else now)]
    if as_json:
        emit_json({"bans": found})
        return
    table([[b.address, fmt_time(b.banned_at), fmt_time(b.banned_until), str(b.bans), b.reason] for b in found],
          ["ADDRESS", "SINCE (UTC)", "UNTIL (UTC)", "BANS", "REASON"])


@ban.command("remove")
@click.argument("address")
@click.pass_obj
def ban_remove(app: App, address: str) -> None:
    """Let ADDRESS log in again (running daemons within [listeners.bans] refresh_seconds).

    Its record goes too, so its next ban is a first one again.
    """
    with app.transaction() as session:
        if not rows.remove_ban(session, address):
            raise NotFound(f"{address} is not banned")
    click.echo(f"removed the ban of {address}")
