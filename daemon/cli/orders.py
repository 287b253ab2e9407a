"""Order commands: orders (list), orders import, orders cancel, orders import-cancellations;
orders export (order files to a warehouse now), orders import-statuses (its status file)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from daemon import exitcodes
from daemon.cli.app import App, emit_json, fmt_time, table
from daemon.cli.exports import report_sent
from daemon.cli.ingest import open_pipeline, take_file
from daemon.cli.markets import print_row_errors, row_errors_json, synced
from daemon.db.markets import get_market
from daemon.db.orders import OrderView, cancel_order, list_orders
from daemon.errors import NotFound, UserError
from daemon.inventory.uploads import UploadStatus

if TYPE_CHECKING:
    from daemon.ingest.apply_market import CancellationFileResult, OrderFileResult
    from daemon.ingest.apply_status import StatusFileResult
    from daemon.ingest.outcomes import Outcome


@click.group(invoke_without_command=True)
@click.option("--market", help="Only this market.")
@click.option("--merchant", help="Only this merchant.")
@click.option("--status", type=click.Choice(["open", "cancelled", "shipped", "oversold", "error", "unconfirmed"]),
              help="Only these lines (error, unconfirmed: what a warehouse said, or did not).")
@click.option("--limit", type=click.IntRange(1, 100_000), default=1000, show_default=True)
@click.option("--json", "as_json", is_flag=True,
              help='{"orders": [{merchant, market, order_id, line_id, sku, quantity, status, shortfall, '
                   'ordered_at, imported_at, restocked, cancel_reason, warehouse, fulfilment, sends, '
                   'tracking_number, shipping_service, fulfilment_message}]}')
@click.pass_context
def orders(ctx: click.Context, market: str | None, merchant: str | None, status: str | None, limit: int,
           as_json: bool) -> None:
    """Imported order lines, newest first."""
    if ctx.invoked_subcommand is not None:
        return
    app: App = ctx.obj
    with synced(app) as session:
        rows = list_orders(session, merchant=merchant, market=market, status=status, limit=limit)
    if as_json:
        emit_json({"orders": rows})
        return
    table([[fmt_time(r.ordered_at), r.market, r.order_id, r.line_id, r.sku or "-", str(r.quantity), r.status,
            str(r.shortfall) if r.shortfall else "", _fulfilment(r), r.cancel_reason or ""] for r in rows],
          ["ORDERED (UTC)", "MARKET", "ORDER", "LINE", "SKU", "QTY", "STATUS", "OVERSOLD", "WAREHOUSE",
           "CANCELLATION"])


def _fulfilment(r: OrderView) -> str:
    """What the warehouse was sent and said: "wh: sent 2x", "wh: shipped 1Z99 (UPS)", "wh: error: ..."."""
    if r.warehouse is None:
        return ""
    if r.fulfilment == "open":
        said = f"sent {r.sends}x, not confirmed" if r.sends else "due"
    elif r.fulfilment in ("shipped", "complete"):
        said = " ".join(x for x in (r.fulfilment, r.tracking_number,
                                    f"({r.shipping_service})" if r.shipping_service else None) if x)
    elif r.fulfilment in ("error", "unconfirmed"):
        said = f"{r.fulfilment}: {r.fulfilment_message or ''}"[:80]
    else:
        said = r.fulfilment or ""
    return f"{r.warehouse}: {said}"


def _take_market_file(app: App, file: Path, market: str, merchant: str | None, kind: str) -> Outcome:
    """A market's file through the pipeline, as if dropped in its folder, and in the history.

    Order lines are applied once by (market, order, line): a file sent again
    says which of its lines were imported before.
    """
    merchant_name = app.settings.merchant(merchant).name
    pipeline = open_pipeline(app)
    inbox = pipeline.book.market_by_name(merchant_name, market)
    if inbox is None:
        with app.transaction() as session:
            get_market(session, merchant_name, market)  # names the markets there are
        raise NotFound(f"no market named {market!r} for merchant {merchant_name!r}")
    outcome = take_file(pipeline, file, staging=inbox.staging, market_id=inbox.id, kind=kind)
    if outcome.status == UploadStatus.REJECTED and outcome.detail is None:
        # Rejected as a whole (no header, binary, a column missing): one line, exit 7.
        reason = (outcome.message or "").removeprefix(f"{file.name}: ")
        click.echo(f"stockdrop: {file.name} rejected (upload {outcome.upload_id}): {reason}", err=True)
        raise SystemExit(exitcodes.REJECTED)
    return outcome


@orders.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--market", required=True, help="The market the orders come from.")
@click.option("--merchant", help="Needed when several merchants are configured.")
@click.option("--json", "as_json", is_flag=True,
              help="{market, format, rows, imported, skipped, errors, oversold, row_errors, lines}")
@click.pass_obj
def orders_import(app: App, file: Path, market: str, merchant: str | None, as_json: bool) -> None:
    """Import an order file (generic CSV or Amazon order report). Lines already
    imported are skipped. Exits 7 when the file is rejected."""
    from daemon.ingest.apply_market import OrderFileResult

    outcome = _take_market_file(app, file, market, merchant, "orders")
    assert isinstance(outcome.detail, OrderFileResult)
    _print_orders(outcome.detail, as_json)
    if outcome.status == UploadStatus.REJECTED:
        raise SystemExit(exitcodes.REJECTED)


def _print_orders(result: OrderFileResult, as_json: bool) -> None:
    if as_json:
        emit_json({"market": result.market, "format": result.format, "rows": result.rows,
                   "imported": result.imported, "skipped": result.skipped, "errors": result.errors,
                   "oversold": result.oversold, "row_errors": row_errors_json(result.row_errors),
                   "lines": result.lines})
        return
    click.echo(f"{result.market}: rows {result.rows}, imported {result.imported}, skipped (already imported) "
               f"{result.skipped}, oversold {result.oversold}, errors {result.errors}")
    for line in result.lines:
        if line.shortfall:
            click.echo(f"  oversold: order {line.order_id} line {line.line_id} {line.sku}: "
                       f"{line.shortfall} of {line.quantity} were in no source")
    print_row_errors(result.row_errors)


@orders.command("cancel")
@click.argument("order_id")
@click.option("--line", "line_id", help="Only this line (default: every line of the order).")
@click.option("--market", required=True, help="The market of the order.")
@click.option("--merchant", help="Needed when several merchants are configured.")
@click.option("--restock/--no-restock", default=None,
              help="Return the units to stock or not. Required: there is no default guess.")
@click.option("--json", "as_json", is_flag=True,
              help="{market, order_id, lines: [{order_id, line_id, sku, status, restocked, refused, returned, reason}]}")
@click.pass_obj
def orders_cancel(app: App, order_id: str, line_id: str | None, market: str, merchant: str | None,
                  restock: bool | None, as_json: bool) -> None:
    """Cancel ORDER_ID (or one line of it) in Stockdrop."""
    if restock is None:
        raise UserError("choose --restock or --no-restock: a cancellation made in Stockdrop is never guessed")
    merchant_name = app.settings.merchant(merchant).name
    with synced(app) as session:
        record = get_market(session, merchant_name, market)
        now = app.now()
        results = cancel_order(session, record, order_id, line_id, origin="stockdrop", requested=restock,
                               cancelled_at=now, now=now, actor="cli")
    if as_json:
        emit_json({"market": market, "order_id": order_id, "lines": results})
        return
    for r in results:
        returned = ", ".join(f"{x['units']} to {x['source']}" for x in r.returned) or "nothing returned"
        click.echo(f"order {r.order_id} line {r.line_id} {r.sku or '-'}: {r.status}; {returned}; {r.reason}")


@orders.command("import-cancellations")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--market", required=True, help="The market the cancellations come from.")
@click.option("--merchant", help="Needed when several merchants are configured.")
@click.option("--json", "as_json", is_flag=True,
              help="{market, rows, cancelled, already_cancelled, recorded_ahead, restocked, refused, errors, "
                   "row_errors, lines}")
@click.pass_obj
def orders_import_cancellations(app: App, file: Path, market: str, merchant: str | None, as_json: bool) -> None:
    """Apply a cancellation file (order_id, line_id, cancelled_at, origin[, restock]).
    Exits 7 when the file is rejected."""
    from daemon.ingest.apply_market import CancellationFileResult

    outcome = _take_market_file(app, file, market, merchant, "cancellations")
    assert isinstance(outcome.detail, CancellationFileResult)
    _print_cancellations(outcome.detail, as_json)
    if outcome.status == UploadStatus.REJECTED:
        raise SystemExit(exitcodes.REJECTED)


def _print_cancellations(result: CancellationFileResult, as_json: bool) -> None:
    if as_json:
        emit_json({"market": result.market, "rows": result.rows, "cancelled": result.cancelled,
                   "already_cancelled": result.already_cancelled, "recorded_ahead": result.recorded_ahead,
                   "restocked": result.restocked, "refused": result.refused, "errors": result.errors,
                   "row_errors": row_errors_json(result.row_errors), "lines": result.lines})
        return
    click.echo(f"{result.market}: rows {result.rows}, cancelled {result.cancelled}, restocked {result.restocked}, "
               f"restock refused {result.refused}, already cancelled {result.already_cancelled}, "
               f"errors {result.errors}")
    for r in result.lines:
        if r.refused:
            click.echo(f"  order {r.order_id} line {r.line_id}: {r.reason}")
    print_row_errors(result.row_errors)


@orders.command("export")
@click.argument("source")
@click.option("--merchant", help="Needed when several merchants are configured.")
@click.option("--dry-run", is_flag=True, help="Print the order file that would be sent (stdout) and send nothing.")
@click.option("--json", "as_json", is_flag=True, help="{sent: [{export_id, file_name, kind, status, attempts, error}]}")
@click.pass_obj
def orders_export(app: App, source: str, merchant: str | None, dry_run: bool, as_json: bool) -> None:
    """Send warehouse SOURCE its open order lines now, after any order file still owed to it.

    Exits 9 when a delivery did not succeed (it stays owed and is retried).
    """
    from daemon.db.sync import sync_with_config
    from daemon.export.destinations import destination_for
    from daemon.export.orders import OrderExporter, OrdersTarget

    merchant_name = app.settings.merchant(merchant).name
    target = next((OrdersTarget(m, s, e) for m, s, e in app.settings.orders_export_targets()
                   if m == merchant_name and s == source), None)
    if target is None:
        raise NotFound(f"source {source!r} of {merchant_name!r} has no [merchants.sources.orders_export] in the config")
    with app.transaction() as session:
        sync_with_config(session, app.settings, app.now())
    exporter = OrderExporter(app.sessions, [target], node=app.settings.node, clock=app.now)
    if dry_run:
        preview = exporter.preview(target.key)
        if preview.owed is not None:
            click.echo(f"# order file {preview.owed.id} ({preview.owed.file_name}) is owed to {source} first "
                       f"({preview.owed.status})", err=True)
        flagged = f"; {preview.flagged} line(s) would be flagged unconfirmed" if preview.flagged else ""
        click.echo(f"# {preview.lines} line(s) as {preview.format} to "
                   f"{destination_for(target.settings).describe()}{flagged}; nothing sent", err=True)
        if preview.lines:
            sys.stdout.buffer.write(preview.content)
            sys.stdout.flush()
        return
    sent = exporter.export_now(target.key)
    report_sent(sent, as_json=as_json, label=f"{source}: order file",
                nothing=f"{source}: nothing to send (no open order line is waiting for this warehouse)")


@orders.command("import-statuses")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--source", required=True, help="The warehouse the status file comes from.")
@click.option("--merchant", help="Needed when several merchants are configured.")
@click.option("--json", "as_json", is_flag=True,
              help="{source, rows, applied, unchanged, shipped, cancelled, restocked, errors, row_errors, lines}")
@click.pass_obj
def orders_import_statuses(app: App, file: Path, source: str, merchant: str | None, as_json: bool) -> None:
    """Apply a warehouse's status file (OrderId, Status, Tracking Number, Shipping Service),
    as if it had arrived in its statuses/inbox. Exits 7 when the file is rejected."""
    from daemon.ingest.apply_status import StatusFileResult

    merchant_name = app.settings.merchant(merchant).name
    pipeline = open_pipeline(app)
    info = pipeline.book.by_name(merchant_name, source)
    if info is None or info.statuses is None:
        raise NotFound(f"source {source!r} of {merchant_name!r} has no [merchants.sources.orders_export]: "
                       "it is sent no orders, so it sends no status files")
    outcome = take_file(pipeline, file, staging=info.statuses / ".staging", source_id=info.id, kind="statuses")
    if outcome.status == UploadStatus.REJECTED and outcome.detail is None:
        reason = (outcome.message or "").removeprefix(f"{file.name}: ")
        click.echo(f"stockdrop: {file.name} rejected (upload {outcome.upload_id}): {reason}", err=True)
        raise SystemExit(exitcodes.REJECTED)
    assert isinstance(outcome.detail, StatusFileResult)
    _print_statuses(outcome.detail, as_json)
    if outcome.status == UploadStatus.REJECTED:
        raise SystemExit(exitcodes.REJECTED)


def _print_statuses(result: StatusFileResult, as_json: bool) -> None:
    if as_json:
        emit_json({"source": result.source, "rows": result.rows, "applied": result.applied,
                   "unchanged": result.unchanged, "shipped": result.shipped, "cancelled": result.cancelled,
                   "restocked": result.restocked, "errors": result.errors,
                   "row_errors": row_errors_json(result.row_errors), "lines": result.lines})
        return
    click.echo(f"{result.source}: rows {result.rows}, applied {result.applied} (shipped {result.shipped}, "
               f"cancelled {result.cancelled}, restocked {result.restocked}), already known {result.unchanged}, "
               f"errors {result.errors}")
    for line in result.lines:
        if line.outcome == "applied" and line.status == "error":
            click.echo(f"  order {line.order_id} line {line.line_id}: ERROR: {line.note}")
    print_row_errors(result.row_errors)
