"""The digest's figures, counted from plain rows: no session, no clock, no I/O.

``summarise`` takes what the queries in ``db.digests`` read (the files of
the period, the ones still held from before, the exports, the oversold
order lines) and returns what the mail says, per source and per market,
with the files that need a person first. Tested with plain values.

What counts where:

- a file is counted in the period it was *received* in, with the outcome
  it has when the digest is made (one still being processed is
  ``in progress``);
- rows applied are the rows that changed stock (``applied``) of the
  files applied (a held file's rows wait for a person), rows rejected the
  row errors (``errors``) of every file of the period;
- a market's *delivered* are its exports delivered in the period; its
  *failed* the exports whose last failed try fell in the period (an
  export that failed and then went through counts in both); *owed* the
  exports not delivered when the digest was made.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from daemon.db.digests import DeliveryRow, OversellRow, UploadRow
from daemon.inventory.uploads import APPLIED, UploadStatus
from daemon.reports.period import Period

_DONE = {s.value for s in UploadStatus} - {UploadStatus.RECEIVED.value, UploadStatus.PROCESSING.value}
_APPLIED = {s.value for s in APPLIED}


@dataclass(frozen=True)
class FileCounts:
    received: int = 0
    applied: int = 0
    applied_with_errors: int = 0
    rejected: int = 0
    held: int = 0
    duplicate: int = 0
    in_progress: int = 0
    rows_applied: int = 0
    rows_unchanged: int = 0
    rows_rejected: int = 0

    @classmethod
    def of(cls, files: Iterable[UploadRow]) -> FileCounts:
        by: dict[str, int] = {}
        received = rows_applied = rows_unchanged = rows_rejected = 0
        for f in files:
            received += 1
            status = f.status if f.status in _DONE else "in_progress"
            by[status] = by.get(status, 0) + 1
            if status in _APPLIED:  # a held file's valid rows wait; they are not applied
                rows_applied += f.applied
                rows_unchanged += f.unchanged
            rows_rejected += f.errors
        return cls(received=received, applied=by.get("applied", 0),
                   applied_with_errors=by.get("applied_with_errors", 0), rejected=by.get("rejected", 0),
                   held=by.get("held", 0), duplicate=by.get("duplicate", 0), in_progress=by.get("in_progress", 0),
                   rows_applied=rows_applied, rows_unchanged=rows_unchanged, rows_rejected=rows_rejected)


@dataclass(frozen=True)
class Action:
    """A file a person should look at, and what to do about it."""

    upload_id: int
    owner: str
    name: str
    status: str
    received_at: datetime
    why: str
    todo: str
    commands: tuple[str, ...]


@dataclass(frozen=True)
class MarketFigures:
    name: str
    delivered: int
    lines_delivered: int
    failed: int
    owed: int
    last_delivery: datetime | None
    last_error: str | None  # of the export owed, or the last failed one
    files: FileCounts  # its order and cancellation files
    oversold_lines: int
    oversold_units: int


@dataclass(frozen=True)
class Summary:
    period: Period
    total: FileCounts
    sources: list[tuple[str, FileCounts]]
    markets: list[MarketFigures]
    actions: list[Action]
    oversells: list[OversellRow]
    # Uploads whose failed rows a person would correct and send again.
    with_failed_rows: list[int] = field(default_factory=list)


# Held first (nothing applied, and a person must decide), then rejected, then partly applied.
_URGENCY = {"held": 0, "rejected": 1, "applied_with_errors": 2}


def _action(f: UploadRow, *, before: bool) -> Action:
    if f.status == "held":
        why = f.message or "a full feed that looks truncated"
        # The ingest message ends with the commands; the digest lists them apart.
        why = why.split("; approve with `", 1)[0]
        since = " (still held from before this period)" if before else ""
        return Action(f.id, f.owner, f.name, f.status, f.received_at, why + since,
                      "Approve it if the file is complete, reject it if it was cut short; until then the stock "
                      f"stays as it was. {f.zeroed} SKU(s) would be set to 0.",
                      (f"stockdrop history approve {f.id}", f"stockdrop history reject {f.id}"))
    if f.status == "rejected":
        return Action(f.id, f.owner, f.name, f.status, f.received_at, f.message or "no reason was recorded",
                      "Nothing in it was applied: correct the file and send it again"
                      + (f" ({f.errors} row error(s), in the attached rejected rows)." if f.errors else "."),
                      (f"stockdrop history show {f.id}",))
    return Action(f.id, f.owner, f.name, f.status, f.received_at, f"{f.errors} row(s) were not applied",
                  f"The other rows were applied; correct the {f.errors} rejected row(s) (attached) and send "
                  "only those again.", (f"stockdrop history show {f.id}",))


def summarise(period: Period, files: Sequence[UploadRow], *, held_before: Sequence[UploadRow] = (),
              sources: Sequence[str], markets: Sequence[str], deliveries: Sequence[DeliveryRow] = (),
              last_deliveries: dict[str, datetime] | None = None,
              oversells: Sequence[OversellRow] = ()) -> Summary:
    """The figures of one digest: ``sources`` and ``markets`` name what it covers and the rows
    shown (zeros too: a warehouse that sent nothing is news), in that order; files of
    others are left out (a source whose own recipients get its digest)."""
    def shown(f: UploadRow) -> bool:
        return f.source in sources if f.source is not None else f.market in markets

    in_period = [f for f in files if period.holds(f.received_at) and shown(f)]
    by_source = [(name, FileCounts.of(f for f in in_period if f.source == name)) for name in sources]
    needing = sorted([f for f in in_period if f.status in _URGENCY],
                     key=lambda f: (_URGENCY[f.status], f.id))
    actions = [_action(f, before=True) for f in held_before if f.status == "held" and shown(f)]
    actions += [_action(f, before=False) for f in needing]
    actions.sort(key=lambda a: (_URGENCY[a.status], a.upload_id))
    figures = []
    last = dict(last_deliveries or {})
    for name in markets:
        mine = [d for d in deliveries if d.market == name]
        delivered = [d for d in mine if period.holds(d.delivered_at)]
        failed = [d for d in mine if d.attempts and period.holds(d.last_attempt_at)]
        owed = [d for d in mine if d.status != "delivered"]
        latest = max((d.delivered_at for d in delivered if d.delivered_at), default=None) or last.get(name)
        error = next((d.last_error for d in reversed(owed or failed) if d.last_error), None)
        sold = [o for o in oversells if o.market == name]
        figures.append(MarketFigures(
            name, len(delivered), sum(d.line_count for d in delivered), len(failed), len(owed), latest, error,
            FileCounts.of(f for f in in_period if f.market == name), len(sold), sum(o.shortfall for o in sold)))
    return Summary(period, FileCounts.of(in_period), by_source, figures, actions,
                   [o for o in oversells if o.market in markets],
                   [f.id for f in in_period if f.status in ("rejected", "applied_with_errors") and f.errors])
