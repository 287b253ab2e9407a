"""The quick-fix file: an upload's failed rows in its own format, corrected and sent again."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from pathlib import Path

import openpyxl
import pytest

from daemon.db.models import Upload
from daemon.reports.quickfix import NoQuickFix, build, fix_name, quick_fix_file
from tests.ingest.conftest import IngestEnv


def quick_fix(env: IngestEnv, upload_id: int) -> tuple[str, bytes] | None:
    """Called as the digest calls it: a session of the daemon's, and the upload id."""
    with env.sessions() as session:
        return quick_fix_file(session, upload_id)


def why_none(env: IngestEnv, upload_id: int) -> str:
    with env.sessions() as session, pytest.raises(NoQuickFix) as caught:
        build(session, upload_id)
    return str(caught.value)


# An Excel export from a European locale: BOM, ";" and CRLF. Rows 3, 4 and 5 are bad;
# row 5 also carries text a spreadsheet would run as a formula.
EXCEL_CSV = ("\ufeffSKU;Stock Level;Note\r\n"
             "0017;5;ok\r\n"
             "A-1;oops;typo\r\n"
             "B-2;-4;Müller\r\n"
             "=HACK;x;=1+2\r\n"
             "C-3;7;\r\n").encode("utf-8")


def test_a_csv_quick_fix_holds_exactly_the_bad_rows_as_sent_and_applies_once_corrected(
        env: IngestEnv) -> None:
    first = env.upload("stock.csv", EXCEL_CSV)
    assert first.status == "applied_with_errors" and first.counts["errors"] == 3
    found = quick_fix(env, first.upload_id)
    assert found is not None
    name, data = found
    assert name == f"stock.fix-{first.upload_id}.csv"
    # Same encoding with its BOM, same delimiter, same line ends, same header.
    assert data.startswith(b"\xef\xbb\xbf") and data.count(b"\r\n") == 4 and b"\n" not in data.replace(b"\r\n", b"")
    rows = list(csv.reader(io.StringIO(data.decode("utf-8-sig"), newline=""), delimiter=";"))
    assert rows == [["SKU", "Stock Level", "Note"],
                    ["A-1", "oops", "typo"],
                    ["B-2", "-4", "Müller"],       # a signed number is not escaped
                    ["'=HACK", "x", "'=1+2"]]      # formula-like text is

    # The merchant corrects the quantities and sends it again through the normal intake.
    corrected = (data.decode("utf-8-sig").replace(";oops;", ";3;").replace(";-4;", ";4;")
                 .replace(";x;", ";9;"))
    again = env.upload(name, corrected.encode("utf-8-sig"))
    assert again.status == "applied", again.message
    assert (again.counts["rows"], again.counts["applied"], again.counts["errors"]) == (3, 3, 0)
    assert env.quantities() == {"0017": 5, "A-1": 3, "B-2": 4, "=HACK": 9, "C-3": 7}
    assert quick_fix(env, again.upload_id) is None  # nothing failed this time
    # The same corrected file once more states what is already applied: that is a duplicate.
    assert env.upload(name, corrected.encode("utf-8-sig")).status == "duplicate"


def test_a_cp1252_tab_file_comes_back_in_cp1252_with_tabs(env: IngestEnv) -> None:
    raw = "sku\tquantity\tnote\nA-1\t2\tcafé\nB-2\tfünf\tcrème\n".encode("cp1252")
    first = env.upload("levels.txt", raw)
    assert first.status == "applied_with_errors"
    found = quick_fix(env, first.upload_id)
    assert found is not None
    assert found == (f"levels.fix-{first.upload_id}.txt",
                     "sku\tquantity\tnote\nB-2\tfünf\tcrème\n".encode("cp1252"))


def stock_workbook(path: Path) -> bytes:
    """A WMS export: a title line, a blank row, the header on row 3, rows 5, 6 and 7 bad."""
    book = openpyxl.Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.title = "Stock"
    sheet["A1"] = "Inventory export 2026-05-01"
    sheet.append([])
    sheet.append(["SKU", "Quantity", "Bin"])
    sheet.append(["0017", 5, "A1"])
    sheet.append(["A-1", "lots", "B2"])
    sheet.append(["B-2", -3, "C3"])
    sheet.append(["C-3", 2.5, "D4"])
    sheet.append(["D-4", 8, "E5"])
    sheet["A4"].number_format = "@"
    book.save(path)
    return path.read_bytes()


def test_an_xlsx_quick_fix_is_a_workbook_of_the_bad_rows_with_their_cells_and_types(
        env: IngestEnv, tmp_path: Path) -> None:
    first = env.upload("stock.xlsx", stock_workbook(tmp_path / "stock.xlsx"))
    assert first.status == "applied_with_errors" and first.counts["errors"] == 3
    found = quick_fix(env, first.upload_id)
    assert found is not None
    name, data = found
    assert name == f"stock.fix-{first.upload_id}.xlsx"
    fixed = tmp_path / name
    fixed.write_bytes(data)
    book = openpyxl.load_workbook(fixed)
    assert book.sheetnames == ["Stock"]
    sheet = book["Stock"]
    assert [list(r) for r in sheet.iter_rows(values_only=True)] == [
        ["Inventory export 2026-05-01", None, None],
        [None, None, None],
        ["SKU", "Quantity", "Bin"],
        ["A-1", "lots", "B2"],
        ["B-2", -3, "C3"],
        ["C-3", 2.5, "D4"],
    ]
    assert [c.data_type for c in sheet[5]] == ["s", "n", "s"]

    for row, quantity in ((4, 4), (5, 3), (6, 2)):
        sheet.cell(row=row, column=2).value = quantity
    book.save(fixed)
    again = env.upload(name, fixed.read_bytes())
    assert again.status == "applied", again.message
    assert (again.counts["rows"], again.counts["applied"]) == (3, 3)
    assert env.quantities() == {"0017": 5, "A-1": 4, "B-2": 3, "C-3": 2, "D-4": 8}


def test_a_text_cell_that_looks_like_a_formula_stays_text_in_the_xlsx_quick_fix(
        env: IngestEnv, tmp_path: Path) -> None:
    book = openpyxl.Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.append(["sku", "quantity"])
    sheet.append(["=HACK", "none"])
    sheet["A2"].data_type = "s"
    book.save(tmp_path / "f.xlsx")
    first = env.upload("f.xlsx", (tmp_path / "f.xlsx").read_bytes())
    found = quick_fix(env, first.upload_id)
    assert found is not None
    cell = openpyxl.load_workbook(io.BytesIO(found[1]))["Sheet"]["A2"]
    assert (cell.value, cell.data_type) == ("=HACK", "s")


def test_a_file_rejected_whole_for_its_errors_comes_back_whole(make_env: Callable[..., IngestEnv]) -> None:
    env = make_env(feed='on_row_error = "reject_file"')
    first = env.upload("s.csv", "sku,quantity\nA,1\n\nB,bad\nC,3\n")
    assert first.status == "rejected"
    found = quick_fix(env, first.upload_id)
    assert found is not None
    # Every row was refused with the file, so every row goes back (the blank line does not).
    assert found[1] == b"sku,quantity\nA,1\nB,bad\nC,3\n"
    again = env.upload(found[0], found[1].replace(b"bad", b"2"))
    assert again.status == "applied"
    assert env.quantities() == {"A": 1, "B": 2, "C": 3}


def test_an_upload_with_nothing_failed_or_no_original_or_a_full_feed_has_none(
        make_env: Callable[..., IngestEnv]) -> None:
    env = make_env()
    good = env.upload("good.csv", "sku,quantity\nA,1\n")
    assert quick_fix(env, good.upload_id) is None
    assert "has no failed rows" in why_none(env, good.upload_id)

    bad = env.upload("bad.csv", "sku,quantity\nA,1\nB,x\n")
    with env.sessions() as session:
        upload = session.get(Upload, bad.upload_id)
        assert upload is not None and upload.kept_at
        kept = env.settings.data_dir / upload.kept_at
    kept.write_bytes(kept.read_bytes() + b"C,2\n")  # not the file that was received
    assert quick_fix(env, bad.upload_id) is None and "sha256 differs" in why_none(env, bad.upload_id)
    kept.unlink()  # archive retention removed it
    assert quick_fix(env, bad.upload_id) is None
    assert "is no longer kept" in why_none(env, bad.upload_id)

    full = make_env(feed='scope = "full"\nmax_zeroed_percent = 100', node="full")
    once = full.upload("all.csv", "sku,quantity\nA,1\nC,x\n")
    assert once.status == "applied_with_errors"
    assert quick_fix(full, once.upload_id) is None
    assert "would zero every SKU it leaves out" in why_none(full, once.upload_id)


def test_a_stale_row_is_not_a_failed_row(env: IngestEnv) -> None:
    env.upload("new.csv", "sku,quantity,as_of\nA,5,2026-05-02T00:00:00Z\n")
    old = env.upload("old.csv", "sku,quantity,as_of\nA,1,2026-05-01T00:00:00Z\nB,x,2026-05-01T00:00:00Z\n")
    assert old.counts["stale"] == 1
    found = quick_fix(env, old.upload_id)
    assert found is not None and found[1] == b"sku,quantity,as_of\nB,x,2026-05-01T00:00:00Z\n"


def test_the_fix_of_a_fix_is_named_for_the_first_file() -> None:
    assert fix_name("stock.csv", 12, ".csv") == "stock.fix-12.csv"
    assert fix_name("stock.fix-12.csv", 15, ".csv") == "stock.fix-15.csv"
    assert fix_name("../../etc/passwd", 3, ".csv") == "passwd.fix-3.csv"
    assert fix_name("C:\\exports\\Stock Levels.XLSX", 4, ".xlsx") == "Stock Levels.fix-4.xlsx"
    assert fix_name(".csv", 5, ".csv") == ".csv.fix-5.csv"


@pytest.mark.parametrize("name", ["libreoffice.ods", "legacy.xls"])
def test_a_workbook_openpyxl_cannot_write_back_gets_no_quick_fix_and_says_why(name: str) -> None:
    from daemon.errors import FeedError
    from daemon.formats.feeds import ParseOptions
    from daemon.formats.fix_file import chosen_rows

    raw = (Path(__file__).parents[2] / "sample_files" / "bad" / name).read_bytes()
    with pytest.raises(FeedError, match=r"quick-fix files are made of CSV and \.xlsx feeds, not of a \.(ods|xls)"):
        chosen_rows(raw, name, ParseOptions(), [2])
