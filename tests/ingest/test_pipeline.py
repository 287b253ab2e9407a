"""The pipeline end to end: intake, parse, plan, apply, history, filing, results."""

from __future__ import annotations

import csv
import io
import zipfile
from pathlib import Path

import openpyxl
import pytest
from sqlalchemy import func, select

from tests.ingest.conftest import IngestEnv

SAMPLES = Path(__file__).parent.parent.parent / "sample_files" / "feeds"


def result_rows(env: IngestEnv, upload_id: int, source: str = "wh1") -> list[dict[str, str]]:
    files = list(env.source(source).results.glob(f"{upload_id:09d}__*.result.csv"))
    assert len(files) == 1, files
    return list(csv.DictReader(files[0].open(encoding="utf-8")))


def kept(env: IngestEnv, upload_id: int) -> Path:
    """Where the original bytes of an upload were kept after its outcome."""
    from daemon.db.models import Upload

    with env.sessions() as s:
        upload = s.get(Upload, upload_id)
        assert upload is not None and upload.kept_at
        return env.settings.data_dir / upload.kept_at


def test_a_good_feed_is_applied_recorded_archived_and_answered(env: IngestEnv) -> None:
    out = env.upload("stock.csv", "sku,quantity\n0017,5\nA-1,3\n")
    assert out.status == "applied"
    assert out.counts["rows"] == 2 and out.counts["applied"] == 2
    assert env.quantities() == {"0017": 5, "A-1": 3}
    row, errors = env.show(out.upload_id)
    assert (row.protocol, row.original_name, row.size) == ("cli", "stock.csv", 26)
    assert len(row.sha256) == 64 and row.started_at and row.finished_at and errors == []
    archived = kept(env, out.upload_id)
    assert "archive" in archived.parts and archived.read_text() == "sku,quantity\n0017,5\nA-1,3\n"
    assert not any(env.pipeline.dirs.spool.iterdir())
    rows = result_rows(env, out.upload_id)
    assert rows[0]["outcome"] == "applied"
    assert [(r["row"], r["sku"], r["outcome"]) for r in rows[1:]] == [("2", "0017", "applied"), ("3", "A-1", "applied")]


def test_the_same_file_uploaded_twice_is_applied_once(env: IngestEnv) -> None:
    first = env.upload("a.csv", "sku,quantity\nX,5\n")
    env.set("X", 9)  # someone changes it in between
    second = env.upload("a-again.csv", "sku,quantity\nX,5\n")
    assert first.status == "applied" and second.status == "duplicate"
    assert f"upload {first.upload_id}" in (second.message or "")
    assert env.quantities() == {"X": 9}
    assert "archive" in kept(env, second.upload_id).parts


def test_each_ledger_entry_carries_the_upload_id(env: IngestEnv) -> None:
    out = env.upload("a.csv", "sku,quantity\nX,5\n")
    with env.sessions() as s:
        from daemon.db import stock as store

        entry = store.ledger(s, sku="X")[0]
    assert entry.reference == f"upload:{out.upload_id}" and entry.reason == "feed"
    assert (entry.before, entry.after) == (0, 5)


def test_only_changed_quantities_are_written(env: IngestEnv) -> None:
    env.upload("a.csv", "sku,quantity\nX,5\nY,6\n")
    before = env.ledger_count()
    out = env.upload("b.csv", "sku,quantity\nX,5\nY,7\n")
    assert out.counts["applied"] == 1 and out.counts["unchanged"] == 1
    assert env.ledger_count() == before + 1


@pytest.mark.parametrize(
    ("name", "content", "reason"),
    [
        ("empty.csv", b"", "empty (0 bytes)"),
        ("header.csv", b"sku,quantity\n", "header but no rows"),
        ("noqty.csv", b"sku,price\nA,1.00\n", "quantity"),
        ("unknown.csv", b"foo,bar\n1,2\n", "foo"),
        ("junk.csv", bytes(range(256)) * 8, "not"),
        ("notzip.xlsx", b"sku,quantity\nA,1\n", "not a zip"),
        ("locked.xlsx", b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\0" * 600 + "EncryptedPackage".encode("utf-16-le"),
         "password-protected"),
    ],
    ids=["empty", "header-only", "no-quantity-column", "unknown-headers", "binary-junk",
         "xlsx-not-a-zip", "xlsx-password"],
)
def test_a_bad_file_is_rejected_with_a_reason_quarantined_and_nothing_applied(
    env: IngestEnv, name: str, content: bytes, reason: str
) -> None:
    env.set("A", 4)
    ledger = env.ledger_count()
    out = env.upload(name, content)
    assert out.status == "rejected"
    assert reason.lower() in (out.message or "").lower()
    assert env.quantities() == {"A": 4} and env.ledger_count() == ledger
    original = kept(env, out.upload_id)
    assert "quarantine" in original.parts and original.read_bytes() == content
    assert result_rows(env, out.upload_id)[0]["outcome"] == "rejected"


def test_undecodable_text_is_rejected_not_guessed(env: IngestEnv) -> None:
    out = env.upload("nul.csv", b"sku,quantity\nA\x00\x00\x01,1\n" * 50)
    assert out.status == "rejected"


def test_a_zip_bomb_xlsx_is_rejected_before_it_is_inflated(make_env) -> None:  # type: ignore[no-untyped-def]
    env = make_env(ingest="max_uncompressed_bytes = 1000000")
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("[Content_Types].xml", "<Types/>")
        z.writestr("xl/worksheets/sheet1.xml", b"\0" * 5_000_000)
    out = env.upload("bomb.xlsx", buf.getvalue())
    assert out.status == "rejected" and "zip bomb" in (out.message or "")


def test_a_file_over_max_file_bytes_is_rejected(make_env) -> None:  # type: ignore[no-untyped-def]
    env = make_env(ingest="max_file_bytes = 100")
    out = env.upload("big.csv", "sku,quantity\n" + "".join(f"S{i},1\n" for i in range(50)))
    assert out.status == "rejected" and "max_file_bytes" in (out.message or "")
    assert env.quantities() == {}


def test_row_errors_are_reported_with_row_column_value_and_the_rest_applies(env: IngestEnv) -> None:
    out = env.upload("mixed.csv", "sku,quantity\nA,1\nB,5.5\nC,lots\n,4\nD,-2\nE,3\n")
    assert out.status == "applied_with_errors"
    assert env.quantities() == {"A": 1, "E": 3}
    _, errors = env.show(out.upload_id)
    by_row = {e.row: e for e in errors}
    assert set(by_row) == {3, 4, 5, 6}
    assert (by_row[3].column, by_row[3].value) == ("quantity", "5.5")
    assert by_row[4].value == "lots" and by_row[6].value == "-2"
    assert all(e.message for e in errors)


def test_reject_file_mode_applies_nothing_when_any_row_is_wrong(make_env) -> None:  # type: ignore[no-untyped-def]
    env = make_env(feed='on_row_error = "reject_file"')
    out = env.upload("mixed.csv", "sku,quantity\nA,1\nB,x\n")
    assert out.status == "rejected" and "reject_file" in (out.message or "")
    assert env.quantities() == {}
    assert len(env.show(out.upload_id)[1]) == 1


def test_the_same_sku_twice_is_an_error_on_every_such_row(env: IngestEnv) -> None:
    out = env.upload("dup.csv", "sku,quantity\nA,1\nB,2\nA,3\n")
    assert env.quantities() == {"B": 2}
    rows = sorted(e.row for e in env.show(out.upload_id)[1])
    assert rows == [2, 4]


def test_duplicates_last_wins_when_the_source_says_so(make_env) -> None:  # type: ignore[no-untyped-def]
    env = make_env(feed='duplicates = "last_wins"')
    env.upload("dup.csv", "sku,quantity\nA,1\nA,3\n")
    assert env.quantities() == {"A": 3}


def test_negative_quantities_are_clamped_when_the_source_says_so(make_env) -> None:  # type: ignore[no-untyped-def]
    env = make_env(feed='negative = "clamp"')
    out = env.upload("neg.csv", "sku,quantity\nA,-3\n")
    assert out.status == "applied" and env.quantities() == {"A": 0}


def test_unknown_skus_are_row_errors_when_the_source_rejects_them(make_env) -> None:  # type: ignore[no-untyped-def]
    env = make_env(feed='unknown_sku = "reject_row"')
    env.set("KNOWN", 1)
    out = env.upload("u.csv", "sku,quantity\nKNOWN,5\nNEW,2\n")
    assert out.status == "applied_with_errors" and env.quantities() == {"KNOWN": 5}
    assert "unknown SKU" in env.show(out.upload_id)[1][0].message


def test_adjust_mode_adds_deltas_and_refuses_to_go_below_zero(make_env) -> None:  # type: ignore[no-untyped-def]
    env = make_env(feed='mode = "adjust"')
    env.set("A", 5)
    env.set("B", 1)
    out = env.upload("d.csv", "sku,quantity\nA,-2\nB,-3\nC,4\n")
    assert env.quantities() == {"A": 3, "B": 1, "C": 4}
    assert out.status == "applied_with_errors"
    error = env.show(out.upload_id)[1][0]
    assert "below 0" in error.message and (error.row, error.column, error.value) == (3, "quantity", "-3")


def test_an_adjust_error_names_the_column_as_the_file_spells_it(make_env) -> None:  # type: ignore[no-untyped-def]
    env = make_env(feed='mode = "adjust"')
    env.set("LW-1", 1)
    out = env.upload("lw.csv", "SKU,Stock Level\nLW-1,-5\n")
    error = env.show(out.upload_id)[1][0]
    assert (error.column, error.value, error.sku) == ("Stock Level", "-5", "LW-1")


def test_a_full_feed_zeroes_the_skus_it_leaves_out(make_env) -> None:  # type: ignore[no-untyped-def]
    env = make_env(feed='scope = "full"\nmax_zeroed_percent = 50')
    env.upload("f1.csv", "sku,quantity\nA,1\nB,2\nC,3\nD,4\n")
    out = env.upload("f2.csv", "sku,quantity\nA,1\nB,5\nC,3\n")
    assert out.status == "applied" and out.counts["zeroed"] == 1
    assert env.quantities() == {"A": 1, "B": 5, "C": 3, "D": 0}
    zeroed = [r for r in result_rows(env, out.upload_id) if r["outcome"].startswith("zeroed")]
    assert [r["sku"] for r in zeroed] == ["D"]


def test_a_full_feed_leaves_a_sku_whose_row_is_invalid_as_it_was(make_env) -> None:  # type: ignore[no-untyped-def]
    # A typo in one cell, or a SKU listed twice, is not the SKU left out.
    from datetime import UTC, datetime

    from daemon.db import stock as store

    t1, t2 = datetime(2026, 11, 30, 8, tzinfo=UTC), datetime(2026, 11, 30, 20, tzinfo=UTC)
    env = make_env(feed='scope = "full"\nmax_zeroed_percent = 100')
    env.upload("f1.csv", "sku,quantity\nA,1\nB,2\nC,3\nD,4\nE,5\n", received_at=t1)
    out = env.upload("f2.csv", "sku,quantity\nA,7\nB,x\nD,1\nD,2\nE,5\n", received_at=t2)
    assert (out.status, out.counts["zeroed"], out.counts["applied"]) == ("applied_with_errors", 1, 1)
    assert env.quantities() == {"A": 7, "B": 2, "C": 0, "D": 4, "E": 5}
    outcomes = {(r["sku"], r["outcome"]) for r in result_rows(env, out.upload_id) if r["sku"]}
    assert {("B", "error"), ("D", "error"), ("C", "zeroed (absent from a full feed)")} <= outcomes
    # The file stated nothing valid about B and D: they stay known as of the first feed only.
    with env.sessions() as s:
        as_of = {r.sku: r.as_of for r in store.inventory(s, merchant="acme", source="wh1")}
    assert (as_of["B"], as_of["D"], as_of["A"], as_of["E"]) == (t1, t1, t2, t2)


def test_a_truncated_full_feed_is_held_then_applied_when_approved(make_env) -> None:  # type: ignore[no-untyped-def]
    from daemon.ingest import held

    env = make_env(feed='scope = "full"')
    env.upload("f1.csv", "sku,quantity\n" + "".join(f"S{i},5\n" for i in range(10)))
    out = env.upload("f2.csv", "sku,quantity\nS0,1\nS1,1\n")
    assert out.status == "held" and "max_zeroed_percent" in (out.message or "")
    assert env.quantities()["S5"] == 5 and env.quantities()["S0"] == 5
    assert "held" in kept(env, out.upload_id).parts
    approved = held.approve(env.sessions, env.pipeline.dirs, env.pipeline.processor, out.upload_id, "test")
    assert approved.status == "applied"
    assert env.quantities()["S5"] == 0 and env.quantities()["S0"] == 1
    assert "archive" in kept(env, out.upload_id).parts


def test_a_held_feed_that_is_rejected_applies_nothing(make_env) -> None:  # type: ignore[no-untyped-def]
    from daemon.ingest import held

    env = make_env(feed='scope = "full"\nmin_rows = 3')
    env.upload("f1.csv", "sku,quantity\nA,1\nB,1\nC,1\n")
    out = env.upload("f2.csv", "sku,quantity\nA,9\n")
    assert out.status == "held" and "min_rows" in (out.message or "")
    held.reject(env.sessions, env.pipeline.dirs, env.book, out.upload_id, "test")
    assert env.quantities() == {"A": 1, "B": 1, "C": 1}
    assert "quarantine" in kept(env, out.upload_id).parts
    assert env.show(out.upload_id)[0].status == "rejected"


def test_a_row_older_than_what_is_stored_is_skipped_and_reported(env: IngestEnv) -> None:
    env.upload("new.csv", "sku,quantity,as_of\nA,5,2026-11-29T10:00:00Z\nB,1,2026-11-29T10:00:00Z\n")
    out = env.upload("old.csv", "sku,quantity,as_of\nA,9,2026-11-29T09:00:00Z\nB,2,2026-11-29T11:00:00Z\n")
    assert env.quantities() == {"A": 5, "B": 2}
    assert out.counts["stale"] == 1
    stale = [r for r in result_rows(env, out.upload_id) if r["outcome"] == "stale"]
    assert [r["sku"] for r in stale] == ["A"]


def test_an_as_of_from_the_file_name_keeps_an_older_snapshot_from_overwriting(make_env) -> None:  # type: ignore[no-untyped-def]
    env = make_env(feed='as_of_from = "filename"\nfilename_pattern = "stock_(?P<ts>\\\\d{14})"')
    env.upload("stock_20261129100000.csv", "sku,quantity\nA,5\n")
    out = env.upload("stock_20261129090000.csv", "sku,quantity\nA,8\n")
    assert env.quantities() == {"A": 5} and out.counts["stale"] == 1


def test_a_multi_location_file_applies_each_row_to_its_source(env: IngestEnv) -> None:
    out = env.upload("multi.csv", "SKU,Stock Level,Location\nA,1,wh1\nA,2,WH2\nB,3,\nC,4,mars\n")
    assert env.quantities("wh1") == {"A": 1, "B": 3}
    assert env.quantities("wh2") == {"A": 2}
    errors = env.show(out.upload_id)[1]
    assert len(errors) == 1 and errors[0].column == "location" and errors[0].value == "mars"


def test_a_configured_sheet_is_read_from_a_workbook_with_several(make_env, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    env = make_env(feed='sheet = "Stock"')
    wb = openpyxl.Workbook()
    wb.active.title = "Notes"
    wb.active.append(["nothing", "here"])
    ws = wb.create_sheet("Stock")
    ws.append(["SKU", "Qty"])
    ws.append(["0017", 4])
    path = tmp_path / "book.xlsx"
    wb.save(path)
    out = env.upload("book.xlsx", path.read_bytes())
    assert out.status == "applied" and env.quantities() == {"0017": 4}


@pytest.mark.parametrize("sample", sorted(p.name for p in (SAMPLES / "good").iterdir() if p.name != "header_only.csv"))
def test_every_good_sample_applies_without_errors(make_env, sample: str) -> None:  # type: ignore[no-untyped-def]
    # The samples name their producers' own locations; map them to our sources.
    env = make_env(feed='location_map = { main = "wh1", Default = "wh1", DC1 = "wh1", DC2 = "wh2", '
                        '"Köln" = "wh1", "Shop location" = "wh1" }')
    out = env.upload(sample, (SAMPLES / "good" / sample).read_bytes())
    assert out.status == "applied", (out.message, env.show(out.upload_id)[1])
    assert out.counts["applied"] + out.counts["unchanged"] == out.counts["rows"] > 0


def test_the_cli_upload_uses_the_same_pipeline(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    from tests.helpers import run_cli

    assert run_cli(capsys, "init", tmp_path / "d").code == 0
    cfg = tmp_path / "d" / "stockdrop.toml"
    feed = tmp_path / "f.csv"
    feed.write_text("sku,quantity\n0001234,3\n")
    res = run_cli(capsys, "-c", cfg, "upload", feed, "--source", "main-warehouse", "--json")
    assert res.code == 0, res.err
    assert res.json()["status"] == "applied" and res.json()["applied"] == 1
    assert feed.exists()  # the user's own file is left alone
    bad = tmp_path / "bad.csv"
    bad.write_text("nothing,useful\n1,2\n")
    res = run_cli(capsys, "-c", cfg, "upload", bad, "--source", "main-warehouse")
    assert res.code == 7 and "rejected" in res.out
    hist = run_cli(capsys, "-c", cfg, "history", "--json").json()["uploads"]
    assert [u["status"] for u in hist] == ["rejected", "applied"]
    shown = run_cli(capsys, "-c", cfg, "history", "show", str(hist[1]["id"]), "--json").json()
    assert shown["upload"]["original_name"] == "f.csv" and shown["errors"] == []
    only = run_cli(capsys, "-c", cfg, "history", "--status", "rejected", "--json").json()["uploads"]
    assert len(only) == 1


def test_a_held_feed_is_approved_or_rejected_from_the_cli(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    from tests.helpers import ONE_WAREHOUSE, run_cli, write_config

    feed = '\nscope = "full"\nmin_rows = 3'
    cfg = write_config(tmp_path, ONE_WAREHOUSE.replace('unknown_sku = "create"', 'unknown_sku = "create"' + feed))
    assert run_cli(capsys, "-c", cfg, "db", "upgrade").code == 0
    full = tmp_path / "full.csv"
    full.write_text("sku,quantity\n" + "".join(f"S{i},3\n" for i in range(10)))
    assert run_cli(capsys, "-c", cfg, "upload", full, "--source", "wh1").code == 0
    short = tmp_path / "short.csv"
    short.write_text("sku,quantity\nS0,1\n")
    held = run_cli(capsys, "-c", cfg, "upload", short, "--source", "wh1", "--json")
    assert held.code == 7 and held.json()["status"] == "held"
    upload_id = str(held.json()["upload_id"])
    assert run_cli(capsys, "-c", cfg, "history", "--status", "held", "--json").json()["uploads"][0]["id"] == int(upload_id)
    approved = run_cli(capsys, "-c", cfg, "history", "approve", upload_id, "--json")
    assert approved.code == 0 and approved.json()["status"] == "applied" and approved.json()["zeroed"] == 9
    again = run_cli(capsys, "-c", cfg, "history", "approve", upload_id)
    assert again.code == 1 and "not held" in again.err
    short.write_text("sku,quantity\nS1,1\n")
    second = run_cli(capsys, "-c", cfg, "upload", short, "--source", "wh1", "--json").json()
    assert second["status"] == "held"
    rejected = run_cli(capsys, "-c", cfg, "history", "reject", str(second["upload_id"]), "--json")
    assert rejected.code == 0 and rejected.json()["status"] == "rejected"
    inv = run_cli(capsys, "-c", cfg, "inventory", "--sku", "S1", "--json").json()["inventory"]
    assert inv[0]["quantity"] == 0  # zeroed by the approved feed, untouched by the rejected one


def test_two_sources_creating_the_same_new_skus_at_once_share_one_product_each(make_env) -> None:  # type: ignore[no-untyped-def]
    import threading

    from daemon.db.models import Product, Stock

    env = make_env()
    body = "sku,quantity\n" + "".join(f"NEW-{i:05d},{i % 7}\n" for i in range(5000))
    uploads = [env.arrive("wh1.csv", body, source="wh1"), env.arrive("wh2.csv", body + "EXTRA,1\n", source="wh2")]
    start, outcomes = threading.Barrier(2), []

    def apply(upload_id: int) -> None:
        start.wait()
        outcomes.append(env.pipeline.processor.process(upload_id))

    threads = [threading.Thread(target=apply, args=(u,)) for u in uploads]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert sorted(o.status for o in outcomes) == ["applied", "applied"]
    with env.sessions() as s:
        assert s.scalar(select(func.count()).select_from(Product)) == 5001
        per_source = dict(s.execute(select(Stock.source_id, func.count()).group_by(Stock.source_id)).all())
    assert per_source == {env.source("wh1").id: 5000, env.source("wh2").id: 5001}
    assert env.quantities("wh1")["NEW-00006"] == 6 and env.quantities("wh2")["NEW-00006"] == 6


def test_the_pipeline_has_a_parser_process_per_worker(make_env, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from daemon.ingest.pipeline import Pipeline

    env = make_env(ingest="workers = 3")
    own = Pipeline(env.settings, env.sessions, env.book)
    try:
        assert own.parsers.size == env.settings.ingest.workers == 3
        assert own.dispatcher._workers == 3
    finally:
        own.close()
