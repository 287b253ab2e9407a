"""The digest of a history made through the real pipeline, mailed over real SMTP and read back."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import openpyxl
import pytest

from daemon.ingest.contained import ParserPool
from tests.conftest import Database
from tests.reports.conftest import SmtpServer
from tests.reports.digest_world import Clock, DigestWorld, make_digest_world


@pytest.fixture(scope="module")
def parsers() -> Iterator[ParserPool]:
    with ParserPool(1) as pool:
        yield pool


@pytest.fixture
def digest_world(tmp_path: Path, database: Database, parsers: ParserPool,
                 start_smtp: Callable[..., SmtpServer]) -> Iterator[Callable[..., tuple[DigestWorld, SmtpServer]]]:
    worlds: list[DigestWorld] = []

    def make(clock: Clock | None = None, **reports: object) -> tuple[DigestWorld, SmtpServer]:
        world, server = make_digest_world(tmp_path, database, parsers, start_smtp, clock, **reports)
        worlds.append(world)
        return world, server

    yield make
    for world in worlds:
        world.pipeline.dispatcher.stop(10)


def seed(world: DigestWorld) -> tuple[datetime, dict[str, int]]:
    """A day of files, orders and exports; returns when the period starts, and the uploads by name."""
    ids: dict[str, int] = {}
    start = world.clock() - timedelta(seconds=1)
    before = start - timedelta(hours=2)
    # Before the period: not counted, whatever became of them.
    ids["old"] = world.upload("old.csv", "sku,quantity\nOLD,1\n", at=before)
    ids["full"] = world.upload("full.csv", "sku,quantity\n" + "".join(f"S{i},3\n" for i in range(10)),
                               source="wh2", at=before)
    world.list_skus(["A1", "A2"])
    # The period.
    ids["a"] = world.upload("a.csv", "sku,quantity\nA1,5\nA2,6\n")
    ids["b"] = world.upload("b.csv", "sku,quantity\nA1,7\nA3,oops\n@SUM(A1),=1+2\n")
    ids["c"] = world.upload("c.csv", "sku,quantity\nA1,8\n")
    ids["c-again"] = world.upload("c-again.csv", "sku,quantity\nA1,8\n")
    ids["bad"] = world.upload("bad.csv", "sku,quantity\nX,lots\n")
    ids["empty"] = world.upload("empty.csv", "")
    ids["short"] = world.upload("short.csv", "sku,quantity\nS0,1\n", source="wh2")
    ids["w3"] = world.upload("w3.csv", "sku,quantity\nB1,oops\n", source="wh3")
    stamp = world.clock().strftime("%Y-%m-%dT%H:%M:%SZ")
    ids["orders"] = world.orders("orders.csv", f"O-1,1,A2,10,{stamp}\nO-2,1,A1,1,{stamp}\n")
    ids["orders-bad"] = world.orders("orders-bad.csv", f"O-3,1,A1,x,{stamp}\n")
    [amz] = world.export("amz")
    [shop] = world.export("shop", down=9)
    assert (amz.status, shop.status) == ("delivered", "failing")
    return start, ids


def test_a_seeded_day_is_counted_number_by_number_and_mailed_with_both_parts_and_the_rejected_rows(
        digest_world: Callable[..., tuple[DigestWorld, SmtpServer]]) -> None:
    world, server = digest_world(attach_xlsx=True)
    start, ids = seed(world)
    statuses = {name: world.status(i) for name, i in ids.items()}
    assert statuses == {
        "old": "applied", "full": "applied", "a": "applied", "b": "applied_with_errors", "c": "applied",
        "c-again": "duplicate", "bad": "rejected", "empty": "rejected", "short": "held", "w3": "rejected",
        "orders": "applied", "orders-bad": "rejected"}
    world.clock.now = datetime.now(UTC) + timedelta(seconds=1)

    written = world.digests().write_now(world.settings.merchants[0], since=start)

    assert [(w.recipients, w.new) for w in written] == [(["buyer@acme.example"], True), (["ops@3pl.example"], True)]
    assert world.mark() is None  # a digest by hand does not move the schedule
    # The same period and recipients again: the same digest, already in the outbox.
    again = world.digests().write_now(world.settings.merchants[0], since=start)
    assert [(a.email_id, a.new) for a in again] == [(w.email_id, False) for w in written]
    assert len(world.outbox()) == 2
    assert [o.status for o in world.mailer.send_pending()] == ["sent", "sent"]
    merchant, wh3 = server.inbox.received
    assert merchant.rcpt_tos == ["buyer@acme.example"] and wh3.rcpt_tos == ["ops@3pl.example"]

    msg = merchant.message
    assert msg["Subject"].startswith("[stockdrop] acme: upload history ")
    assert msg["Subject"].endswith(": 9 files, 5 files need action")
    assert msg["X-Stockdrop-Kind"] == "digest" and msg["Auto-Submitted"] == "auto-generated"
    assert re.fullmatch(r"<digest-manual\.\d+\.\d{8}T\d{6}Z\.[0-9a-f]{12}@example\.com>", msg["Message-ID"])
    assert msg.get_content_type() == "multipart/mixed"
    text = merchant.part("plain")
    assert ("9 files received: 3 applied, 1 applied with errors, 3 rejected, 1 held, 1 duplicate; "
            "6 rows applied, 4 rows rejected. 5 files need action.") in text
    table = rows_of(text, "Source")
    assert table["merchant-fulfilled"] == ["0"] * 8
    #                         received applied errors rejected held dup rows-applied rows-rejected
    assert table["wh1"] == ["6", "2", "1", "2", "0", "1", "4", "3"]
    assert table["wh2"] == ["1", "0", "0", "0", "1", "0", "0", "0"]
    assert "wh3" not in table  # its own recipients get it
    markets = rows_of(text, "Market")
    amz, shop = markets["amz"], markets["shop"]
    #                    delivered lines failed owed
    assert amz[:4] == ["1", "2", "0", "0"] and shop[:4] == ["0", "0", "1", "1"]
    assert shop[4] == "never" and amz[4] != "never"
    assert amz[-3:] == ["0", "0", "0"] and shop[-3:] == ["2", "1", "1"]  # order files, rejected, oversold
    assert "shop: 1 export owed, 1 export failed in the period; last error: connection refused (try 2)" in text
    # No single source had 10 of A2 (wh1 had 6; orders are not split here): the line is short
    # 10 at the first source in priority, as the allocation recorded it.
    assert "Oversells (1 line, 10 units short)" in text
    [oversell] = [line.split() for line in section(text, "Oversells (1 line, 10 units short)").splitlines()
                  if "O-1" in line]
    assert oversell[:4] == ["shop", "O-1", "1", "A2"] and oversell[-3:] == ["10", "10", "merchant-fulfilled"]

    # What needs action, held first, each with what to do.
    actions = section(text, "Needs action first (5)")
    order = [int(n) for n in re.findall(r"^Upload (\d+):", actions, re.MULTILINE)]
    assert order == [ids["short"], ids["bad"], ids["empty"], ids["orders-bad"], ids["b"]]
    assert f"stockdrop history approve {ids['short']}" in actions
    assert f"stockdrop history reject {ids['short']}" in actions
    assert "full feed would set 9 of 10 SKUs (90.0%) to 0" in actions and "9 SKU(s) would be set to 0" in actions
    assert "Why:        the file is empty (0 bytes)" in actions
    assert f"stockdrop history show {ids['b']}" in actions

    html = merchant.part("html")
    assert "<img" not in html and "<style" not in html and "<script" not in html and "http" not in html
    assert "@SUM(A1)" not in html  # row errors are in the attachment, not the mail
    assert "&lt;" not in text

    attachments = {p.get_filename(): p for p in msg.iter_attachments()}
    csv_name = next(n for n in attachments if n.startswith("rejected-rows-") and n.endswith(".csv"))
    assert re.fullmatch(r"rejected-rows-acme-\d{4}-\d{2}-\d{2}\.csv", csv_name)
    assert attachments[csv_name].get_content_type() == "text/csv"
    raw = attachments[csv_name].get_payload(decode=True)
    assert raw.startswith(b"\xef\xbb\xbf")
    lines = list(csv.DictReader(io.StringIO(raw.decode("utf-8-sig"))))
    assert [(int(r["upload"]), r["row"], r["column"], r["value"], r["sku"]) for r in lines] == [
        (ids["b"], "3", "quantity", "oops", "A3"),
        (ids["b"], "4", "quantity", "'=1+2", "'@SUM(A1)"),  # a spreadsheet shows them, never runs them
        (ids["bad"], "2", "quantity", "lots", "X"),
        (ids["orders-bad"], "2", "quantity", "x", "")]  # the order reader names no SKU on it
    assert all(r["file"] and r["error"] for r in lines) and lines[2]["file"] == "bad.csv"
    xlsx_name = csv_name.replace(".csv", ".xlsx")
    sheet = openpyxl.load_workbook(io.BytesIO(attachments[xlsx_name].get_payload(decode=True))).active
    assert sheet is not None
    cells = list(sheet.iter_rows(values_only=True))
    assert cells[0] == ("upload", "file", "source", "received_at", "row", "column", "value", "sku", "error")
    assert [(c[0], c[4], c[6], c[7]) for c in cells[1:]] == [
        (ids["b"], 3, "oops", "A3"), (ids["b"], 4, "'=1+2", "'@SUM(A1)"), (ids["bad"], 2, "lots", "X"),
        (ids["orders-bad"], 2, "x", None)]
    assert sheet.cell(row=3, column=7).data_type == "s"  # text, not a formula
    # A quick-fix file per feed with failed rows: those rows only, in the file's own shape, to correct and resend.
    assert sorted(n for n in attachments if ".fix-" in n) == sorted([f"b.fix-{ids['b']}.csv",
                                                                     f"bad.fix-{ids['bad']}.csv"])
    fix_b = attachments[f"b.fix-{ids['b']}.csv"].get_payload(decode=True).decode("utf-8").splitlines()
    assert fix_b[0] == "sku,quantity" and fix_b[1] == "A3,oops" and len(fix_b) == 3 and "SUM(A1)" in fix_b[2]
    assert attachments[f"bad.fix-{ids['bad']}.csv"].get_payload(decode=True).decode() == "sku,quantity\nX,lots\n"

    # The source with recipients of its own gets its part alone.
    text3 = wh3.part("plain")
    assert rows_of(text3, "Source") == {"wh3": ["1", "0", "0", "1", "0", "0", "0", "1"]}
    assert "Markets" not in text3 and wh3.message["Subject"].startswith("[stockdrop] acme/wh3: upload history")
    attached = sorted(p.get_filename() for p in wh3.message.iter_attachments() if p.get_filename().endswith(".csv"))
    assert attached[0].startswith("rejected-rows-acme-") and attached[1:] == [f"w3.fix-{ids['w3']}.csv"]
    assert world.mailer.send_pending() == [] and len(server.inbox.received) == 2


def section(text: str, heading: str) -> str:
    """The text under a heading of the plain-text part, up to the next heading."""
    start = text.index(f"\n{heading}\n")
    rest = text[start + len(heading) + 2:]
    found = re.search(r"\n\n[A-Z][^\n]*\n-{3,}\n", rest)
    return rest[: found.start()] if found else rest


def rows_of(text: str, first_header: str) -> dict[str, list[str]]:
    """A plain-text table whose header starts with ``first_header``: first cell -> the others."""
    lines = text.splitlines()
    at = next(i for i, line in enumerate(lines) if line.split()[:1] == [first_header])
    out = {}
    for line in lines[at + 2:]:
        if not line.strip():
            break
        cells = re.split(r"\s{2,}", line.strip())
        out[cells[0]] = cells[1:]
    return out
