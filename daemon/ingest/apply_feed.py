"""Apply one quantity feed: read it in the worker, plan it, write it in one transaction.

The apply transaction locks every source the file writes, then re-reads the
upload's status, so the same upload can never be applied twice, whichever
process or thread gets there first. The plan is the domain's
(``inventory.feed.plan_feed``); the outcome rule too (``inventory.uploads``).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeAlias
from zoneinfo import ZoneInfo

import polars as pl
from sqlalchemy.orm import Session, sessionmaker

from daemon.db import catalog, orders, uploads
from daemon.db import stock as stock_rows
from daemon.db.models import Source
from daemon.errors import FeedError
from daemon.formats import headers
from daemon.formats.cells import unescape_text_columns
from daemon.formats.feeds import ParsedFeed, ParseOptions
from daemon.ingest.outcomes import Outcome, Verify, finish, finish_alone, outcome_of
from daemon.ingest.sources import SourceBook, SourceInfo
from daemon.ingest.stock_store import StockStore, StockTransaction
from daemon.inventory.feed import FeedPlan, FeedPolicy, covers_source, plan_feed
from daemon.inventory.uploads import UploadStatus, outcome
from daemon.settings import IngestSettings

FeedReader = Callable[[Path, ParseOptions], ParsedFeed]
# What the result file needs besides the history: the rows read and each source's plan.
ResultFrames: TypeAlias = "tuple[ParsedFeed, list[tuple[SourceInfo, FeedPlan]]]"


def parse_options(info: SourceInfo, ingest: IngestSettings) -> ParseOptions:
    feed = info.settings.feed
    columns: dict[str, str] = dict(feed.columns.items())
    return ParseOptions(
        columns=columns, sheet=feed.sheet,
        negative="allow" if feed.mode == "adjust" else feed.negative,
        max_quantity=feed.max_quantity, duplicates=feed.duplicates,
        timezone=info.merchant.timezone, max_uncompressed_bytes=ingest.max_uncompressed_bytes,
        max_inflation_ratio=ingest.max_inflation_ratio, max_sku_length=ingest.max_sku_length,
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


class FeedApplier:
    def __init__(self, sessions: sessionmaker[Session], book: SourceBook, ingest: IngestSettings,
                 read: FeedReader, clock: Callable[[], datetime], *, node: str | None = None) -> None:
        self._node = node
        self._sessions = sessions
        self._book = book
        self._ingest = ingest
        self._read = read
        self._clock = clock
        self._stock = StockStore()

    def apply(self, upload_id: int, info: SourceInfo, path: Path,
              approved: bool, verify: Verify | None = None) -> tuple[Outcome, ResultFrames | None]:
        with self._sessions() as session:
            upload = uploads.get(session, upload_id)
            original, received_at = upload.original_name, upload.received_at
        try:
            parsed = self._read(path, parse_options(info, self._ingest))
        except FeedError as exc:
            return finish_alone(self._sessions, upload_id, UploadStatus.REJECTED, f"{original}: {exc}",
                                self._clock()), None
        as_of, as_of_note = default_as_of(info, original, received_at)
        warnings = [*parsed.warnings, *([as_of_note] if as_of_note else [])]
        stock = self._stock.begin()
        done, plans = self._apply(upload_id, info, parsed, as_of, warnings, approved, stock, verify)
        if done.status == UploadStatus.DUPLICATE:
            return done, None  # decided under the lock: nothing of this file was used
        stock.commit()  # committed: what the apply read and wrote is each source's stock now
        return done, (parsed, plans)

    def _apply(self, upload_id: int, info: SourceInfo, parsed: ParsedFeed, as_of: datetime,
               warnings: list[str], approved: bool,
               stock: StockTransaction,
               verify: Verify | None = None) -> tuple[Outcome, list[tuple[SourceInfo, FeedPlan]]]:
        """Plan and apply in one transaction."""
        now = self._clock()
        row_errors: list[tuple[Any, ...]] = [(e.row, e.column, e.value, e.sku, e.message)
                                             for e in parsed.errors]
        # SKUs we escaped in a template ('=SKU) come back as they were.
        frame = unescape_text_columns(parsed.frame, "sku")
        # SKUs named on rows that failed validation: a full feed must not zero them.
        invalid = unescape_text_columns(pl.DataFrame(
            {"sku": [e.sku for e in parsed.errors if e.sku is not None]}, schema={"sku": pl.Utf8}),
            "sku").get_column("sku").unique()
        groups, location_errors = _split_by_location(frame, info, self._book)
        row_errors += location_errors
        targets = [t.id for t, _ in groups]
        with self._sessions() as session, session.begin():
            # Every source this file writes, in id order, so two files that
            # name the same sources can never wait on each other.
            for source_id in sorted({info.id, *targets}):
                stock_rows.lock_source(session, source_id)
            upload = uploads.get(session, upload_id, fresh=True)
            if uploads.is_final(upload):
                return outcome_of(upload), []  # another process finished it meanwhile
            if verify is not None and (why := verify()) is not None:
                return finish(session, upload, UploadStatus.REJECTED, f"{upload.original_name}: {why}",
                              now=now), []
            once = info.settings.feed.mode == "adjust"
            # Again, under the lock: a feed applied since the first look may make this one
            # a duplicate, or no longer one.
            dup = None if approved else uploads.find_duplicate(session, upload, once=once)
            if dup is not None:
                return finish(session, upload, UploadStatus.DUPLICATE, dup.reason, now=now,
                              duplicate_of=dup.of.id), []
            uploads.set_warnings(upload, warnings)
            plans: list[tuple[SourceInfo, FeedPlan]] = []
            for target, rows in groups:
                current = stock.load(session, target.id)
                policy = feed_policy(target)
                catalog, lookalikes = _catalogue(session, target.merchant_id, rows, current, policy)
                later = _orders_after(session, target.id, rows, as_of) if policy.mode == "set" else None
                plans.append((target, plan_feed(
                    rows, current, catalog, policy, default_as_of=as_of, approved=approved,
                    quantity_column=_quantity_header(parsed, dict(target.settings.feed.columns.items())),
                    orders_after=later, invalid=invalid, lookalikes=lookalikes,
                    # Two locations mapped to one source: neither covers it.
                    covers=covers_source(policy, rows, invalid) and targets.count(target.id) == 1)))
            for _, plan in plans:
                row_errors += [(r["row"], r["column"], r["value"], r["sku"], r["message"])
                               for r in plan.problems.iter_rows(named=True)]
            stale_notes = [
                (r["row"], "as_of", r["as_of"].isoformat(), r["sku"],
                 f"skipped: older than the quantity already applied (as of {r['stored_as_of'].isoformat()})")
                for _, plan in plans for r in plan.stale.iter_rows(named=True)
            ]
            counts = _sum_counts(plans, parsed.total_rows, len(row_errors))
            recounted = counts.pop("recounted", 0)
            uploads.replace_errors(session, upload_id, row_errors + stale_notes)
            hold = next((p.hold_reason for _, p in plans if p.hold_reason), None)
            status, reason = outcome(
                rows=parsed.total_rows, errors=len(row_errors),
                taken=counts["applied"] + counts["unchanged"] + counts["stale"],
                reject_on_error=info.settings.feed.on_row_error == "reject_file", hold=hold)
            if status == UploadStatus.HELD:
                reason = f"{hold}; approve with `stockdrop history approve {upload_id}` or reject it"
            if reason is not None:
                return finish(session, upload, status, reason, now=now, counts=counts), plans
            uploads.record_apply(session, upload, once=once, node=self._node, now=now)
            for target, plan in plans:
                source = session.get(Source, target.id)
                assert source is not None
                stock.write(session, source, plan.writes, reference=f"upload:{upload_id}",
                            actor=f"upload:{upload.protocol}", now=now, default_as_of=as_of,
                            covers_as_of=plan.covers_as_of)
            note = (f"{recounted} unit(s) sold after the file's as-of time were subtracted again"
                    if recounted else None)
            return finish(session, upload, status, note, now=now, counts=counts), plans


def _catalogue(session: Session, merchant_id: int, rows: pl.DataFrame, current: pl.DataFrame,
               policy: FeedPolicy) -> tuple[pl.Series, dict[str, str]]:
    """The SKUs of ``rows`` the catalogue has beyond the source's stock, and for the
    ones it has not, a catalogue SKU each may be a mangled form of. Empty unless
    the source rejects unknown SKUs; only the SKUs not in the stock are looked up."""
    if policy.unknown_sku != "reject_row":
        return pl.Series("sku", [], pl.Utf8), {}
    unmatched = rows.select("sku").join(current.select("sku"), on="sku", how="anti").get_column("sku")
    wanted = unmatched.unique().to_list()
    known = catalog.known_skus(session, merchant_id, wanted)
    unknown = [sku for sku in wanted if sku not in known]
    return pl.Series("sku", sorted(known), pl.Utf8), (catalog.lookalikes(session, merchant_id, unknown)
                                                       if unknown else {})


def _orders_after(session: Session, source_id: int, rows: pl.DataFrame, default: datetime) -> pl.DataFrame:
    """Orders that took units from this source after the oldest as-of in the file."""
    as_of = rows.get_column("as_of").min() if rows.height else None
    since = min(as_of, default) if isinstance(as_of, datetime) else default
    found = orders.orders_after(session, source_id, since)
    return pl.DataFrame(found, schema=["sku", "ordered_at", "units"], orient="row")


def _quantity_header(parsed: ParsedFeed, columns: dict[str, str]) -> str:
    """The quantity column's header as the file spells it, for row errors."""
    try:
        index: int | None = headers.resolve(parsed.header, columns).quantity
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


def _split_by_location(frame: pl.DataFrame, info: SourceInfo, book: SourceBook,
                       ) -> tuple[list[tuple[SourceInfo, pl.DataFrame]], list[tuple[Any, ...]]]:
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
    errors: list[tuple[Any, ...]] = []
    for (loc,), rows in keyed.group_by("_loc", maintain_order=True):
        target = siblings.get(str(loc))
        if target is None:
            errors += [(r["row"], "location", r["location"], r["sku"],
                        (f"unknown location: no source named {r['location']!r} for merchant "
                        f"{info.merchant.name!r}")) for r in rows.iter_rows(named=True)]
            continue
        groups.append((target, rows.drop("_loc")))
    return groups, errors
