"""Export commands: export (now, or a dry run), exports (the outbox)."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import click

from daemon import exitcodes
from daemon.cli.app import App, emit_json, fmt_time, table
from daemon.db import exports as db_exports
from daemon.db.markets import get_market
from daemon.db.sync import sync_with_config
from daemon.errors import NotFound

if TYPE_CHECKING:
    from daemon.export.sender import Sent


def _targets(app: App) -> list[object]:
    from daemon.export.service import ExportTarget

    return [ExportTarget(m, market, export) for m, market, export in app.settings.export_targets()]


@click.command("export")
@click.argument("market")
@click.option("--merchant", help="Needed when several merchants are configured.")
@click.option("--full", is_flag=True, help="Every listing, not only those whose quantity moved since the last delivery.")
@click.option("--dry-run", is_flag=True, help="Print the file that would be sent (stdout) and send nothing.")
@click.option("--json", "as_json", is_flag=True, help="{sent: [{export_id, file_name, kind, status, attempts, error}]}")
@click.pass_obj
def export(app: App, market: str, merchant: str | None, full: bool, dry_run: bool, as_json: bool) -> None:
    """Send MARKET its delta now (or its full feed with --full), after any delivery still owed to it."""
    from daemon.export import outbox
    from daemon.export.destinations import destination_for
    from daemon.export.plan import Kind
    from daemon.export.service import Exporter, ExportTarget

    merchant_name = app.settings.merchant(merchant).name
    targets = [t for t in _targets(app) if isinstance(t, ExportTarget)]
    target = next((t for t in targets if t.merchant == merchant_name and t.market == market), None)
    if target is None:
        raise NotFound(f"market {market!r} of {merchant_name!r} has no [merchants.markets.export] in the config")
    kind: Kind = "full" if full else "delta"
    with app.transaction() as session:
        sync_with_config(session, app.settings, app.now())
        record = get_market(session, merchant_name, market)
        if dry_run:
            owed = db_exports.undelivered(session, record.id)
            fmt, content, lines = outbox.preview(session, record, target.settings, kind)
    if dry_run:
        if owed is not None:
            click.echo(f"# export {owed.id} ({owed.file_name}) is owed to {market} first ({owed.status})", err=True)
        click.echo(f"# {kind}: {lines} lines as {fmt} to {destination_for(target.settings).describe()}; "
                   f"nothing sent", err=True)
        sys.stdout.buffer.write(content)
        sys.stdout.flush()
        return
    sent = Exporter(app.sessions, [target], node=app.settings.node).export_now(target.key, kind)
    report_sent(sent, as_json=as_json, label=f"{market}: export", show_kind=True,
                nothing=f"{market}: nothing to send (every listing is at its last delivered quantity)")


def report_sent(sent: list[Sent], *, as_json: bool, label: str, nothing: str, show_kind: bool = False) -> None:
    """What an export run sent, one line each (or JSON); exits NOT_DELIVERED unless all were delivered."""
    if as_json:
        emit_json({"sent": [s.__dict__ for s in sent]})
    elif not sent:
        click.echo(nothing)
    for s in sent if not as_json else []:
        click.echo(f"{label} {s.export_id} {s.kind + ' ' if show_kind else ''}{s.file_name}: {s.status}"
                   + (f" after {s.attempts} tries: {s.error}" if s.error else ""))
    if any(s.status != db_exports.DELIVERED for s in sent):
        raise SystemExit(exitcodes.NOT_DELIVERED)


@click.command("exports")
@click.option("--merchant")
@click.option("--market")
@click.option("--status", type=click.Choice([db_exports.PENDING, db_exports.FAILING, db_exports.DELIVERED]))
@click.option("--limit", type=int, default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True,
              help="{exports: [{id, merchant, market, kind, status, trigger, file_name, destination, lines, size, "
                   "attempts, last_error, created_at, delivered_at}]}")
@click.pass_obj
def exports(app: App, merchant: str | None, market: str | None, status: str | None, limit: int,
            as_json: bool) -> None:
    """The exports outbox, newest first: delivered, owed, failing."""
    with app.transaction() as session:
        rows = db_exports.list_exports(session, merchant=merchant, market=market, status=status, limit=limit)
    if as_json:
        emit_json({"exports": [r.__dict__ for r in rows]})
        return
    table([[str(r.id), r.market, r.kind, r.status, str(r.lines), r.file_name, fmt_time(r.created_at),
            fmt_time(r.delivered_at), (r.last_error or "")[:60]] for r in rows],
          ["ID", "MARKET", "KIND", "STATUS", "LINES", "FILE", "CREATED", "DELIVERED", "LAST ERROR"])
