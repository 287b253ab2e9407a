"""PostgreSQL's binary COPY format, written set-wise from a polars frame.

Text COPY makes the server parse every value; a timestamptz in text costs
about 1.1 s per million values (``python -m bench ingest``), and a first load
writes four such columns a row. In the binary format a time is an int8 of
microseconds since 2000-01-01 and an integer is its big-endian bytes. Writing
that format row by row from Python (psycopg's ``write_row``) costs more than
the server saves; here each column becomes one numpy array of bytes placed at
its rows' offsets, so a million rows are a few vectorised copies.

The format (PostgreSQL's documentation, "COPY", "Binary Format"): a header,
then per row an int16 field count and per field an int32 length (-1 for
NULL) followed by that many bytes, then an int16 -1.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Literal

import numpy as np
import polars as pl

Kind = Literal["int2", "int4", "int8", "timestamptz", "text"]

HEADER = b"PGCOPY\n\xff\r\n\x00" + (0).to_bytes(4, "big") + (0).to_bytes(4, "big")
TRAILER = (-1).to_bytes(2, "big", signed=True)
_WIDTH = {"int2": 2, "int4": 4, "int8": 8, "timestamptz": 8}
_RANGE = {"int2": 2**15, "int4": 2**31, "int8": 2**63}
# PostgreSQL's epoch, 2000-01-01 UTC, in microseconds since the Unix one.
_PG_EPOCH_US = 946_684_800 * 1_000_000
_SLICE = 100_000  # rows per encoded chunk: bounded memory for a million rows


def chunks(frame: pl.DataFrame, kinds: Sequence[Kind]) -> Iterator[bytes]:
    """The whole COPY stream of ``frame`` (header, rows, trailer) in pieces.

    ``kinds`` gives each column's PostgreSQL type, in the frame's order; they
    must be the target columns' exact types (binary COPY does not convert).
    Times must be aware (UTC) polars datetimes.
    """
    if len(kinds) != frame.width:
        raise ValueError(f"{frame.width} columns but {len(kinds)} kinds")
    yield HEADER
    for part in frame.iter_slices(_SLICE):
        yield encode_rows(part, kinds)
    yield TRAILER


def encode_rows(frame: pl.DataFrame, kinds: Sequence[Kind]) -> bytes:
    """The rows of ``frame`` in the binary format, without header or trailer.

    A row is runs of fields whose width is the same in every row (a number
    without nulls, a text of one length, every field's length word) between
    the payloads that vary (other texts, a column with nulls). Each run is
    one numpy record array, written in one piece: a row of numbers alone is
    a single ``tobytes``, no per-field placing (a million stock rows: 0.75 s
    placed field by field and byte by byte, a few hundredths as records).
    """
    n = frame.height
    if n == 0:
        return b""
    runs: list[list[tuple[np.dtype, np.ndarray]]] = [[(np.dtype(">i2"), np.full(n, len(kinds), dtype=">i2"))]]
    varying: list[tuple[np.ndarray, np.ndarray]] = []  # (bytes, per-row lengths) after runs[i]
    for column, kind in zip(frame.columns, kinds, strict=True):
        series = frame.get_column(column)
        nulls = series.null_count()
        if kind == "text":
            lengths = series.str.len_bytes().fill_null(0).to_numpy().astype(np.int64)
            data = np.frombuffer(series.drop_nulls().str.join("").item().encode("utf-8"), dtype=np.uint8)
            if nulls == 0 and lengths.min() == lengths.max():
                width = int(lengths[0])
                runs[-1].append((np.dtype(">i4"), np.full(n, width, dtype=">i4")))
                runs[-1].append((np.dtype((np.uint8, (width,))), data.reshape(n, width)))
                continue
            sizes = np.where(series.is_null().to_numpy(), -1, lengths)
        else:
            values = _fixed(series, kind)
            if nulls == 0:
                runs[-1].append((np.dtype(">i4"), np.full(n, _WIDTH[kind], dtype=">i4")))
                runs[-1].append((values.dtype, values))
                continue
            present = ~series.is_null().to_numpy()
            sizes = np.where(present, _WIDTH[kind], -1)
            lengths = np.maximum(sizes, 0)
            data = values[present].view(np.uint8)
        runs[-1].append((np.dtype(">i4"), sizes.astype(">i4")))
        varying.append((data, lengths))
        runs.append([])
    blocks = [_records(run, n) for run in runs]
    if not varying:
        return blocks[0].tobytes()
    row_len = sum(b.shape[1] for b in blocks) + sum(lengths for _, lengths in varying)
    out = np.empty(int(row_len.sum()), dtype=np.uint8)
    position = np.concatenate(([0], np.cumsum(row_len)[:-1])).astype(np.int64)
    for i, block in enumerate(blocks):
        if block.shape[1]:
            out[position[:, None] + np.arange(block.shape[1])] = block
            position = position + block.shape[1]
        if i < len(varying):
            data, lengths = varying[i]
            _put_text(out, position[lengths > 0], data, lengths[lengths > 0])
            position = position + lengths
    return out.tobytes()


def _records(run: list[tuple[np.dtype, np.ndarray]], n: int) -> np.ndarray:
    """The fields of ``run`` side by side, packed, as an (n, width) array of bytes."""
    records = np.empty(n, dtype=np.dtype([(f"f{i}", dtype) for i, (dtype, _) in enumerate(run)]))
    for i, (_, values) in enumerate(run):
        records[f"f{i}"] = values
    return records.view(np.uint8).reshape(n, records.dtype.itemsize)


def _fixed(series: pl.Series, kind: Kind) -> np.ndarray:
    """A non-text column's values as big-endian numbers (nulls as 0, not written)."""
    if kind == "timestamptz":
        micros = series.dt.convert_time_zone("UTC").dt.epoch("us").fill_null(0).to_numpy() - _PG_EPOCH_US
        return micros.astype(">i8")
    values = series.fill_null(0).cast(pl.Int64).to_numpy()
    limit = _RANGE[kind]
    if values.size and (values.min() < -limit or values.max() >= limit):
        raise ValueError(f"column {series.name!r} holds a value out of {kind}'s range")
    return values.astype(f">i{_WIDTH[kind]}")


def _put_text(out: np.ndarray, at: np.ndarray, data: np.ndarray, lengths: np.ndarray) -> None:
    """Write the concatenated ``data``, split by the present rows' ``lengths``, at ``at``."""
    if data.size == 0:
        return
    first = np.concatenate(([0], np.cumsum(lengths)[:-1]))
    out[np.repeat(at - first, lengths) + np.arange(data.size)] = data
