"""The Quantity Update template: download, edit, upload back."""

from __future__ import annotations

import csv
from pathlib import Path

import openpyxl
import pytest

from daemon.formats import template
from tests.helpers import run_cli
from tests.ingest.conftest import IngestEnv

TRICKY = [("0017", 5), ("=HYPERLINK(\"x\")", 1), ("-5MM", 2), ("@SUM", 3), ("+44", 4), ("A,B", 6)]


def test_an_unchanged_csv_template_uploaded_back_changes_nothing(env: IngestEnv, tmp_path: Path) -> None:
    for sku, qty in TRICKY:
        env.set(sku, qty)
    path = tmp_path / "t.csv"
    template.write_csv(path, sorted(env.quantities().items()))
    ledger = env.ledger_count()
    out = env.upload("t.csv", path.read_bytes())
    assert out.status == "applied", env.show(out.upload_id)[1]
    assert out.counts["applied"] == 0 and out.counts["unchanged"] == len(TRICKY)
    assert env.ledger_count() == ledger


def test_csv_template_cells_that_a_spreadsheet_would_run_are_escaped(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    template.write_csv(path, TRICKY)
    cells = [row[0] for row in csv.reader(path.open())][1:]
    assert cells == ["0017", "'=HYPERLINK(\"x\")", "'-5MM", "'@SUM", "'+44", "A,B"]


def test_an_unchanged_xlsx_template_uploaded_back_changes_nothing(env: IngestEnv, tmp_path: Path) -> None:
    for sku, qty in TRICKY:
        env.set(sku, qty)
    path = tmp_path / "t.xlsx"
    template.write_xlsx(path, sorted(env.quantities().items()))
    out = env.upload("t.xlsx", path.read_bytes())
    assert out.status == "applied", env.show(out.upload_id)[1]
    assert out.counts["applied"] == 0 and out.counts["unchanged"] == len(TRICKY)


def test_the_xlsx_template_keeps_skus_as_text_validates_quantities_and_freezes_the_header(tmp_path: Path) -> None:
    path = tmp_path / "t.xlsx"
    template.write_xlsx(path, TRICKY, max_quantity=500)
    ws = openpyxl.load_workbook(path).active
    assert ws.freeze_panes == "A2"
    assert [c.value for c in ws[1]] == ["sku", "quantity"]
    sku_cells = [ws.cell(row=r, column=1) for r in range(2, len(TRICKY) + 2)]
    assert [c.value for c in sku_cells] == [s for s, _ in TRICKY]
    assert all(c.number_format == "@" and c.data_type == "s" for c in sku_cells)  # never formulas
    rules = ws.data_validations.dataValidation
    assert len(rules) == 1 and rules[0].type == "whole" and rules[0].formula2 == "500"
    assert "B2" in str(rules[0].sqref)


def test_an_edited_template_applies_only_the_edits(env: IngestEnv, tmp_path: Path) -> None:
    env.set("0017", 5)
    env.set("0018", 6)
    path = tmp_path / "t.xlsx"
    template.write_xlsx(path, sorted(env.quantities().items()))
    wb = openpyxl.load_workbook(path)
    wb.active["B3"] = 9
    wb.save(path)
    out = env.upload("t.xlsx", path.read_bytes())
    assert (out.counts["applied"], out.counts["unchanged"]) == (1, 1)
    assert env.quantities() == {"0017": 5, "0018": 9}


@pytest.mark.parametrize("fmt", ["csv", "xlsx"])
def test_the_template_command_writes_every_sku_of_the_source(tmp_path: Path, capsys, fmt: str) -> None:  # type: ignore[no-untyped-def]
    assert run_cli(capsys, "init", tmp_path / "d").code == 0
    cfg = tmp_path / "d" / "stockdrop.toml"
    out = tmp_path / f"t.{fmt}"
    res = run_cli(capsys, "-c", cfg, "template", "--source", "main-warehouse", "-o", out)
    assert res.code == 0 and "5 SKU" in res.out
    back = run_cli(capsys, "-c", cfg, "upload", out, "--source", "main-warehouse", "--json").json()
    assert back["status"] == "applied" and back["applied"] == 0 and back["unchanged"] == 5
