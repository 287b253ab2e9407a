"""`stockdrop history --format csv|xlsx` and `history fix`, as a user runs them, on SQLite and PostgreSQL."""

from __future__ import annotations

import csv
import io
import weakref
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import openpyxl
import pytest

from daemon import exitcodes
from daemon.db.uploads import HistoryRow
from daemon.reports import history_file
from tests.conftest import Database
from tests.helpers import ONE_WAREHOUSE, run_cli, write_config

Capsys = pytest.CaptureFixture[str]


@pytest.fixture
def config(tmp_path: Path, database: Database, capsys: Capsys) -> Path:
    path = write_config(tmp_path / "conf", ONE_WAREHOUSE, database_url=database.url)
    assert run_cli(capsys, "-c", path, "db", "upgrade").code == 0
    return path


def upload(capsys: Capsys, config: Path, folder: Path, name: str, content: str) -> dict[str, Any]:
    path = folder / name
    path.write_text(content, encoding="utf-8")
    result = run_cli(capsys, "-c", config, "upload", path, "--source", "wh1", "--json")
    assert result.code in (0, exitcodes.REJECTED), result.err
    return result.json()  # type: ignore[no-any-return]


# Names and contents a spreadsheet would run as formulas: each ends up in a cell.
FILES = {
    "=HYPERLINK(1).csv": "sku,quantity\nA,1\n",
    "+plus.csv": "sku,quantity\nA,2\nB,oops\n",
    "-minus.csv": "no header here\n",
    "@at.csv": "sku,quantity\nA,2\nB,oops\n",  # the same as +plus.csv: a duplicate
    "plain.csv": "sku,quantity\nC,3\n",
}


@pytest.fixture
def seeded(config: Path, tmp_path: Path, capsys: Capsys) -> list[dict[str, Any]]:
    """Five uploads of every outcome, and their history as --json prints it (newest first)."""
    folder = tmp_path / "files"
    folder.mkdir()
    for name, content in FILES.items():
        upload(capsys, config, folder, name, content)
    found: list[dict[str, Any]] = run_cli(capsys, "-c", config, "history", "--json").json()["uploads"]
    assert [u["status"] for u in found] == ["applied", "duplicate", "rejected", "applied_with_errors", "applied"]
    return found


def escaped(text: str | None) -> str | None:
    return "'" + text if text and text[0] in "=+-@\t\r" else text


def expected_cells(u: dict[str, Any]) -> list[object]:
    """One upload's row, as the spreadsheet should hold it, from its --json."""
    def when(value: str | None) -> datetime | None:
        return datetime.fromisoformat(value).astimezone(UTC).replace(tzinfo=None, microsecond=0) if value else None

    return [u["id"], when(u["received_at"]), u["merchant"], u["source"], u["kind"],
            escaped(u["original_name"]), u["status"], u["rows"], u["applied"], u["unchanged"], u["errors"],
            u["zeroed"], u["stale"], escaped(u["message"]), u["duplicate_of"],
            escaped(u["message"]) if u["status"] == "duplicate" else None, escaped(u["warnings"]),
            u["protocol"], escaped(u["user"]), u["remote_addr"], u["size"], u["elapsed_s"], u["sha256"],
            when(u["started_at"]), when(u["finished_at"])]


def as_csv_text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    return str(value)


def test_the_history_as_csv_reads_back_cell_by_cell_with_formulas_escaped(
        config: Path, seeded: list[dict[str, Any]], tmp_path: Path, capsys: Capsys) -> None:
    out = tmp_path / "history.csv"
    result = run_cli(capsys, "-c", config, "history", "--format", "csv", "-o", out)
    assert result.code == 0 and result.out.strip() == f"wrote {out} with 5 upload(s)"
    assert out.read_bytes().startswith(b"\xef\xbb\xbf")
    rows = list(csv.reader(out.open(encoding="utf-8-sig", newline="")))
    assert tuple(rows[0]) == history_file.HEADER
    assert "Duplicate rule" in rows[0] and "SHA-256" in rows[0] and "Rows rejected" in rows[0]
    assert rows[1:] == [[as_csv_text(v) for v in expected_cells(u)] for u in seeded]
    names = [r[rows[0].index("File")] for r in rows[1:]]
    assert names == ["plain.csv", "'@at.csv", "'-minus.csv", "'+plus.csv", "'=HYPERLINK(1).csv"]
    rejected = rows[3][rows[0].index("Reason / message")]
    assert rejected.startswith("'-minus.csv: no header row")  # the message starts with the file name
    duplicate = rows[2]
    assert duplicate[rows[0].index("Duplicate of")] == str(seeded[3]["id"])
    assert "same content as the latest applied feed" in duplicate[rows[0].index("Duplicate rule")]
    # The same, on stdout.
    printed = run_cli(capsys, "-c", config, "history", "--format", "csv")
    assert printed.code == 0
    assert list(csv.reader(io.StringIO(printed.out, newline=""))) == rows


def test_the_history_as_xlsx_reads_back_cell_by_cell_with_types(
        config: Path, seeded: list[dict[str, Any]], tmp_path: Path, capsys: Capsys) -> None:
    out = tmp_path / "history.xlsx"
    assert run_cli(capsys, "-c", config, "history", "-o", out).code == 0  # the format from the name
    sheet = openpyxl.load_workbook(out)["Upload history"]
    rows = [list(r) for r in sheet.iter_rows(values_only=True)]
    assert tuple(rows[0]) == history_file.HEADER
    assert rows[1:] == [expected_cells(u) for u in seeded]
    # Every text cell is a string, never a formula; times are real times.
    assert {c.data_type for row in sheet.iter_rows(min_row=2) for c in row if isinstance(c.value, str)} == {"s"}
    assert isinstance(rows[1][1], datetime) and sheet.freeze_panes == "A2"


def test_since_and_the_filters_pick_what_is_exported(
        config: Path, seeded: list[dict[str, Any]], tmp_path: Path, capsys: Capsys) -> None:
    out = tmp_path / "h.csv"
    tomorrow = (datetime.now(UTC) + timedelta(days=1)).date().isoformat()
    assert run_cli(capsys, "-c", config, "history", "--since", tomorrow, "--format", "csv", "-o", out).code == 0
    assert len(list(csv.reader(out.open(encoding="utf-8-sig")))) == 1  # the header only
    since = seeded[2]["received_at"]
    assert run_cli(capsys, "-c", config, "history", "--since", since, "--status", "applied", "-o", out).code == 0
    ids = [r[0] for r in list(csv.reader(out.open(encoding="utf-8-sig")))[1:]]
    assert ids == [str(seeded[0]["id"])]


def test_a_bad_since_or_format_is_one_clear_line(config: Path, tmp_path: Path, capsys: Capsys) -> None:
    bad = run_cli(capsys, "-c", config, "history", "--since", "yesterday", "--format", "csv")
    assert bad.code == exitcodes.FAILURE and bad.out == ""
    assert "--since: not an ISO date or time: 'yesterday'" in bad.err and "2026-05-01" in bad.err
    table = run_cli(capsys, "-c", config, "history", "--since", "2026-13-01")
    assert table.code == exitcodes.FAILURE and "'2026-13-01'" in table.err
    xlsx = run_cli(capsys, "-c", config, "history", "--format", "xlsx")
    assert xlsx.code == exitcodes.USAGE and "--format xlsx needs -o FILE" in xlsx.err
    both = run_cli(capsys, "-c", config, "history", "--format", "csv", "--json")
    assert both.code == exitcodes.USAGE and "choose one" in both.err
    assert not list(tmp_path.glob("**/.*.part"))


def test_the_table_and_json_stay_as_they_were(config: Path, seeded: list[dict[str, Any]], capsys: Capsys) -> None:
    table = run_cli(capsys, "-c", config, "history")
    assert table.code == 0 and table.out.splitlines()[0].split()[:3] == ["ID", "RECEIVED", "(UTC)"]
    assert len(table.out.splitlines()) == 6
    limited = run_cli(capsys, "-c", config, "history", "--limit", "2", "--json").json()["uploads"]
    assert [u["id"] for u in limited] == [u["id"] for u in seeded[:2]]


def test_history_fix_writes_the_quick_fix_file_and_it_applies_once_corrected(
        config: Path, tmp_path: Path, capsys: Capsys) -> None:
    folder = tmp_path / "files"
    folder.mkdir()
    first = upload(capsys, config, folder, "levels.csv", "sku,quantity\nA,1\nB,oops\nC,-2\n")
    assert first["status"] == "applied_with_errors"
    out = tmp_path / "fix.csv"
    result = run_cli(capsys, "-c", config, "history", "fix", str(first["upload_id"]), "-o", out)
    assert result.code == 0, result.err
    assert f"2 row(s) of upload {first['upload_id']}" in result.out
    assert f"stockdrop upload {out} --source wh1" in result.out
    assert out.read_text(encoding="utf-8") == "sku,quantity\nB,oops\nC,-2\n"
    out.write_text("sku,quantity\nB,4\nC,2\n", encoding="utf-8")
    again = run_cli(capsys, "-c", config, "upload", out, "--source", "wh1", "--json").json()
    assert again["status"] == "applied" and again["applied"] == 2
    stock = run_cli(capsys, "-c", config, "inventory", "--json").json()["inventory"]
    assert {r["sku"]: r["quantity"] for r in stock} == {"A": 1, "B": 4, "C": 2}

    none = run_cli(capsys, "-c", config, "history", "fix", str(again["upload_id"]))
    assert none.code == exitcodes.FAILURE and "has no failed rows" in none.err
    missing = run_cli(capsys, "-c", config, "history", "fix", "999")
    assert missing.code == exitcodes.FAILURE and "no upload with id 999" in missing.err


def a_row(number: int) -> HistoryRow:
    at = datetime(2026, 5, 1, tzinfo=UTC) + timedelta(seconds=number)
    return HistoryRow(id=number, merchant="acme", source="wh1", kind="feed", original_name=f"=f{number}.csv",
                      status="applied", protocol="sftp", user="wms", remote_addr="10.0.0.1", size=100,
                      sha256="0" * 64, elapsed_s=0.5, rows=10, applied=10, unchanged=0, errors=0, zeroed=0,
                      stale=0, message=None, warnings=None, duplicate_of=None, received_at=at, started_at=at,
                      finished_at=at)


@pytest.mark.parametrize("fmt", ["csv", "xlsx"])
def test_a_huge_history_is_written_row_by_row_not_held_in_memory(fmt: str, tmp_path: Path) -> None:
    """Each row read is dropped once written: at no time are more than a couple alive."""
    alive: weakref.WeakSet[HistoryRow] = weakref.WeakSet()
    most = 0
    total = 5_000

    def rows() -> Iterator[HistoryRow]:
        nonlocal most
        for number in range(1, total + 1):
            row = a_row(number)
            alive.add(row)
            most = max(most, len(alive))
            yield row
            del row

    path = tmp_path / f"h.{fmt}"
    if fmt == "csv":
        with open(path, "w", newline="", encoding="utf-8") as out:
            assert history_file.write_csv(rows(), out) == total
        written = sum(1 for _ in csv.reader(path.open(encoding="utf-8"))) - 1
    else:
        assert history_file.write_xlsx(rows(), path) == total
        book = openpyxl.load_workbook(path, read_only=True)
        written = sum(1 for _ in book["Upload history"].iter_rows(values_only=True)) - 1
        book.close()
    assert written == total and most <= 2


def test_the_history_is_read_from_the_database_in_batches_newest_first(database: Database) -> None:
    from sqlalchemy import insert

    from daemon.db.engine import session_factory
    from daemon.db.models import Merchant, Source, Upload
    from daemon.db.uploads import iter_history

    start = datetime(2026, 5, 1, tzinfo=UTC)
    sessions = session_factory(database.engine)
    with sessions() as session, session.begin():
        merchant = Merchant(name="acme", created_at=start)
        session.add(merchant)
        session.flush()
        source = Source(merchant_id=merchant.id, name="wh1", kind="warehouse", created_at=start)
        session.add(source)
        session.flush()
        session.execute(insert(Upload), [
            {"source_id": source.id, "original_name": f"f{n}.csv", "size": n, "sha256": f"{n:064d}",
             "protocol": "sftp", "status": "applied", "received_at": start + timedelta(minutes=n)}
            for n in range(1, 1001)])
    with sessions() as session:
        everything = list(iter_history(session, batch=64))
        recent = list(iter_history(session, since=start + timedelta(minutes=901), batch=64))
        assert next(iter_history(session, source="nope"), None) is None
    assert [r.size for r in everything] == list(range(1000, 0, -1))
    assert everything[0].source == "wh1" and everything[0].merchant == "acme"
    assert [r.size for r in recent] == list(range(1000, 900, -1))
