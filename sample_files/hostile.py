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
