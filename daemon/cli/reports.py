"""Email commands: outbox (every alert and digest, and what became of it)."""

from __future__ import annotations

import click

from daemon.cli.app import App, emit_json, fmt_time, table
from daemon.db import email as db_email


@click.command("outbox")
@click.option("--status", type=click.Choice(db_email.STATUSES), help="Only mails of this status.")
@click.option("--kind", type=click.Choice(["alert", "digest"]), help="Only alerts, or only digests.")
@click.option("--limit", type=click.IntRange(1, 100_000), default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True,
              help="{emails: [{id, kind, merchant, to, subject, status, attempts, last_error, message_id, "
                   "created_at, sent_at}]}")
@click.pass_obj
def outbox(app: App, status: str | None, kind: str | None, limit: int, as_json: bool) -> None:
    """The email outbox, newest first: pending, sent, failed (refused for good), coalesced (held back)."""
    with app.transaction() as session:
        rows = db_email.list_emails(session, status=status, kind=kind, limit=limit)
    if as_json:
        emit_json({"emails": [r.__dict__ for r in rows]})
        return
    table([[str(r.id), r.kind, ", ".join(r.to), r.subject[:72], r.status, str(r.attempts), fmt_time(r.created_at),
            (r.last_error or "")[:60]] for r in rows],
          ["ID", "KIND", "TO", "SUBJECT", "STATUS", "TRIES", "CREATED", "LAST ERROR"])
