"""What a digest says: its subject and its body, from the summary (no session, no clock).

Times are shown in the merchant's time zone; every figure comes from
``reports.summary``. The body is ``render`` blocks, so the plain-text and
the HTML part say the same.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from daemon.reports import render
from daemon.reports.outbox import Attachment
from daemon.reports.summary import Summary

_OVERSELLS_LISTED = 50
_COMMAND_SAYS = {"approve": "apply it after all", "reject": "refuse it; nothing is applied",
                 "show": "the upload and its row errors"}


@dataclass(frozen=True)
class Heading:
    """Who and when a digest is for."""

    merchant: str
    zone: ZoneInfo
    label: str  # the merchant, or "acme/wh1" for a source with recipients of its own
    schedule: str | None  # "daily at 07:00 Europe/Berlin"; None for a digest sent by hand

    def when(self, value: datetime | None) -> str:
        if value is None:
            return "never"
        return value.astimezone(self.zone).strftime("%Y-%m-%d %H:%M %Z")


def _plural(n: int, one: str, many: str | None = None) -> str:
    return f"{n} {one if n == 1 else (many or one + 's')}"


def subject(summary: Summary, head: Heading) -> str:
    total, actions = summary.total, len(summary.actions)
    need = f"{_plural(actions, 'file')} need{'s' if actions == 1 else ''} action" if actions else "nothing needs action"
    return (f"[stockdrop] {head.label}: upload history {head.when(summary.period.start)} to "
            f"{head.when(summary.period.end)}: {_plural(total.received, 'file')}, {need}")


def _headline(summary: Summary) -> str:
    t = summary.total
    line = (f"{_plural(t.received, 'file')} received: {t.applied} applied, {t.applied_with_errors} applied with "
            f"errors, {t.rejected} rejected, {t.held} held, {_plural(t.duplicate, 'duplicate')}")
    if t.in_progress:
        line += f", {t.in_progress} still in progress"
    line += f"; {_plural(t.rows_applied, 'row')} applied, {_plural(t.rows_rejected, 'row')} rejected."
    actions = len(summary.actions)
    return line + (f" {_plural(actions, 'file')} need{'s' if actions == 1 else ''} action." if actions
                   else " Nothing needs action.")


def _actions(summary: Summary, head: Heading) -> list[render.Block]:
    out: list[render.Block] = [render.Heading(f"Needs action first ({len(summary.actions)})")]
    if not summary.actions:
        return [*out, render.Para("Nothing: every file of the period was applied, or was a duplicate of one "
                                  "that was.")]
    for a in summary.actions:
        status = a.status.replace("_", " ")
        tone = "warn" if a.status == "applied_with_errors" else "bad"
        out += [render.Para(f"Upload {a.upload_id}: {a.name} ({a.owner}), {status}", strong=True, tone=tone),
                render.Facts([("Why", a.why), ("What to do", a.todo), ("Received", head.when(a.received_at))]),
                render.Commands([(c, _COMMAND_SAYS[c.split()[2]]) for c in a.commands])]
    return out


def _sources(summary: Summary) -> list[render.Block]:
    rows = [[name, *(str(v) for v in (c.received, c.applied, c.applied_with_errors, c.rejected, c.held,
                                      c.duplicate, c.rows_applied, c.rows_rejected))]
            for name, c in summary.sources]
    out: list[render.Block] = [
        render.Heading("Files by source"),
        render.Table(["Source", "Received", "Applied", "With errors", "Rejected", "Held", "Duplicate",
                      "Rows applied", "Rows rejected"], rows, frozenset(range(1, 9)), "No sources.")]
    if summary.total.in_progress:
        out.append(render.Para(f"{_plural(summary.total.in_progress, 'file')} of the period were still being "
                               "processed when this digest was made; `stockdrop history` shows how they ended."))
    return out


def _markets(summary: Summary, head: Heading) -> list[render.Block]:
    if not summary.markets:
        return []
    rows = [[m.name, str(m.delivered), str(m.lines_delivered), str(m.failed), str(m.owed), head.when(m.last_delivery),
             str(m.files.received), str(m.files.rejected), str(m.oversold_lines)] for m in summary.markets]
    out: list[render.Block] = [
        render.Heading("Markets"),
        render.Table(["Market", "Delivered", "Lines sent", "Failed", "Owed now", "Last delivery", "Order files",
                      "Rejected", "Oversold lines"], rows, frozenset({1, 2, 3, 4, 6, 7, 8}))]
    troubled = [f"{m.name}: {_plural(m.owed, 'export')} owed, {_plural(m.failed, 'export')} failed in the period"
                + (f"; last error: {m.last_error}" if m.last_error else "")
                for m in summary.markets if m.owed or m.failed]
    if troubled:
        out.append(render.Items("Deliveries that did not go through at once (they are kept and sent again; "
                                "`stockdrop exports --market M` shows every try):", troubled))
    return out


def _oversells(summary: Summary, head: Heading) -> list[render.Block]:
    sold = summary.oversells
    units = sum(o.shortfall for o in sold)
    out: list[render.Block] = [render.Heading(f"Oversells ({_plural(len(sold), 'line')}, "
                                              f"{_plural(units, 'unit')} short)")]
    if not sold:
        return [*out, render.Para("None: every order line of the period found its units.")]
    rows = [[o.market, o.order_id, o.line_id, o.sku or "-", head.when(o.ordered_at), str(o.quantity),
             str(o.shortfall), o.source or "-"] for o in sold[:_OVERSELLS_LISTED]]
    out.append(render.Table(["Market", "Order", "Line", "SKU", "Ordered", "Sold", "Short", "Short in"], rows,
                            frozenset({5, 6})))
    if len(sold) > _OVERSELLS_LISTED:
        out.append(render.Para(f"And {len(sold) - _OVERSELLS_LISTED} more: `stockdrop orders` lists them all."))
    out.append(render.Para("An oversold line sold units that no source had: stock never goes below 0, so the "
                           "market was told less than it sold. Check the source's count, and ship or cancel."))
    return out


def _attached(attachments: list[Attachment], *, shown_rows: int, total_rows: int) -> list[render.Block]:
    out: list[render.Block] = [render.Heading("Attached")]
    if not attachments:
        return [*out, render.Para("Nothing: no row was rejected in the period.")]
    items = []
    for a in attachments:
        if a.filename.startswith("rejected-rows-"):
            items.append(f"{a.filename}: {_plural(shown_rows, 'rejected row')}, each with its upload, row, "
                         "column, value and the reason")
        else:
            items.append(f"{a.filename}: a quick-fix file, the failed rows of one upload in its own format; "
                         "correct them and send the file again")
    out.append(render.Items("Files attached to this mail:", items))
    if total_rows > shown_rows:
        out.append(render.Para(f"Only the first {shown_rows} of {total_rows} rejected rows are attached; "
                               "`stockdrop history show ID` lists every row of an upload."))
    return out


def body(summary: Summary, head: Heading, attachments: list[Attachment], *, shown_rows: int,
         total_rows: int) -> render.Body:
    period = summary.period
    scope = (f"From {head.when(period.start)} to {head.when(period.end)}, for "
             + (f"merchant {head.merchant}." if head.label == head.merchant else f"{head.label}."))
    out = render.Body(f"Upload history of {head.label}", width=820)
    out.add(render.Para(scope), render.Para(_headline(summary), strong=True))
    out.add(*_actions(summary, head), *_sources(summary), *_markets(summary, head), *_oversells(summary, head),
            *_attached(attachments, shown_rows=shown_rows, total_rows=total_rows))
    since = period.start.strftime("%Y-%m-%dT%H:%M:%SZ")
    out.add(render.Heading("More"),
            render.Commands([(f"stockdrop history --since {since}", "every file since the period began"),
                             ("stockdrop outbox --kind digest", "the digests written, and whether they went")]))
    out.footer = (f"Sent by Stockdrop, {head.schedule}; the next digest covers from {head.when(period.end)}."
                  if head.schedule else
                  "Sent by Stockdrop on request (stockdrop report send); the daily digest still covers this period.")
    return out
