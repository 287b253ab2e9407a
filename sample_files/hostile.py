"""Write hostile and unusual spreadsheet and text files, for the tests and ``python -m bench hostile``.

Big files (bombs, whitespace sheets, 200 MB lines) are made here on demand
instead of being committed: the zip members are written in streamed chunks,
so making a 2 GB bomb takes seconds and little memory.
"""

from __future__ import annotations

import struct
import zipfile
import zlib
from collections.abc import Iterable, Iterator
from pathlib import Path

_NS = 'xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"'
_R_NS = 'xmlns:r="http://schemas.openxmlformats.org/officeDocument/2006/relationships"'
_REL = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
_CHUNK = 1 << 20


def _text(value: str) -> str:
    return value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _column(index: int) -> str:
    letters = ""
    index += 1
    while index:
        index, rest = divmod(index - 1, 26)
        letters = chr(65 + rest) + letters
    return letters


def cell_xml(ref: str, value: object) -> str:
    """One cell: a number, an inline string, or ("=formula", cached value)."""
    if isinstance(value, tuple):
        formula, cached = value
        return f'<c r="{ref}" t="str"><f>{_text(formula.lstrip("="))}</f><v>{_text(str(cached))}</v></c>'
    if isinstance(value, int | float):
        return f'<c r="{ref}"><v>{value}</v></c>'
    return f'<c r="{ref}" t="inlineStr"><is><t>{_text(str(value))}</t></is></c>'


def rows_xml(rows: list[list[object]], start_row: int = 1) -> str:
    out = []
    for r, values in enumerate(rows, start=start_row):
        cells = "".join(cell_xml(f"{_column(c)}{r}", v) for c, v in enumerate(values) if v is not None)
        out.append(f'<row r="{r}">{cells}</row>')
    return "".join(out)


def sheet_parts(rows: list[list[object]], *, padding: int = 0, start_row: int = 1) -> Iterator[bytes]:
    """A worksheet's XML, with ``padding`` bytes of whitespace before the first row."""
    yield f'<?xml version="1.0" encoding="UTF-8"?><worksheet {_NS}><sheetData>'.encode()
    block = b" " * _CHUNK
    left = padding
    while left > 0:
        yield block[:min(left, _CHUNK)]
        left -= _CHUNK
    yield (rows_xml(rows, start_row) + "</sheetData></worksheet>").encode()


def write_xlsx(path: Path, sheet: Iterable[bytes], *, backslashes: bool = False, minimal: bool = False) -> Path:
    """An .xlsx package around one sheet's XML, streamed into the zip.

    ``minimal``: only the parts a reader needs (no styles, no properties).
    ``backslashes``: zip paths written with backslashes, as some Windows tools do.
    """
    def name(p: str) -> str:
        return p.replace("/", "\\") if backslashes else p

    types = ('<?xml version="1.0" encoding="UTF-8"?><Types xmlns="http://schemas.openxmlformats.org/package/2006/'
             'content-types"><Default Extension="rels" ContentType="application/vnd.openxmlformats-package.'
             'relationships+xml"/><Default Extension="xml" ContentType="application/xml"/><Override '
             'PartName="/xl/workbook.xml" ContentType="application/vnd.openxmlformats-officedocument.'
             'spreadsheetml.sheet.main+xml"/><Override PartName="/xl/worksheets/sheet1.xml" ContentType='
             '"application/vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml"/></Types>')
    root_rels = (f'<?xml version="1.0" encoding="UTF-8"?><Relationships xmlns="http://schemas.openxmlformats.org/'
                 f'package/2006/relationships"><Relationship Id="rId1" Type="{_REL}/officeDocument" '
                 f'Target="xl/workbook.xml"/></Relationships>')
    workbook = (f'<?xml version="1.0" encoding="UTF-8"?><workbook {_NS} {_R_NS}><sheets>'
                f'<sheet name="Sheet1" sheetId="1" r:id="rId1"/></sheets></workbook>')
    book_rels = (f'<?xml version="1.0" encoding="UTF-8"?><Relationships xmlns="http://schemas.openxmlformats.org/'
                 f'package/2006/relationships"><Relationship Id="rId1" Type="{_REL}/worksheet" '
                 f'Target="worksheets/sheet1.xml"/></Relationships>')
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(name("[Content_Types].xml"), types)
        archive.writestr(name("_rels/.rels"), root_rels)
        archive.writestr(name("xl/workbook.xml"), workbook)
        archive.writestr(name("xl/_rels/workbook.xml.rels"), book_rels)
        if not minimal:
            archive.writestr(name("docProps/app.xml"), '<?xml version="1.0"?><Properties/>')
        with archive.open(name("xl/worksheets/sheet1.xml"), "w", force_zip64=True) as member:
            for part in sheet:
                member.write(part)
    return path


def _central_entry(data: bytes, member: str) -> int:
    at = data.rfind(b"PK\x05\x06")
    cd_offset = struct.unpack_from("<L", data, at + 16)[0]
    while data[cd_offset:cd_offset + 4] == b"PK\x01\x02":
        name_len, extra_len, comment_len = struct.unpack_from("<HHH", data, cd_offset + 28)
        if data[cd_offset + 46:cd_offset + 46 + name_len].decode() == member:
            return cd_offset
        cd_offset += 46 + name_len + extra_len + comment_len
    raise KeyError(member)


def patch_member(path: Path, member: str, *, size: int | None = None, crc: int | None = None,
                 local_only: bool = False) -> None:
    """Overwrite a member's declared uncompressed size and/or CRC, in both headers (or the local one).

    The member must have been written without zip64 sizes (the 32-bit fields are patched).
    """
    data = bytearray(path.read_bytes())
    central = _central_entry(bytes(data), member)
    local = struct.unpack_from("<L", data, central + 42)[0]
    for header, crc_at, size_at in ((local, 14, 22), (central, 16, 24)):
        if local_only and header == central:
            continue
        if crc is not None:
            struct.pack_into("<L", data, header + crc_at, crc)
        if size is not None:
            struct.pack_into("<L", data, header + size_at, size)
    path.write_bytes(bytes(data))


def lying_bomb(path: Path, inflates_to: int, declares: int = 2_000_000) -> Path:
    """An .xlsx whose sheet declares ``declares`` bytes but inflates to ``inflates_to``.

    The sheet is a real one (header and a row) followed by whitespace, written
    as one deflate stream; then both headers are patched to the small size,
    the CRC left as the true one, as a hand-made bomb would be.
    """
    sheet = "xl/worksheets/sheet1.xml"
    head = (f'<?xml version="1.0" encoding="UTF-8"?><worksheet {_NS}><sheetData>'
            + rows_xml([["sku", "quantity"], ["BOMB-1", 1]]) + "</sheetData></worksheet>").encode()
    deflate = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    crc = zlib.crc32(head)
    body = [deflate.compress(head)]
    block, left = b" " * _CHUNK, inflates_to - len(head)
    while left > 0:
        piece = block[:min(left, _CHUNK)]
        crc = zlib.crc32(piece, crc)
        body.append(deflate.compress(piece))
        left -= len(piece)
    body.append(deflate.flush())
    write_xlsx(path, [b"placeholder"])
    # Rebuild with the bomb as a raw deflated member of the declared (lying) size.
    with zipfile.ZipFile(path) as source:
        parts = [(i, source.read(i.filename)) for i in source.infolist() if i.filename != sheet]
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for info, content in parts:
            archive.writestr(info.filename, content)
    compressed = b"".join(body)
    _append_raw_member(path, sheet, compressed, crc=crc, size=declares)
    return path


def _append_raw_member(path: Path, name: str, compressed: bytes, *, crc: int, size: int) -> None:
    """Add an already-deflated member, declaring the given CRC and size (true or not)."""
    data = bytearray(path.read_bytes())
    end = data.rfind(b"PK\x05\x06")
    entries, cd_size, cd_offset = struct.unpack_from("<HLL", data, end + 10)
    central = bytes(data[cd_offset:cd_offset + cd_size])
    encoded = name.encode()
    local = struct.pack("<4s5HLLLHH", b"PK\x03\x04", 20, 0, 8, 0, 0x21, crc,
                        len(compressed), size, len(encoded), 0) + encoded
    new_offset = cd_offset
    entry = struct.pack("<4s6HLLLHHHHHLL", b"PK\x01\x02", 20, 20, 0, 8, 0, 0x21, crc, len(compressed), size,
                        len(encoded), 0, 0, 0, 0, 0, new_offset) + encoded
    body = bytes(data[:cd_offset]) + local + compressed
    directory = central + entry
    eocd = struct.pack("<4s4HLLH", b"PK\x05\x06", 0, 0, entries + 1, entries + 1, len(directory), len(body), 0)
    path.write_bytes(body + directory + eocd)


def whitespace_sheet(path: Path, padding: int) -> Path:
    """An honest .xlsx with ``padding`` bytes of whitespace before its first row (compresses ~1000:1)."""
    return write_xlsx(path, sheet_parts([["sku", "quantity"], ["WS-1", 3]], padding=padding))


def long_line(path: Path, size: int) -> Path:
    """A "CSV" that is one line of ``size`` bytes without a line break."""
    with path.open("wb") as out:
        block = b"x" * _CHUNK
        left = size
        while left > 0:
            out.write(block[:min(left, _CHUNK)])
            left -= _CHUNK
    return path


def many_columns(path: Path, columns: int) -> Path:
    header = ",".join(["sku", "quantity", *(f"c{i}" for i in range(columns - 2))])
    path.write_text(header + "\n" + ",".join(["A", "1", *("" for _ in range(columns - 2))]) + "\n")
    return path


def ods(path: Path, rows: list[list[object]]) -> Path:
    """A LibreOffice .ods spreadsheet with one sheet."""
    def cell(value: object) -> str:
        if isinstance(value, int | float):
            return (f'<table:table-cell office:value-type="float" office:value="{value}">'
                    f"<text:p>{value}</text:p></table:table-cell>")
        return f'<table:table-cell office:value-type="string"><text:p>{_text(str(value))}</text:p></table:table-cell>'

    body = "".join("<table:table-row>" + "".join(cell(v) for v in r) + "</table:table-row>" for r in rows)
    content = (
        '<?xml version="1.0" encoding="UTF-8"?><office:document-content '
        'xmlns:office="urn:oasis:names:tc:opendocument:xmlns:office:1.0" '
        'xmlns:table="urn:oasis:names:tc:opendocument:xmlns:table:1.0" '
        'xmlns:text="urn:oasis:names:tc:opendocument:xmlns:text:1.0" office:version="1.2">'
        f'<office:body><office:spreadsheet><table:table table:name="Sheet1">{body}</table:table>'
        "</office:spreadsheet></office:body></office:document-content>"
    )
    manifest = (
        '<?xml version="1.0" encoding="UTF-8"?><manifest:manifest '
        'xmlns:manifest="urn:oasis:names:tc:opendocument:xmlns:manifest:1.0" manifest:version="1.2">'
        '<manifest:file-entry manifest:full-path="/" manifest:media-type="application/vnd.oasis.opendocument.'
        'spreadsheet"/><manifest:file-entry manifest:full-path="content.xml" manifest:media-type="text/xml"/>'
        "</manifest:manifest>"
    )
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(zipfile.ZipInfo("mimetype"), "application/vnd.oasis.opendocument.spreadsheet")
        archive.writestr("content.xml", content, compress_type=zipfile.ZIP_DEFLATED)
        archive.writestr("META-INF/manifest.xml", manifest, compress_type=zipfile.ZIP_DEFLATED)
    return path


def _zip(path: Path, members: dict[str, bytes], compression: int = zipfile.ZIP_DEFLATED) -> Path:
    with zipfile.ZipFile(path, "w", compression=compression) as archive:
        for name, content in members.items():
            archive.writestr(name, content)
    return path


def _honest_bomb(path: Path, size: int) -> Path:
    """A workbook that says truthfully it unpacks to ``size`` bytes (over the limit)."""
    return write_xlsx(path, sheet_parts([["sku", "quantity"], ["HB-1", 1]], padding=size))


def _unsupported_method(path: Path) -> Path:
    write_xlsx(path, sheet_parts([["sku", "quantity"], ["A", 1]]))
    with zipfile.ZipFile(path) as source:
        parts = {i.filename: source.read(i) for i in source.infolist()}
    with zipfile.ZipFile(path, "w") as archive:
        for name, content in parts.items():
            method = zipfile.ZIP_BZIP2 if name.endswith("sheet1.xml") else zipfile.ZIP_DEFLATED
            archive.writestr(name, content, compress_type=method)
    return path


def _patched(path: Path, **patch: object) -> Path:
    write_xlsx(path, sheet_parts([["sku", "quantity"], ["A", 1]]))
    member = str(patch.pop("member", "xl/worksheets/sheet1.xml"))
    patch_member(path, member, **patch)  # type: ignore[arg-type]
    return path


def _damaged_ods(path: Path) -> Path:
    ods(path, [["sku", "quantity"], ["A", 1]])
    with zipfile.ZipFile(path) as source:
        parts = [(i, source.read(i)) for i in source.infolist()]
    with zipfile.ZipFile(path, "w") as archive:
        for info, content in parts:
            archive.writestr(info, b"<not-a-spreadsheet" if info.filename == "content.xml" else content)
    return path


MiB = 1024 * 1024

# The corpus files too big to commit (sample_files/bad/cases.csv names them):
# made on demand by the tests and the benchmark.
GENERATED = {
    "lying_bomb.xlsx": lambda p: lying_bomb(p, inflates_to=256 * MiB, declares=2_000_000),
    "whitespace_sheet.xlsx": lambda p: whitespace_sheet(p, 500 * MiB),
    "honest_bomb.xlsx": lambda p: _honest_bomb(p, 600 * MiB),
    "long_line.csv": lambda p: long_line(p, 100_000_000),
    "many_columns.csv": lambda p: many_columns(p, 100_000),
    "long_preamble_line.csv": lambda p: p.write_bytes(b"# export\n" + b"y" * 2_000_000 + b"\nsku,quantity\nA,1\n"),
}


def _text_files() -> dict[str, bytes]:
    rows = b"".join(b"OK-%d,1\n" % i for i in range(40))  # beside a bad row, so it is not the only row
    return {
        "empty.csv": b"",
        "whitespace_only.csv": b"  \r\n\t\n\n",
        "binary_junk.csv": bytes(range(256)) * 8,
        "nul_bytes.csv": b"sku,quantity\nA\x00\x00\x01,1\n" * 50,
        "png_named_csv.csv": b"\x89PNG\r\n\x1a\n" + bytes(range(1, 9)) * 64,
        "no_sku_header.csv": b"code,qty\nA,1\n",
        "no_quantity_column.csv": b"sku,price\nA,1.00\n",
        "mixed_encodings.csv": "sku,quantity\nMÜLLER-UTF8,1\n".encode() + "MÜLLER-1252,2\n".encode("cp1252"),
        "utf16_cut_short.csv": "sku,quantity\nA,1\n".encode("utf-16") + b"\x00",
        "html_page.csv": b"<!DOCTYPE html>\n<html><head><title>404 Not Found</title></head></html>\n",
        "json_named_csv.csv": b'{"inventory": [{"sku": "A", "quantity": 1}]}\n',
        "duplicates.csv": b"sku,quantity\nDUP-1,5\nDUP-2,1\nDUP-1,7\n",
        "negative_quantity.csv": b"sku,quantity\nNEG,-2\nOK,1\n",
        "fraction_quantity.csv": b"sku,quantity\nFR,5.5\nOK,1\n",
        "text_quantity.csv": b"sku,quantity\nTXT,lots\nOK,1\n",
        "huge_quantity.csv": b"sku,quantity\nBIG,5000000\nOK,1\n",
        "empty_quantity.csv": b"sku,quantity\nNOQ,\nOK,1\n",
        "empty_sku.csv": b"sku,quantity\n,3\nOK,1\n",
        "scientific_sku.csv": b"sku,quantity\n1.23E+05,4\nOK,1\n",
        "long_sku.csv": b"sku,quantity\n" + b"L" * 10_000 + b",1\nOK,1\n",
        "control_char_sku.csv": b'sku,quantity\n"TAB\tSKU",1\n' + rows,
        "extra_fields.csv": b"sku,quantity\nEX,1,200\nOK,1\n",
        "bad_as_of.csv": b"sku,quantity,as_of\nAS,1,yesterday\nOK,1,2024-05-01T00:00:00Z\n",
        "ambiguous_dot.csv": b"sku;quantity\nAMB;1.200\nOK;1\n",
        "spreadsheet_error.csv": b"sku,quantity\nERR,#N/A\nOK,1\n",
        "cp1252_whole.csv": "sku,quantity\nMÜLLER,1\n".encode("cp1252"),
        "utf16_whole.csv": "sku\tquantity\r\nU16-ß\t8\r\n".encode("utf-16"),
        "not_a_zip.xlsx": b"sku,quantity\nA,1\n",
        "password_protected.xlsx": b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(504) + "EncryptedPackage".encode("utf-16-le"),
        "damaged.xls": b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(504),
        "damaged_zip.xlsx": b"PK\x03\x04" + bytes(200),
    }


def write_corpus(folder: Path) -> None:
    """The committed part of the bad-input corpus (small files only)."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in _text_files().items():
        (folder / name).write_bytes(data)
    ok = [["sku", "quantity"], ["A-1", 4], ["B-2", 5]]
    _zip(folder / "zip_not_workbook.xlsx", {"readme.txt": b"hello"})
    _patched(folder / "crc_mismatch.xlsx", crc=0x12345678)
    _patched(folder / "headers_disagree.xlsx", member="xl/workbook.xml", size=10, local_only=True)
    _patched(folder / "size_overstated.xlsx", size=10_000)
    _unsupported_method(folder / "unsupported_compression.xlsx")
    write_xlsx(folder / "formula_sku.xlsx", sheet_parts([["sku", "quantity"], [("=1+1", 2), 1], ["OK", 1]]))
    write_xlsx(folder / "formula_quantity.xlsx", sheet_parts([["sku", "quantity"], ["F", ("=2*3", 6)], ["OK", 1]]))
    write_xlsx(folder / "text_scientific_sku.xlsx", sheet_parts([["sku", "quantity"], ["1.23E+05", 1], ["OK", 1]]))
    write_xlsx(folder / "control_char_sku.xlsx", sheet_parts([["sku", "quantity"], ["X\x07Y", 1], ["OK", 1]]))
    write_xlsx(folder / "no_header.xlsx", sheet_parts([["code", "qty"], ["A", 1]]))
    write_xlsx(folder / "empty_sheet.xlsx", sheet_parts([]))
    write_xlsx(folder / "backslash_paths.xlsx", sheet_parts(ok), backslashes=True)
    write_xlsx(folder / "minimal_package.xlsx", sheet_parts(ok), minimal=True)
    ods(folder / "libreoffice.ods", ok)
    _damaged_ods(folder / "damaged.ods")
    try:
        import xlwt  # type: ignore[import-not-found]  # only to regenerate legacy.xls
    except ImportError:
        return
    book = xlwt.Workbook()
    sheet = book.add_sheet("Stock")
    for r, values in enumerate(ok):
        for c, value in enumerate(values):
            sheet.write(r, c, value)
    book.save(str(folder / "legacy.xls"))
