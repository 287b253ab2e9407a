"""Turn a feed's raw bytes into UTF-8 bytes, or refuse them.

Polars reads UTF-8 bytes directly, so valid UTF-8 (the common case, and the
large files) is passed through without building a Python ``str``; only
UTF-16 and CP-1252 files are transcoded. Bytes that are not text are a
``FeedError``: guessing an encoding for binary junk would turn it into
nonsense rows instead of one clear rejection.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from daemon.errors import FeedError

_BOM_UTF8 = b"\xef\xbb\xbf"
_BOM_UTF16 = (b"\xff\xfe", b"\xfe\xff")
# Control bytes a text feed never contains; tab, LF, CR and form feed are fine.
_CONTROL = bytes(b for b in range(32) if b not in (9, 10, 12, 13)) + b"\x7f"
_SAMPLE = 64 * 1024
# Real exports hold at most a stray control character; binary files are
# full of them, so a small ratio separates the two without false alarms.
_MAX_CONTROL_RATIO = 0.01


@dataclass
class Decoded:
    data: bytes  # UTF-8, no BOM
    encoding: str
    warnings: list[str] = field(default_factory=list)


def decode(raw: bytes) -> Decoded:
    """Return ``raw`` as UTF-8 bytes with the encoding it was found in."""
    if raw.startswith(_BOM_UTF16):
        return _from_utf16(raw)
    if raw.startswith(_BOM_UTF8):
        body, encoding = raw[len(_BOM_UTF8):], "utf-8-sig"
    else:
        body, encoding = raw, "utf-8"
    if b"\x00" in body:
        raise FeedError(
            "the file contains NUL bytes, so it is not a text feed "
            "(UTF-16 files need a byte-order mark)"
        )
    _refuse_binary(body[:_SAMPLE])
    # isascii() is a fast C scan; only non-ASCII files pay for a full decode.
    if body.isascii():
        return Decoded(body, encoding)
    try:
        body.decode("utf-8")
        return Decoded(body, encoding)
    except UnicodeDecodeError as exc:
        bad_at = exc.start
    _refuse_mixed(body, bad_at)
    try:
        text = body.decode("cp1252")
    except UnicodeDecodeError as exc:
        raise FeedError(
            f"the file has bytes that are neither UTF-8 nor CP-1252 text "
            f"(byte 0x{body[exc.start]:02X} at offset {exc.start})"
        ) from None
    return Decoded(
        text.encode("utf-8"), "cp1252", ["decoded as CP-1252 (not valid UTF-8)"]
    )


# A well-formed UTF-8 sequence of two to four bytes. CP-1252 text almost never
# holds one (it would take a letter like 'Ã' followed by a symbol like '©').
_UTF8_MULTIBYTE = re.compile(
    rb"[\xc2-\xdf][\x80-\xbf]|\xe0[\xa0-\xbf][\x80-\xbf]|[\xe1-\xec\xee\xef][\x80-\xbf]{2}"
    rb"|\xed[\x80-\x9f][\x80-\xbf]|\xf0[\x90-\xbf][\x80-\xbf]{2}|[\xf1-\xf3][\x80-\xbf]{3}"
    rb"|\xf4[\x80-\x8f][\x80-\xbf]{2}"
)


def _refuse_mixed(body: bytes, bad_at: int) -> None:
    """A file with valid UTF-8 text and bytes that are not UTF-8 is two files pasted together.

    Decoded whole as CP-1252 it would turn the UTF-8 part into mojibake
    (MÜLLER into MÃœLLER) and apply it: better one clear rejection.
    """
    if not _UTF8_MULTIBYTE.search(body):
        return
    line = body.count(b"\n", 0, bad_at) + 1
    start = body.rfind(b"\n", 0, bad_at) + 1
    raise FeedError(
        f"the file mixes encodings: it has UTF-8 text, but line {line} is not UTF-8 "
        f"(byte 0x{body[bad_at]:02X} at column {bad_at - start + 1}); save the whole file as UTF-8"
    )


def _from_utf16(raw: bytes) -> Decoded:
    try:
        text = raw.decode("utf-16")  # the BOM picks the byte order
    except UnicodeDecodeError:
        raise FeedError("the file starts with a UTF-16 byte-order mark but is not valid UTF-16") from None
    text = text.lstrip("\ufeff")
    if "\x00" in text:
        raise FeedError("the file contains NUL characters, so it is not a text feed")
    data = text.encode("utf-8")
    _refuse_binary(data[:_SAMPLE])
    return Decoded(data, "utf-16")


def _refuse_binary(sample: bytes) -> None:
    if not sample:
        return
    controls = len(sample) - len(sample.translate(None, _CONTROL))
    if controls / len(sample) > _MAX_CONTROL_RATIO:
        raise FeedError(
            "the file looks binary (it is full of control characters), not a text feed"
        )
