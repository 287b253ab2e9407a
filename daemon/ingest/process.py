"""Process one claimed upload: check, parse, plan, apply in one transaction, then file it.

The only writes before the apply transaction are the upload's own status
(``processing``). The apply transaction re-reads that status under the
source lock, so the same upload can never be applied twice, whichever
process or thread gets there first. Files move only after the commit.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeAlias
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import polars as pl
import structlog
from sqlalchemy.orm import Session, sessionmaker

from daemon.formats.cells import unescape_text_columns
from daemon.db import bulk, orders, stock_version, uploads
from daemon.db.models import Upload
from daemon.errors import FeedError
from daemon.formats.feeds import ParsedFeed, ParseOptions
from daemon.formats import headers
from daemon.ingest.market_files import apply_market_file
from daemon.formats.results import write_result
from daemon.ingest.sources import SourceBook, SourceInfo
from daemon.ingest.spool import SpoolDirs, move
from daemon.ingest.stock_store import StockCache, after_write
from daemon.inventory.feed import FeedPlan, FeedPolicy, covers_source, plan_feed
from daemon.settings import IngestSettings

log = structlog.get_logger("daemon.ingest.process")

Parser = Callable[[Path, ParseOptions], ParsedFeed]
ResultFrames: TypeAlias = "tuple[ParsedFeed, list[tuple[SourceInfo, FeedPlan]]] | None"
# Each source's stock as an apply leaves it: source id -> (stock version, stock).
_Kept: TypeAlias = "dict[int, tuple[int, pl.DataFrame]]"


@dataclass(frozen=True)
class Outcome:
    upload_id: int
    status: str
    message: str | None
    counts: dict[str, int]


def parse_options(info: SourceInfo, ingest: IngestSettings) -> ParseOptions:
    feed = info.settings.feed
    return ParseOptions(
        columns=dict(feed.columns), sheet=feed.sheet,
        negative="allow" if feed.mode == "adjust" else feed.negative,
        max_quantity=feed.max_quantity, duplicates=feed.duplicates,
        timezone=info.merchant.timezone, max_uncompressed_bytes=ingest.max_uncompressed_bytes,
    )


def feed_policy(info: SourceInfo) -> FeedPolicy:
    f = info.settings.feed
    return FeedPolicy(mode=f.mode, scope=f.scope, unknown_sku=f.unknown_sku, min_rows=f.min_rows,
                      max_zeroed_percent=f.max_zeroed_percent)


def default_as_of(info: SourceInfo, original_name: str, received_at: datetime) -> tuple[datetime, str | None]:
    """The as-of time of rows without their own: from the file name, or the receive time."""
    feed = info.settings.feed
    if feed.as_of_from == "filename" and feed.filename_pattern:
        match = re.search(feed.filename_pattern, original_name)
        if match:
            try:
                naive = datetime.strptime(match.group("ts"), feed.filename_time_format)
            except ValueError:
                return received_at, (f"file name timestamp {match.group('ts')!r} does not match "
                                     f"{feed.filename_time_format!r}; using the receive time")
            return naive.replace(tzinfo=ZoneInfo(info.merchant.timezone)).astimezone(UTC), None
        return received_at, "file name has no timestamp; using the receive time"
    return received_at, None


class Processor:
    def __init__(self, sessions: sessionmaker[Session], dirs: SpoolDirs, book: SourceBook,
                 ingest: IngestSettings, parser: Parser,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self._sessions = sessions
        self._dirs = dirs
        self._book = book
        self._ingest = ingest
        self._parse = parser
        self._clock = clock
        self._stock = StockCache()

    # -- the steps -------------------------------------------------------

    def process(self, upload_id: int, *, approved: bool = False) -> Outcome:
        with self._sessions() as session, session.begin():
            upload = session.get(Upload, upload_id)
            if upload is None:
                raise LookupError(f"upload {upload_id} does not exist")
            source_id, market_id, kind, name = (upload.source_id, upload.market_id, upload.kind,
                                                upload.spool_name)
            if upload.status in uploads.FINAL:
                # Committed before a crash: only the filing is left to do.
                outcome = self._outcome(upload)
            else:
                upload.status, upload.started_at = "processing", self._clock()
                outcome = None
        assert name is not None
        if outcome is None:
            outcome = self._first_look(upload_id, approved)
        frames = None
        if kind == "feed":
            info = self._book.get(source_id) if source_id is not None else None
            if info is None:
                raise LookupError(f"upload {upload_id}: source {source_id} is not configured")
            results = info.results
            if outcome is None:
                outcome, frames = self._decide_and_apply(upload_id, info, name, approved)
        else:
            market = self._book.market(market_id) if market_id is not None else None
            if market is None:
                raise LookupError(f"upload {upload_id}: market {market_id} is not configured")
            results = market.results(kind)
            if outcome is None:
                outcome = apply_market_file(  # type: ignore[assignment]
                    self._sessions, upload_id, self._dirs.spool / name, finish=self._finish,
                    outcome_of=self._outcome, now=self._clock())
        assert outcome is not None
        self._file_away(upload_id, results, name, outcome, frames)
        return outcome

    def _first_look(self, upload_id: int, approved: bool) -> Outcome | None:
        """What every file (feed, orders, cancellations) gets before its content
        is read: a duplicate is recorded, an empty or oversized file rejected."""
        with self._sessions() as session, session.begin():
            upload = session.get(Upload, upload_id)
            assert upload is not None
            dup = None if approved else uploads.find_applied_duplicate(session, upload)
            if dup is not None:
                return self._finish(session, upload, "duplicate", f"same content as upload {dup.id} "
                                    f"({dup.original_name}); not applied again", duplicate_of=dup.id)
            if upload.size == 0:
                return self._finish(session, upload, "rejected", "the file is empty (0 bytes)")
            if upload.size > self._ingest.max_file_bytes:
                return self._finish(session, upload, "rejected", f"the file is {upload.size} bytes, "
                                    f"over max_file_bytes = {self._ingest.max_file_bytes}")
        return None

    def _decide_and_apply(self, upload_id: int, info: SourceInfo, name: str,
                          approved: bool) -> tuple[Outcome, ResultFrames]:
        path = self._dirs.spool / name
        with self._sessions() as session:
            upload = session.get(Upload, upload_id)
            assert upload is not None
            original, received_at = upload.original_name, upload.received_at
        try:
            parsed = self._parse(path, parse_options(info, self._ingest))
        except FeedError as exc:
            return self._finish_alone(upload_id, "rejected", f"{original}: {exc}"), None
        as_of, as_of_note = default_as_of(info, original, received_at)
        warnings = [*parsed.warnings, *([as_of_note] if as_of_note else [])]
        kept: _Kept = {}
        outcome, plans = self._apply(upload_id, info, parsed, as_of, warnings, approved, kept)
        # Committed: what the apply read and wrote is each source's stock now.
        for source_id, (version, frame) in kept.items():
            self._stock.keep(source_id, version, frame)
        return outcome, (parsed, plans)

    def _apply(self, upload_id: int, info: SourceInfo, parsed: ParsedFeed, as_of: datetime,
               warnings: list[str], approved: bool,
               kept: _Kept) -> tuple[Outcome, list[tuple[SourceInfo, FeedPlan]]]:
        """Plan and apply in one transaction; ``kept`` gets each source's stock
        as this transaction leaves it, for the caller to keep once committed."""
        now = self._clock()
        row_errors: list[tuple[Any, ...]] = [(e.row, e.column, e.value, e.sku, e.message)
                                             for e in parsed.errors]
        # SKUs we escaped in a template ('=SKU) come back as they were.
        frame = unescape_text_columns(parsed.frame, "sku")
        # SKUs named on rows that failed validation: a full feed must not zero them.
        invalid = unescape_text_columns(pl.DataFrame(
            {"sku": [e.sku for e in parsed.errors if e.sku is not None]}, schema={"sku": pl.Utf8}),
            "sku").get_column("sku").unique()
        groups, location_errors = _split_by_location(frame, info, self._book, parsed)
        row_errors += location_errors
        with self._sessions() as session, session.begin():
            # Every source this file writes, in id order, so two files that
            # name the same sources can never wait on each other.
            for source_id in sorted({info.id, *(t.id for t, _ in groups)}):
                bulk.lock_source(session, source_id)
            upload = session.get(Upload, upload_id, populate_existing=True)
            assert upload is not None
            if upload.status in uploads.FINAL:
                return self._outcome(upload), []  # another process finished it meanwhile
            upload.warnings = "\n".join(warnings) or None
            plans: list[tuple[SourceInfo, FeedPlan]] = []
            currents: dict[int, pl.DataFrame] = {}
            targets = [t.id for t, _ in groups]
            versions: dict[int, int] = {}
            for target, rows in groups:
                versions[target.id], current = self._stock.load(session, target.id)
                currents[target.id] = current
                target_policy = feed_policy(target)
                catalog = (bulk.load_catalog(session, target.merchant_id)
                           if target_policy.unknown_sku == "reject_row" else pl.Series("sku", [], pl.Utf8))
                later = (_orders_after(session, target.id, rows, as_of)
                         if target_policy.mode == "set" else None)
                plans.append((target, plan_feed(rows, current, catalog, target_policy,
                                                default_as_of=as_of, approved=approved,
                                                quantity_column=_quantity_header(parsed, dict(target.settings.feed.columns)),
                                                orders_after=later, invalid=invalid,
                                                # Two locations mapped to one source: neither covers it.
                                                covers=(covers_source(target_policy, rows, invalid)
                                                        and targets.count(target.id) == 1))))
            for _, plan in plans:
                row_errors += [(r["row"], r["column"], r["value"], r["sku"], r["message"])
                               for r in plan.problems.iter_rows(named=True)]
            stale_notes = [
                (r["row"], "as_of", r["as_of"].isoformat(), r["sku"],
                 f"skipped: older than the quantity already applied (as of {r['stored_as_of'].isoformat()})")
                for _, plan in plans for r in plan.stale.iter_rows(named=True)
            ]
            counts = _sum_counts(plans, parsed.total_rows, len(row_errors))
            held_counts = {k: v for k, v in counts.items() if k != "recounted"}
            hold = next((p.hold_reason for _, p in plans if p.hold_reason), None)
            # Nothing written yet: what was read is the stock, whatever the outcome.
            kept.update({t: (versions[t], currents[t]) for t in targets if targets.count(t) == 1})
            uploads.clear_errors(session, upload_id)
            uploads.add_errors(session, upload_id, row_errors + stale_notes)
            if hold:
                return self._finish(session, upload, "held", hold + "; approve with `stockdrop "
                                    f"history approve {upload_id}` or reject it",
                                    counts=held_counts), plans
            rejection = None
            if parsed.total_rows == 0:
                rejection = "the file has a header but no rows"
            elif row_errors and info.settings.feed.on_row_error == "reject_file":
                rejection = (f"{len(row_errors)} row error(s); nothing applied "
                             "(on_row_error = reject_file)")
            elif row_errors and counts["applied"] + counts["unchanged"] + counts["stale"] == 0:
                rejection = f"no valid rows: {len(row_errors)} row error(s)"
            if rejection:
                return self._finish(session, upload, "rejected", rejection, counts=held_counts), plans
            for target, plan in plans:
                # ``current`` lets write_plan skip id lookups and move as-of
                # times set-wise; it is exact only while no other plan of
                # this file writes the same source (two locations mapped to
                # one source).
                alone = targets.count(target.id) == 1
                source = _source_row(session, target)
                written = bulk.write_plan(session, source, plan.writes,
                                          reference=f"upload:{upload_id}", actor=f"upload:{upload.protocol}",
                                          now=now, current=currents[target.id] if alone else None,
                                          default_as_of=as_of, covers_as_of=plan.covers_as_of)
                version = stock_version.current(session, target.id)
                if not alone or version - versions[target.id] > 1:  # other writes in this transaction
                    kept.pop(target.id, None)
                    self._stock.forget(target.id)
                    continue
                kept[target.id] = (version, after_write(currents[target.id], written, source.full_feed_as_of))
            status = "applied_with_errors" if row_errors else "applied"
            recounted = counts.pop("recounted", 0)
            note = (f"{recounted} unit(s) sold after the file's as-of time were subtracted again"
                    if recounted else None)
            return self._finish(session, upload, status, note, counts=counts), plans

    # -- bookkeeping -----------------------------------------------------

    def _finish(self, session: Session, upload: Upload, status: str, message: str | None, *,
                counts: dict[str, int] | None = None, duplicate_of: int | None = None) -> Outcome:
        upload.status, upload.message, upload.finished_at = status, message, self._clock()
        upload.duplicate_of = duplicate_of
        if upload.started_at is None:
            upload.started_at = upload.finished_at
        for key, value in (counts or {}).items():
            setattr(upload, key, value)
        log.info("upload_finished", upload_id=upload.id, status=status, file=upload.original_name,
                 message=message, **(counts or {}))
        return self._outcome(upload)

    def _finish_alone(self, upload_id: int, status: str, message: str) -> Outcome:
        with self._sessions() as session, session.begin():
            upload = session.get(Upload, upload_id, populate_existing=True)
            assert upload is not None
            if upload.status in uploads.FINAL:
                return self._outcome(upload)
            return self._finish(session, upload, status, message)

    @staticmethod
    def _outcome(upload: Upload) -> Outcome:
        return Outcome(upload.id, upload.status, upload.message, {
            "rows": upload.rows, "applied": upload.applied, "unchanged": upload.unchanged,
            "errors": upload.errors, "zeroed": upload.zeroed, "stale": upload.stale,
        })

    def _file_away(self, upload_id: int, results: Path, name: str, outcome: Outcome,
                   frames: ResultFrames) -> None:
        """After the commit: keep the original where it belongs, write the result file."""
        src = self._dirs.spool / name
        if outcome.status == "held":
            dst = self._dirs.held / name
        elif outcome.status == "rejected":
            dst = self._dirs.quarantine / name
        else:
            dst = self._dirs.archive(self._clock()) / name
        if src.exists():
            move(src, dst)
            with self._sessions() as session, session.begin():
                upload = session.get(Upload, upload_id)
                if upload is not None:
                    upload.kept_at = str(dst.relative_to(self._dirs.root))
        with self._sessions() as session:
            history, errors = uploads.show(session, upload_id)
        write_result(results, name, history, errors, frames)


def _orders_after(session: Session, source_id: int, rows: pl.DataFrame, default: datetime) -> pl.DataFrame:
    """Orders that took units from this source after the oldest as-of in the file."""
    as_of = rows.get_column("as_of").min() if rows.height else None
    since = min(as_of, default) if isinstance(as_of, datetime) else default
    found = orders.orders_after(session, source_id, since)
    return pl.DataFrame(found, schema=["sku", "ordered_at", "units"], orient="row")


def _quantity_header(parsed: ParsedFeed, columns: dict[str, str]) -> str:
    """The quantity column's header as the file spells it, for row errors."""
    try:
        index = headers.resolve(parsed.header, columns).quantity
    except FeedError:
        index = None
    return parsed.header[index] if index is not None and index < len(parsed.header) else "quantity"


def _sum_counts(plans: list[tuple[SourceInfo, FeedPlan]], total_rows: int, errors: int) -> dict[str, int]:
    counts = {"rows": total_rows, "applied": 0, "unchanged": 0, "zeroed": 0, "stale": 0,
              "errors": errors}
    recounted = 0
    for _, plan in plans:
        for key in ("applied", "unchanged", "zeroed", "stale"):
            counts[key] += plan.counts[key]
        recounted += plan.counts.get("recounted", 0)
    if recounted:
        counts["recounted"] = recounted
    return counts


def _source_row(session: Session, info: SourceInfo):  # type: ignore[no-untyped-def]
    from daemon.db.models import Source

    return session.get(Source, info.id)


def _split_by_location(frame: pl.DataFrame, info: SourceInfo, book: SourceBook,
                       parsed: ParsedFeed) -> tuple[list[tuple[SourceInfo, pl.DataFrame]], list[tuple]]:
    """Rows for the receiving source, or, with a location column, per named source."""
    if "location" not in frame.columns or frame.get_column("location").null_count() == frame.height:
        return [(info, frame)], []
    siblings = {s.name.lower(): s for s in book.in_merchant(info.merchant_id)}
    for location, mapped in info.settings.feed.location_map.items():
        if mapped.lower() in siblings:
            siblings[location.strip().lower()] = siblings[mapped.lower()]
    keyed = frame.with_columns(
        pl.col("location").str.strip_chars().str.to_lowercase().fill_null(info.name.lower())
        .alias("_loc")
    )
    groups: list[tuple[SourceInfo, pl.DataFrame]] = []
    errors: list[tuple] = []
    for (loc,), rows in keyed.group_by("_loc", maintain_order=True):
        target = siblings.get(str(loc))
        if target is None:
            errors += [(r["row"], "location", r["location"], r["sku"],
                        f"unknown location: no source named {r['location']!r} for merchant "
                        f"{info.merchant.name!r}") for r in rows.iter_rows(named=True)]
            continue
        groups.append((target, rows.drop("_loc")))
    return groups, errors
