"""Write the sample feeds under sample_files/feeds/ (run: python sample_files/make_samples.py).

Text samples are written byte-exact here too so encodings, BOMs and CRLFs are
unambiguous; the XLSX samples need openpyxl.
"""

from __future__ import annotations

import datetime
from pathlib import Path

import openpyxl

HERE = Path(__file__).resolve().parent / "feeds"

TEXT: dict[str, bytes] = {
    "good/generic_template.csv": b"sku,quantity,source,as_of\nA-100,12,main,2024-05-01T08:00:00Z\n0017,0,main,2024-05-01T08:00:00Z\nB-200,250,main,2024-05-01T08:00:00Z\n",
    "good/linnworks_stock.csv": b"SKU,Stock Level,Location,Minimum Level,Unit Cost,Bin Rack\nLW-1,14,Default,2,3.50,A1\nLW-2,0,Default,1,12.00,B4\nLW-3,7,Default,0,1.25,\n",
    "good/channeladvisor.tsv": b"Inventory Number\tQuantity\tWarehouse\nCA-RED-S\t5\tDC1\nCA-RED-M\t3\tDC1\nCA-RED-M\t9\tDC2\n",
    "good/shopify_inventory_export.csv": (
        b"Handle,Option1 Value,Option2 Value,Option3 Value,SKU,Location,Incoming (not editable),"
        b"Unavailable (not editable),Committed (not editable),Available (not editable),On hand (current),On hand (new)\n"
        b"tee,S,,,TEE-S,Shop location,0,0,1,4,5,6\n"
        b"tee,M,,,TEE-M,Shop location,0,0,0,not stocked,Not stocked,Not stocked\n"
        b"tee,L,,,TEE-L,Shop location,0,0,0,2,2,3\n"
    ),
    "good/ebay_file_exchange.csv": (
        b"#INFO,Version=0.0.2,Template= eBay-active-revise-price-quantity-download_US\n"
        b"#INFO Action and Category ID are required fields.\n"
        b"Action(SiteID=US|Country=US|Currency=USD|Version=1193|CC=UTF-8),Item number,Title,Custom label (SKU),Quantity\n"
        b"Revise,123456789012,Blue mug,MUG-BLUE,4\n"
        b"Revise,123456789013,Red mug,MUG-RED,0\n"
    ),
    "good/semicolon_decimal_comma_cp1252.csv": "Artikelnummer SKU;Menge;Lager\r\nKAFFEE-\u00c4;5,0;Köln\r\nTEE-Ü;1 200;Köln\r\n".replace("Artikelnummer SKU", "Item SKU").replace("Menge", "Qty").replace("Lager", "Warehouse").encode("cp1252"),
    "good/utf16_with_bom.csv": "sku\tquantity\r\nU16-1\t3\r\nU16-ß\t8\r\n".encode("utf-16"),
    "good/bom_crlf.csv": b"\xef\xbb\xbfsku,quantity\r\nBOM-1,1\r\nBOM-2,\"1,200\"\r\n\r\n\r\n",
    "good/header_only.csv": b"sku,quantity\n",
    "bad/excel_mangled_skus.csv": b"sku,quantity\n1.23E+05,4\n17,2\n00123,5\n",
    "bad/duplicates.csv": b"sku,quantity\nDUP-1,5\nDUP-2,1\nDUP-1,7\n",
    "bad/row_errors.csv": b"sku,quantity\nOK-1,5\n,3\nBAD-Q,5.5\nBAD-T,lots\nNEG,-2\nHUGE,5000000\n",
    "bad/binary_junk.csv": bytes(range(256)) * 8,
    "bad/empty.csv": b"",
    "bad/no_quantity_column.csv": b"sku,price\nA,1.00\n",
    "bad/not_a_zip.xlsx": b"sku,quantity\nA,1\n",
    # An encrypted workbook is an OLE compound file holding an EncryptedPackage stream.
    "bad/password_protected.xlsx": b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 504
    + "EncryptedPackage".encode("utf-16-le") + b"\x00" * 32,
}


def _good_xlsx(path: Path) -> None:
    workbook = openpyxl.Workbook()
    sheet = workbook.active
    sheet.title = "Inventory"
    sheet.append(["Stock report", None, None, None])  # preamble row
    sheet.append(["SKU", "Quantity", "As Of", "Notes"])
    sheet.append([12345, 5, datetime.datetime(2024, 5, 1, 9, 30), "=1/0"])
    sheet.append(["0017", 5.0, datetime.datetime(2024, 5, 1, 9, 30), "#NAME?"])
    sheet["D4"].data_type = "e"  # a real error cell, in a column the parser does not use
    sheet.append(["XL-3", 7, None, "ok"])
    workbook.create_sheet("Other").append(["nothing", "here"])
    workbook.save(path)


def _mangled_xlsx(path: Path) -> None:
    workbook = openpyxl.Workbook()
    sheet = workbook.active
    sheet.append(["sku", "quantity"])
    sheet.append(["1.23E+05", 1])
    sheet.append(["GOOD", 2])
    workbook.save(path)


def main() -> None:
    for name, data in TEXT.items():
        target = HERE / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    _good_xlsx(HERE / "good" / "inventory.xlsx")
    _mangled_xlsx(HERE / "bad" / "mangled_sku_text.xlsx")
    # The bad-input corpus (sample_files/bad/, cases.csv says what each file must give).
    from hostile import write_corpus  # run as a script: this folder is on sys.path

    write_corpus(HERE.parent / "bad")


if __name__ == "__main__":
    main()
