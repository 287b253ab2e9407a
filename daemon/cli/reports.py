"""Email commands: outbox (every alert and digest, and what became of it); report send / preview.

The outbox listing is read-only and must start fast: the digest's modules
(and what they import) load only when a ``report`` command runs."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import click

from daemon import exitcodes
from daemon.cli.app import App, emit_json, fmt_time, parse_since, table
from daemon.db import email as db_email
from daemon.errors import UserError


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


@dataclass(frozen=True)
class SentDigest:
    email_id: int
    subject: str
    to: list[str]
    status: str
    attempts: int
    error: str | None
    start: datetime
    end: datetime


@click.group("report")
def report() -> None:
    """Upload-history digests: send one now, or preview it without sending."""


@report.command("send")
@click.option("--merchant", help="Needed when several merchants are configured.")
@click.option("--since", help="Cover from this ISO time (UTC if no zone); default: the end of the last scheduled "
                              "digest, else the last day.")
@click.option("--json", "as_json", is_flag=True,
              help="{digests: [{email_id, subject, to, status, attempts, error, start, end}]}")
@click.pass_obj
def send(app: App, merchant: str | None, since: str | None, as_json: bool) -> None:
    """Write a digest up to now into the outbox and send it now; exit 9 unless every mail was sent.

    The scheduled digest is not moved: it still covers its whole day."""
    from daemon.db.sync import sync_with_config
    from daemon.reports.digest import Digests
    from daemon.reports.outbox import Mailer

    settings = app.settings
    if settings.smtp is None:
        raise UserError("there is no [smtp] in the config, so nothing can be sent; "
                        "`stockdrop report preview` renders a digest without it")
    chosen = settings.merchant(merchant)
    with app.transaction() as session:
        sync_with_config(session, settings, app.now())
    written = Digests(app.sessions, settings).write_now(chosen, since=parse_since(since))
    if not written:
        raise UserError(f"merchant {chosen.name!r} has no report_recipients (nor any source of its): "
                        "nobody to send a digest to")
    mailer = Mailer(app.sessions, settings.smtp, node=settings.node)
    results = []
    for w in written:
        outcome = mailer.send(w.email_id)
        with app.transaction() as session:
            row = db_email.get_row(session, w.email_id)
        error = outcome.error if outcome is not None else row.last_error
        if outcome is None and row.status == db_email.PENDING:
            error = "another sender (the daemon) has it in hand; `stockdrop outbox` shows how it went"
        results.append(SentDigest(w.email_id, w.subject, w.recipients, row.status, row.attempts, error,
                                  w.period.start, w.period.end))
    if as_json:
        emit_json({"digests": results})
    else:
        for r in results:
            click.echo(f"digest {r.email_id} to {', '.join(r.to)}: {r.status}"
                       + (f" ({r.error})" if r.error and r.status != db_email.SENT else ""))
    if any(r.status != db_email.SENT for r in results):
        raise SystemExit(exitcodes.NOT_DELIVERED)


@report.command("preview")
@click.option("--merchant", help="Needed when several merchants are configured.")
@click.option("--source", help="The digest that covers this source (one with report_recipients of its own).")
@click.option("--since", help="Cover from this ISO time (UTC if no zone); default as for `report send`.")
@click.option("--format", "fmt", type=click.Choice(["html", "text"]), required=True)
@click.option("-o", "--output", type=click.Path(dir_okay=False, writable=True), help="Write here (default: stdout).")
@click.pass_obj
def preview(app: App, merchant: str | None, source: str | None, since: str | None, fmt: str,
            output: str | None) -> None:
    """Render the digest that `report send` would write now; nothing is written or sent."""
    from daemon.db.sync import sync_with_config
    from daemon.reports import render
    from daemon.reports.digest import Digests

    settings = app.settings
    chosen = settings.merchant(merchant)
    with app.transaction() as session:
        sync_with_config(session, settings, app.now())
    draft = Digests(app.sessions, settings).preview(chosen, since=parse_since(since), source=source)
    content = render.page(draft.body) if fmt == "html" else render.text(draft.body)
    if output is None:
        click.echo(content, nl=False)
    else:
        Path(output).write_text(content, encoding="utf-8")
    to = ", ".join(draft.group.recipients) or "nobody (no report_recipients)"
    attached = ", ".join(a.filename for a in draft.attachments) or "nothing"
    click.echo(f"# {draft.subject}\n# to {to}; attached: {attached}; nothing sent", err=True)
