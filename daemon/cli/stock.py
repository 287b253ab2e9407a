"""Inventory commands: inventory, set, ledger."""

from __future__ import annotations

import click

from daemon.cli.app import App, emit_json, fmt_time, table
from daemon.db import stock as store
from daemon.db.catalog import get_source
from daemon.errors import UserError
from daemon.inventory.stock import QuantityError


@click.command()
@click.option("--sku", help="Only this SKU (exact, leading zeros count).")
@click.option("--source", help="Only this inventory source.")
@click.option("--merchant", help="Only this merchant.")
@click.option("--market", help="What this market should be sent (after its channel rules), "
              "next to the per-source quantities; the JSON shape is `market show`'s.")
@click.option("--json", "as_json", is_flag=True, help='{"inventory": [{merchant, source, sku, quantity, as_of, updated_at}]}')
@click.pass_obj
def inventory(app: App, sku: str | None, source: str | None, merchant: str | None,
              market: str | None, as_json: bool) -> None:
    """The quantities per source (or what a market should be sent, with --market)."""
    if market:
        from daemon.cli.markets import market_show

        click.get_current_context().invoke(market_show, market=market, merchant=merchant, sku=sku,
                                           as_json=as_json)
        return
    with app.transaction() as session:
        rows = store.inventory(session, merchant=merchant, sku=sku, source=source)
    if as_json:
        emit_json({"inventory": rows})
        return
    table([[r.merchant, r.sku, r.source, str(r.quantity), fmt_time(r.as_of)] for r in rows],
          ["MERCHANT", "SKU", "SOURCE", "QTY", "AS OF (UTC)"])


@click.command("set")
@click.argument("sku")
@click.argument("quantity", type=int)
@click.option("--source", required=True, help="The inventory source to change.")
@click.option("--merchant", help="Needed when several merchants are configured.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def set_command(app: App, sku: str, quantity: int, source: str, merchant: str | None, as_json: bool) -> None:
    """Set one SKU's quantity in one source (the individual update)."""
    if not sku.strip():
        raise UserError("the SKU is empty")
    merchant_name = app.settings.merchant(merchant).name
    with app.transaction() as session:
        src = get_source(session, merchant_name, source)
        try:
            change = store.set_one(session, src, sku, quantity, actor="cli", now=app.now())
        except QuantityError as exc:
            raise UserError(str(exc)) from None
    before = change.entry.before if change.entry else change.level.quantity
    if as_json:
        emit_json({"merchant": merchant_name, "source": source, "sku": sku, "before": before,
                   "after": change.level.quantity, "changed": change.entry is not None})
    elif change.entry is None:
        click.echo(f"{merchant_name}/{source} {sku}: unchanged at {quantity}")
    else:
        click.echo(f"{merchant_name}/{source} {sku}: {before} -> {quantity}")


@click.command()
@click.option("--sku", help="Only this SKU.")
@click.option("--source", help="Only this source.")
@click.option("--merchant", help="Only this merchant.")
@click.option("--limit", type=click.IntRange(1, 100_000), default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True,
              help='{"ledger": [{id, merchant, source, sku, before, after, reason, reference, actor, at}]}')
@click.pass_obj
def ledger(app: App, sku: str | None, source: str | None, merchant: str | None, limit: int, as_json: bool) -> None:
    """The stock ledger, newest first: every change with its reason and actor."""
    with app.transaction() as session:
        rows = store.ledger(session, merchant=merchant, sku=sku, source=source, limit=limit)
    if as_json:
        emit_json({"ledger": rows})
        return
    table([[fmt_time(r.at), r.sku, r.source, f"{r.before} -> {r.after}", r.reason, r.actor, r.reference or ""]
           for r in rows], ["AT (UTC)", "SKU", "SOURCE", "CHANGE", "REASON", "ACTOR", "REFERENCE"])
