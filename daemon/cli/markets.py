"""Market commands: market add, list, import-listings, show."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import click
from sqlalchemy.orm import Session

from daemon import exitcodes
from daemon.cli.app import App, emit_json, fmt_time, table
from daemon.db.markets import add_market, get_market, import_listing_rows, list_markets, market_inventory
from daemon.db.sync import sync_with_config
from daemon.errors import FeedError
from daemon.settings import market_settings

if TYPE_CHECKING:
    from daemon.formats.feeds import RowError


@contextmanager
def synced(app: App) -> Iterator[Session]:
    """A transaction on a database in step with the config (merchants, sources, markets)."""
    with app.transaction() as session:
        sync_with_config(session, app.settings, app.now())
        yield session


def rejected(file: Path, exc: FeedError) -> None:
    """A file that cannot be used as a whole: one line, exit 7, nothing applied."""
    click.echo(f"stockdrop: {file.name} rejected: {exc}", err=True)
    raise SystemExit(exitcodes.REJECTED)


def row_errors_json(errors: list[RowError]) -> list[dict[str, object]]:
    return [{"row": e.row, "column": e.column, "value": e.value, "message": e.message} for e in errors]


def print_row_errors(errors: list[RowError]) -> None:
    for e in errors:
        click.echo(f"  row {e.row if e.row is not None else '-'}, {e.column or '-'} = {e.value!r}: {e.message}")


@click.group("market")
def market_group() -> None:
    """Markets: which sources feed them, their channel rules, their listings."""


@market_group.command("add")
@click.argument("name")
@click.option("--kind", type=click.Choice(["amazon", "ebay", "walmart", "shopify", "generic"]),
              default="generic", show_default=True)
@click.option("--merchant", help="Needed when several merchants are configured.")
@click.option("--sources", help="Comma-separated source names feeding the market (default: all).")
@click.option("--buffer", type=int, default=0, show_default=True, help="Units held back (safety stock).")
@click.option("--percent", type=int, default=100, show_default=True, help="Share of available offered, rounded down.")
@click.option("--maximum", type=int, default=None, help="Never send more than this.")
@click.option("--minimum", type=int, default=0, show_default=True, help="Send 0 below this.")
@click.option("--restock", type=click.Choice(["always", "never", "by_origin"]), default="by_origin",
              show_default=True, help="Whether cancelled units go back.")
@click.option("--json", "as_json", is_flag=True, help='{"market": {merchant, name, kind, sources, ...}}')
@click.pass_obj
def market_add(app: App, name: str, kind: str, merchant: str | None, sources: str | None, buffer: int,
               percent: int, maximum: int | None, minimum: int, restock: str, as_json: bool) -> None:
    """Add a market in the database (markets in the config are added by themselves)."""
    merchant_name = app.settings.merchant(merchant).name
    names = None if sources is None else [s.strip() for s in sources.split(",") if s.strip()]
    spec = market_settings(name=name, kind=kind, sources=names, buffer=buffer, percent=percent,
                           maximum=maximum, minimum=minimum, restock=restock)
    with synced(app) as session:
        add_market(session, merchant_name, spec, now=app.now())
        info = next(m for m in list_markets(session, merchant=merchant_name) if m.name == name)
    if as_json:
        emit_json({"market": info})
    else:
        click.echo(f"market {merchant_name}/{name} added ({kind})")


@market_group.command("list")
@click.option("--merchant", help="Only this merchant.")
@click.option("--json", "as_json", is_flag=True,
              help='{"markets": [{merchant, name, kind, sources, buffer, percent, maximum, minimum, '
                   'restock, from_config, connected_at, first_integration, listings}]}')
@click.pass_obj
def market_list(app: App, merchant: str | None, as_json: bool) -> None:
    """The markets, from the config and added with `market add`."""
    with synced(app) as session:
        rows = list_markets(session, merchant=merchant)
    if as_json:
        emit_json({"markets": rows})
        return
    table([[m.merchant, m.name, m.kind, ",".join(m.sources) if m.sources is not None else "(all)",
            f"{m.buffer}/{m.percent}%/{m.maximum if m.maximum is not None else '-'}/{m.minimum}",
            m.restock, "config" if m.from_config else "db", fmt_time(m.connected_at),
            "yes" if m.first_integration else "", str(m.listings)] for m in rows],
          ["MERCHANT", "MARKET", "KIND", "SOURCES", "BUF/PCT/MAX/MIN", "RESTOCK", "FROM", "CONNECTED (UTC)",
           "FIRST", "LISTINGS"])


@market_group.command("import-listings")
@click.argument("market")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--merchant", help="Needed when several merchants are configured.")
@click.option("--json", "as_json", is_flag=True,
              help="{market, format, rows, listings, first_integration, first_market, set_quantities, "
                   "needs_update, errors, row_errors: [{row, column, value, message}], warnings}")
@click.pass_obj
def market_import_listings(app: App, market: str, file: Path, merchant: str | None, as_json: bool) -> None:
    """Import MARKET's listings from FILE. The merchant's first market sets the
    merchant-fulfilled quantities; a later one is sent the current inventory instead.

    Exits 7 when the file is rejected as a whole.
    """
    from daemon.ingest.contained import ParserPool  # polars: only for a file to read

    merchant_name = app.settings.merchant(merchant).name
    ingest = app.settings.ingest
    try:
        # Read in a parser process, as every file a market sends is.
        with ParserPool(1, timeout_s=ingest.parse_timeout_seconds,
                        memory_bytes=ingest.parse_memory_mb * 1024 * 1024) as parsers:
            parsed = parsers.read_listings(file)
        location = _shopify_location(app, merchant_name, market)
        if location is not None:
            parsed = parsed.kept_at(location)
        with synced(app) as session:
            record = get_market(session, merchant_name, market)
            result = import_listing_rows(session, record, parsed.rows, now=app.now(), actor="cli",
                                         reference=f"listings:{market}:{file.name}", locations=parsed.locations)
    except FeedError as exc:
        rejected(file, exc)
        return
    if as_json:
        emit_json({"market": market, "merchant": merchant_name, "format": parsed.format,
                   "rows": parsed.total_rows, "listings": result.listings,
                   "first_integration": result.first_integration, "first_market": result.first_market,
                   "set_quantities": result.set_quantities, "needs_update": result.needs_update,
                   "errors": len(parsed.errors), "row_errors": row_errors_json(parsed.errors),
                   "warnings": parsed.warnings})
        return
    how = ("first integration: quantities set in merchant-fulfilled" if result.first_integration
           else f"{result.first_market} came first: quantities left alone, listings to be sent the current inventory")
    click.echo(f"{merchant_name}/{market}: {result.listings} listings ({parsed.format}); {how}")
    click.echo(f"  quantities set {result.set_quantities}, needing update {result.needs_update}, "
               f"row errors {len(parsed.errors)}")
    for warning in parsed.warnings:
        click.echo(f"  note: {warning}")
    print_row_errors(parsed.errors)


def _shopify_location(app: App, merchant: str, market: str) -> str | None:
    """The one Shopify location MARKET's export writes (its ``location`` option), if it names one."""
    export = next((e for m, k, e in app.settings.export_targets() if (m, k) == (merchant, market)), None)
    if export is None or export.format != "shopify_inventory":
        return None
    return export.options.get("location")


@market_group.command("show")
@click.argument("market")
@click.option("--merchant", help="Needed when several merchants are configured.")
@click.option("--sku", help="Only this SKU.")
@click.option("--json", "as_json", is_flag=True,
              help="{merchant, market, kind, sources, rules, inventory: [{sku, quantities, available, "
                   "quantity, listed, needs_update, last_sent_quantity}], export: {destination, format, "
                   "last_delivered_at, next_delta_due, owed: {id, file_name, status, attempts, last_error}} "
                   "or null}")
@click.pass_obj
def market_show(app: App, market: str, merchant: str | None, sku: str | None, as_json: bool) -> None:
    """What MARKET should be sent per SKU (after its channel rules), next to the per-source quantities."""
    merchant_name = app.settings.merchant(merchant).name
    with synced(app) as session:
        view = market_inventory(session, merchant_name, market, sku=sku)
        export = _export_state(app, session, merchant_name, market)
    if as_json:
        emit_json({**view.__dict__, "export": None if export is None else export.__dict__})
        return
    if export is not None:
        owed = export.owed
        click.echo(f"export: {export.format} to {export.destination}; last delivered "
                   f"{fmt_time(export.last_delivered_at) if export.last_delivered_at else 'never'}; next delta "
                   f"due {fmt_time(export.next_delta_due) if export.next_delta_due else 'after the next change'}"
                   + (f"; owed: export {owed['id']} ({owed['status']}, {owed['attempts']} tries)" if owed else ""))
    table([[r.sku, ", ".join(f"{s}={q}" for s, q in r.quantities.items()) or "-", str(r.available),
            str(r.quantity), "yes" if r.listed else "no", "yes" if r.needs_update else ""]
           for r in view.inventory],
          ["SKU", "PER SOURCE", "AVAILABLE", "SEND", "LISTED", "NEEDS UPDATE"])


@dataclass(frozen=True)
class ExportState:
    destination: str
    format: str
    last_delivered_at: datetime | None
    next_delta_due: datetime | None
    owed: dict[str, object] | None


def _export_state(app: App, session: Session, merchant: str, market: str) -> ExportState | None:
    """The market's export: where, when it was last delivered, when a delta is next due, what is owed."""
    from daemon.db import exports as db_exports
    from daemon.export.destinations import destination_for

    settings = next((e for m, k, e in app.settings.export_targets() if m == merchant and k == market), None)
    if settings is None:
        return None
    record = get_market(session, merchant, market)
    last = db_exports.last_delivery(session, record.id)
    owed = db_exports.undelivered(session, record.id)
    due = (last + timedelta(seconds=settings.delta_every_seconds)
           if last is not None and settings.delta_every_seconds is not None else None)
    return ExportState(destination_for(settings).describe(), settings.format, last, due,
                       None if owed is None else {"id": owed.id, "file_name": owed.file_name, "status": owed.status,
                                                  "attempts": owed.attempts, "last_error": owed.last_error})
