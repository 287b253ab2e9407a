"""Measure a workbook's zip archive by inflating it, before any reader trusts it.

The sizes a zip declares are the sender's word: a sheet can declare 2 MB and
inflate to 2 GB, and the native reader then inflates all of it. So every
member is inflated here once, in bounded chunks, counting the bytes as they
come out: against the limit on unpacked bytes, against the inflation ratio,
and against the member's own declared size. The CRC and the agreement of
the local and central headers are checked too; any lie rejects the file.
This costs one extra inflate (about 1 s per 500 MB) and constant memory.
"""

from __future__ import annotations

import struct
import zipfile
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from daemon.errors import FeedError

_LOCAL = struct.Struct("<4s5HLLLHH")
_LOCAL_MAGIC = b"PK\x03\x04"
_IN_CHUNK = 64 * 1024
_OUT_CHUNK = 1024 * 1024
# Below this many inflated bytes the ratio is not applied: a small workbook's
# styles and empty sheets compress far better than any sheet of data, and
# a few MB cannot hurt.
RATIO_FLOOR = 16 * 1024 * 1024
_ZIP64_MARK = 0xFFFFFFFF
_DATA_DESCRIPTOR = 0x08
_ENCRYPTED = 0x01


@dataclass(frozen=True)
class Limits:
    max_uncompressed: int
    max_ratio: float


def measure(raw: bytes, archive: zipfile.ZipFile, limits: Limits,
            sinks: Mapping[str, Callable[[bytes], None]] | None = None, what: str = "workbook") -> int:
    """Inflate every member of ``archive`` (read from ``raw``); return the bytes inflated.

    ``sinks`` get the inflated bytes of the members they are named for, as
    they come (a reader that needs them then does not inflate them again).
    Raises ``FeedError`` naming the member and what was wrong with it.
    """
    declared = sum(m.file_size for m in archive.infolist())
    if declared > limits.max_uncompressed:
        raise FeedError(
            f"the {what} would unpack to {declared:,} bytes, over the limit of "
            f"{limits.max_uncompressed:,} bytes (possible zip bomb)"
        )
    ratio_cap = max(int(len(raw) * limits.max_ratio), RATIO_FLOOR)
    total = 0
    for info in archive.infolist():
        if info.is_dir():
            continue
        total = _member(raw, info, total, limits, ratio_cap, what, (sinks or {}).get(info.filename))
    return total


def _member(raw: bytes, info: zipfile.ZipInfo, total: int, limits: Limits, ratio_cap: int, what: str,
            sink: Callable[[bytes], None] | None) -> int:
    name = info.filename
    if info.flag_bits & _ENCRYPTED:
        raise FeedError(f"the {what} is password-protected ({name!r} is encrypted); save it without a password")
    start = _data_start(raw, info, what)
    data = memoryview(raw)[start:start + info.compress_size]
    if len(data) < info.compress_size:
        raise FeedError(f"the {what} is a damaged zip archive: {name!r} is cut short")
    produced, crc = 0, 0

    def count(out: bytes) -> None:
        nonlocal produced, crc, total
        produced += len(out)
        total += len(out)
        crc = zlib.crc32(out, crc)
        if produced > info.file_size:
            raise FeedError(
                f"{name!r} in the {what} declares {info.file_size:,} bytes but inflates to more "
                f"(possible zip bomb); the file was rejected"
            )
        if total > limits.max_uncompressed:
            raise FeedError(
                f"the {what} unpacks to more than the limit of {limits.max_uncompressed:,} bytes "
                f"(possible zip bomb)"
            )
        if total > ratio_cap:
            raise FeedError(
                f"the {what} inflates to more than {limits.max_ratio:g} times its size of {len(raw):,} bytes "
                f"(possible zip bomb; the limit is max_inflation_ratio)"
            )
        if sink is not None and out:
            sink(out)

    if info.compress_type == zipfile.ZIP_STORED:
        for at in range(0, len(data), _OUT_CHUNK):
            count(bytes(data[at:at + _OUT_CHUNK]))
    elif info.compress_type == zipfile.ZIP_DEFLATED:
        inflater = zlib.decompressobj(-zlib.MAX_WBITS)
        try:
            for at in range(0, len(data), _IN_CHUNK):
                piece = bytes(data[at:at + _IN_CHUNK])
                while piece and not inflater.eof:
                    count(inflater.decompress(piece, _OUT_CHUNK))
                    piece = inflater.unconsumed_tail
                if inflater.eof:
                    break
            while not inflater.eof and (out := inflater.decompress(b"", _OUT_CHUNK)):
                count(out)  # output still held back after the last input
        except zlib.error as exc:
            raise FeedError(f"the {what} is a damaged zip archive: {name!r} does not inflate ({exc})") from None
        if not inflater.eof:
            raise FeedError(f"the {what} is a damaged zip archive: {name!r} is cut short")
    else:
        raise FeedError(
            f"{name!r} in the {what} uses zip compression method {info.compress_type}, "
            f"which is not supported (only stored and deflated)"
        )
    if produced != info.file_size:
        raise FeedError(
            f"{name!r} in the {what} declares {info.file_size:,} bytes but holds {produced:,}; "
            f"the file was rejected"
        )
    if crc != info.CRC:
        raise FeedError(
            f"the {what} is damaged: the checksum (CRC-32) of {name!r} does not match its contents"
        )
    return total


def _data_start(raw: bytes, info: zipfile.ZipInfo, what: str) -> int:
    offset = info.header_offset
    head = raw[offset:offset + _LOCAL.size]
    if len(head) < _LOCAL.size or not head.startswith(_LOCAL_MAGIC):
        raise FeedError(f"the {what} is a damaged zip archive: no local header for {info.filename!r}")
    _, _, flags, method, _, _, crc, csize, usize, name_len, extra_len = _LOCAL.unpack(head)
    # A reader may go by either header; a file whose two headers tell
    # different sizes or checksums is lying to one of them.
    lied = method != info.compress_type
    if not flags & _DATA_DESCRIPTOR:
        lied = lied or crc != info.CRC
        if csize != _ZIP64_MARK and usize != _ZIP64_MARK:
            lied = lied or (csize, usize) != (info.compress_size, info.file_size)
    if lied:
        raise FeedError(
            f"the {what}'s zip headers disagree about {info.filename!r} (its local and central "
            f"headers give different sizes, checksum or compression); the file was rejected"
        )
    return offset + _LOCAL.size + name_len + extra_len
