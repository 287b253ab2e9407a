"""The Quantity Update template: every SKU of a source with its current quantity.

A merchant downloads it, edits quantities in a spreadsheet and uploads it
back. The XLSX keeps SKUs as text (so 0017 stays 0017), allows only whole
numbers in the quantity column and freezes the header row. Uploading it
unchanged changes nothing.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable
from pathlib import Path

from openpyxl import Workbook
from openpyxl.styles import Font
from openpyxl.worksheet.datavalidation import DataValidation

from daemon.formats.cells import escape_cell

HEADER = ("sku", "quantity")


def write_csv(path: Path, rows: Iterable[tuple[str, int]]) -> int:
    count = 0
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(HEADER)
        for sku, qty in rows:
            writer.writerow((escape_cell(sku), qty))
            count += 1
    return count


def write_xlsx(path: Path, rows: Iterable[tuple[str, int]], *, max_quantity: int = 1_000_000) -> int:
    wb = Workbook()
    ws = wb.active
    ws.title = "Quantity Update"
    ws.freeze_panes = "A2"
    ws.column_dimensions["A"].width = 28
    ws.column_dimensions["B"].width = 12
    ws.append(list(HEADER))
    for cell in ws[1]:
        cell.font = Font(bold=True)
    count = 0
    for count, (sku, qty) in enumerate(rows, start=1):
        ws.append([sku, qty])
        sku_cell = ws.cell(row=count + 1, column=1)
        # A text cell is never evaluated, so "=1+2" stays a SKU; openpyxl
        # would otherwise store any string starting with "=" as a formula.
        sku_cell.data_type = "s"
        sku_cell.number_format = "@"  # text: a spreadsheet must not turn 0017 into 17
    # Whole numbers only, with room below the data for rows a person adds.
    rule = DataValidation(type="whole", operator="between", formula1="0", formula2=str(max_quantity),
                          showErrorMessage=True, errorTitle="Whole numbers only",
                          error=f"Enter a whole number from 0 to {max_quantity}.")
    rule.add(f"B2:B{count + 1001}")
    ws.add_data_validation(rule)
    # New rows a person types get text SKUs too.
    for row in range(count + 2, count + 1002):
        ws.cell(row=row, column=1).number_format = "@"
    wb.save(path)
    return count
