"""Feed commands: upload, history, template."""

from __future__ import annotations

import getpass
import os
import shutil
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from daemon import exitcodes
from daemon.cli.app import App, emit_json, fmt_time, parse_since, table
from daemon.db import stock as store
from daemon.db import uploads
from daemon.db.catalog import get_source
from daemon.errors import NotFound
from daemon.inventory.uploads import UploadStatus

if TYPE_CHECKING:  # the pipeline (polars, the parser) is imported by the commands that run it
    from daemon.ingest.outcomes import Outcome
    from daemon.ingest.pipeline import Pipeline
    from daemon.ingest.sources import SourceInfo


def open_pipeline(app: App) -> Pipeline:
    """A pipeline for one command: one file at a time, in this process, with one parser."""
    from daemon.db.sync import sync_with_config
    from daemon.ingest.pipeline import Pipeline
    from daemon.ingest.sources import SourceBook
    from daemon.reports.alerts import alerts_for

    with app.transaction() as session:
        sync_with_config(session, app.settings, app.now())
        book = SourceBook.load(session, app.settings)
    # A file rejected or held here alerts as one the daemon took would: the
    # mail is written to the outbox, and the daemon leading "email" sends it.
    alerts = alerts_for(app.sessions, app.settings)
    pipeline = Pipeline(app.settings, app.sessions, book, workers=1,
                        on_outcome=alerts.upload_finished if alerts else None)
    app.on_close(pipeline.close)
    return pipeline


def take_file(pipeline: Pipeline, file: Path, *, staging: Path, source_id: int | None = None,
              market_id: int | None = None, kind: str = "feed") -> Outcome:
    """Send a user's FILE through the pipeline and wait for its outcome.

    A copy goes into the staging folder: the original stays where the user
    keeps it, and the claim into the spool is still a rename.
    """
    from daemon.ingest.arrival import Arrival

    staging.mkdir(parents=True, exist_ok=True)
    staged = staging / f".cli-{datetime.now(UTC):%Y%m%d%H%M%S%f}-{file.name}"
    shutil.copyfile(file, staged)
    try:
        upload_id = pipeline.deliver(Arrival(
            path=staged, source_id=source_id, market_id=market_id, kind=kind, original_name=file.name,
            protocol="cli", received_at=datetime.now(UTC), user=getpass.getuser()))
        return pipeline.processor.process(upload_id)
    finally:
        staged.unlink(missing_ok=True)


def _source(pipeline: Pipeline, app: App, source: str, merchant: str | None) -> SourceInfo:
    name = app.settings.merchant(merchant).name
    info = pipeline.book.by_name(name, source)
    if info is None:
        names = ", ".join(sorted(s.name for s in pipeline.book if s.merchant.name == name))
        raise NotFound(f"no source named {source!r} for merchant {name!r} (sources: {names})")
    return info


def _print_outcome(outcome: Outcome, as_json: bool) -> None:
    if as_json:
        emit_json({"upload_id": outcome.upload_id, "status": outcome.status,
                   "message": outcome.message, **outcome.counts})
        return
    c = outcome.counts
    click.echo(f"upload {outcome.upload_id}: {outcome.status}"
               + (f": {outcome.message}" if outcome.message else ""))
    if c:
        click.echo(f"  rows {c.get('rows', 0)}, applied {c.get('applied', 0)}, unchanged "
                   f"{c.get('unchanged', 0)}, zeroed {c.get('zeroed', 0)}, stale {c.get('stale', 0)}, "
                   f"errors {c.get('errors', 0)}")


def _exit_for(outcome: Outcome) -> None:
    if outcome.status in (UploadStatus.REJECTED, UploadStatus.HELD):
        raise SystemExit(exitcodes.REJECTED)


@click.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--source", required=True, help="The inventory source the file is for.")
@click.option("--merchant", help="Needed when several merchants are configured.")
@click.option("--json", "as_json", is_flag=True, help="{upload_id, status, message, rows, applied, ...}")
@click.pass_obj
def upload(app: App, file: Path, source: str, merchant: str | None, as_json: bool) -> None:
    """Send FILE through the ingest pipeline and print the outcome.

    Exits 7 when the file was rejected or held.
    """
    pipeline = open_pipeline(app)
    info = _source(pipeline, app, source, merchant)
    outcome = take_file(pipeline, file, staging=info.staging, source_id=info.id)
    _print_outcome(outcome, as_json)
    _exit_for(outcome)


def _write_file(path: Path, write: Callable[[Path], int]) -> int:
    """``write`` into a temporary name beside ``path``, then rename: no half-written file is left."""
    tmp = path.with_name(f".{path.name}.part")
    try:
        count = write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return count


@click.group(invoke_without_command=True)
@click.option("--source", help="Only this source.")
@click.option("--market", help="Only this market's order and cancellation files.")
@click.option("--merchant", help="Only this merchant.")
@click.option("--status", type=click.Choice([s.value for s in UploadStatus]), help="Only this outcome.")
@click.option("--since", help="Only uploads received at or after this ISO date or time (UTC if no zone).")
@click.option("--limit", type=click.IntRange(1), default=None,
              help="At most this many uploads, newest first  [default: 100; every one with --format]")
@click.option("--format", "fmt", type=click.Choice(["csv", "xlsx"]), default=None,
              help="The history as a spreadsheet (default with -o: from its extension, else csv).")
@click.option("-o", "--output", help="The spreadsheet's file; CSV goes to stdout without it (or with -o -).")
@click.option("--json", "as_json", is_flag=True, help='{"uploads": [{id, merchant, source, ...}]}')
@click.pass_context
def history(ctx: click.Context, source: str | None, market: str | None, merchant: str | None,
            status: str | None, since: str | None, limit: int | None, fmt: str | None,
            output: str | None, as_json: bool) -> None:
    """The upload history, newest first: feeds, and markets' order and cancellation files."""
    if ctx.invoked_subcommand is not None:
        return
    app: App = ctx.obj
    if output is not None and fmt is None:
        fmt = "xlsx" if output.lower().endswith((".xlsx", ".xlsm")) else "csv"
    if fmt is not None:
        if as_json:
            raise click.UsageError("--json and --format are two different outputs: choose one")
        if fmt == "xlsx" and output in (None, "-"):
            raise click.UsageError("--format xlsx needs -o FILE: a workbook is not written to a terminal")
        _export(app, fmt, output, limit, merchant=merchant, source=source, market=market, status=status,
                since=parse_since(since))
        return
    with app.transaction() as session:
        rows = uploads.history(session, merchant=merchant, source=source, market=market, status=status,
                               since=parse_since(since), limit=limit or 100)
    if as_json:
        emit_json({"uploads": rows})
        return
    table([[str(r.id), fmt_time(r.received_at), r.source, r.original_name, r.protocol, r.status,
            f"{r.applied}/{r.rows}", str(r.errors), (r.message or "")[:60]] for r in rows],
          ["ID", "RECEIVED (UTC)", "SOURCE", "FILE", "VIA", "STATUS", "APPLIED/ROWS", "ERRORS",
           "MESSAGE"])


def _export(app: App, fmt: str, output: str | None, limit: int | None, **filters: Any) -> None:
    """The history as CSV or XLSX, streamed from the database into the file."""
    from daemon.reports import history_file

    with app.transaction() as session:
        rows = uploads.iter_history(session, limit=limit, **filters)
        if output in (None, "-"):
            history_file.write_csv(rows, sys.stdout)
            return
        target = Path(output)
        if fmt == "xlsx":
            count = _write_file(target, lambda tmp: history_file.write_xlsx(rows, tmp))
        else:
            def write_csv(tmp: Path) -> int:
                # With a BOM, so a spreadsheet opens accented file names as they are.
                with open(tmp, "w", newline="", encoding="utf-8-sig") as out:
                    return history_file.write_csv(rows, out)

            count = _write_file(target, write_csv)
    click.echo(f"wrote {target} with {count} upload(s)")


@history.command("show")
@click.argument("upload_id", type=int)
@click.option("--json", "as_json", is_flag=True, help='{"upload": {...}, "errors": [{row, column, value, sku, message}]}')
@click.pass_obj
def history_show(app: App, upload_id: int, as_json: bool) -> None:
    """One upload with its row errors."""
    with app.transaction() as session:
        row, errors = uploads.show(session, upload_id)
    if as_json:
        emit_json({"upload": row, "errors": errors})
        return
    click.echo(f"upload {row.id}: {row.original_name} -> {row.merchant}/{row.source}")
    click.echo(f"  status    {row.status}" + (f": {row.message}" if row.message else ""))
    click.echo(f"  via       {row.protocol} user={row.user or '-'} from={row.remote_addr or '-'}")
    transfer = f" in {row.elapsed_s:.3f}s" if row.elapsed_s is not None else ""
    click.echo(f"  size      {row.size} bytes{transfer}, sha256 {row.sha256}")
    click.echo(f"  rows      {row.rows}: applied {row.applied}, unchanged {row.unchanged}, "
               f"zeroed {row.zeroed}, stale {row.stale}, errors {row.errors}")
    click.echo(f"  received  {fmt_time(row.received_at)}  started {fmt_time(row.started_at)}  "
               f"finished {fmt_time(row.finished_at)}")
    if row.warnings:
        for w in row.warnings.splitlines():
            click.echo(f"  warning   {w}")
    if errors:
        click.echo("")
        table([[str(e.row or "-"), e.column or "-", repr(e.value) if e.value is not None else "-",
                e.sku or "-", e.message] for e in errors], ["ROW", "COLUMN", "VALUE", "SKU", "PROBLEM"])


@history.command("approve")
@click.argument("upload_id", type=int)
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def history_approve(app: App, upload_id: int, as_json: bool) -> None:
    """Apply a held full feed after all."""
    from daemon.ingest import held

    pipeline = open_pipeline(app)
    outcome = held.approve(pipeline.sessions, pipeline.dirs, pipeline.processor,
                           upload_id, actor=f"cli:{getpass.getuser()}")
    _print_outcome(outcome, as_json)
    _exit_for(outcome)


@history.command("reject")
@click.argument("upload_id", type=int)
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def history_reject(app: App, upload_id: int, as_json: bool) -> None:
    """Reject a held full feed: nothing is applied, the file is quarantined."""
    from daemon.ingest import held

    pipeline = open_pipeline(app)
    outcome = held.reject(pipeline.sessions, pipeline.dirs, pipeline.book, upload_id,
                          actor=f"cli:{getpass.getuser()}")
    _print_outcome(outcome, as_json)


@history.command("fix")
@click.argument("upload_id", type=int)
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path),
              help="Where to write it (default: its own name, in the current folder).")
@click.pass_obj
def history_fix(app: App, upload_id: int, output: Path | None) -> None:
    """Write an upload's quick-fix file: its failed rows in the file's own format, to correct and send again."""
    from daemon.reports import quickfix

    with app.transaction() as session:
        fix = quickfix.build(session, upload_id)
        source = uploads.show(session, upload_id)[0].source
    target = output or Path(fix.name)

    def write(tmp: Path) -> int:
        tmp.write_bytes(fix.data)
        return fix.rows

    _write_file(target, write)
    click.echo(f"wrote {target}: {fix.rows} row(s) of upload {upload_id} to correct; then send it again "
               f"(`stockdrop upload {target} --source {source}`)")


@click.command("template")
@click.option("--source", required=True, help="The inventory source.")
@click.option("--merchant", help="Needed when several merchants are configured.")
@click.option("--format", "fmt", type=click.Choice(["csv", "xlsx"]), default=None,
              help="Default: from the output file's extension, else csv.")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.pass_obj
def template_command(app: App, source: str, merchant: str | None, fmt: str | None, output: Path) -> None:
    """Write the Quantity Update template: every SKU of the source and its quantity."""
    from daemon.formats import template

    merchant_name = app.settings.merchant(merchant).name
    fmt = fmt or ("xlsx" if output.suffix.lower() == ".xlsx" else "csv")
    with app.transaction() as session:
        get_source(session, merchant_name, source)  # a clear error for a wrong name
        rows = [(r.sku, r.quantity) for r in
                store.inventory(session, merchant=merchant_name, source=source)]
    configured = [s for s in app.settings.merchant(merchant).all_sources() if s.name == source]
    if fmt == "xlsx":
        limit = configured[0].feed.max_quantity if configured else 1_000_000
        count = template.write_xlsx(output, rows, max_quantity=limit)
    else:
        count = template.write_csv(output, rows)
    click.echo(f"wrote {output} with {count} SKU(s) of {merchant_name}/{source}")
