"""Vectorised row validation: trimmed text cells in, valid rows and row errors out.

Every check is a polars expression over whole columns, so a million rows cost
a handful of column passes. Memory matters as much as time (a big feed runs
in a worker with a memory limit), so the full-length work is done with
booleans and the few typed columns the output needs; error messages are built
only for the rows that failed, and Python loops only over those rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from zoneinfo import ZoneInfo

import polars as pl

from daemon.errors import FeedError

OUTPUT_SCHEMA = pl.Schema({
    "row": pl.Int64(), "sku": pl.Utf8(), "quantity": pl.Int64(), "location": pl.Utf8(),
    "as_of": pl.Datetime("us", "UTC"),
})
_SPREADSHEET_ERROR = r"^#(?:NAME\?|DIV/0!|VALUE!|REF!|N/A|NUM!|NULL!|GETTING_DATA|SPILL!|CALC!)$"
_SCIENTIFIC = r"^[+-]?\d+(?:[.,]\d+)?[eE][+-]?\d+$"
_THOUSANDS = r"^[+-]?\d{1,3}(?:(?:,\d{3})+|(?: \d{3})+|(?:\u00a0\d{3})+|(?:\u202f\d{3})+)$"
_DECIMAL_COMMA = r"^[+-]?\d+,\d+$"
_DOT_GROUPS = r"^[+-]?\d{1,3}(?:\.\d{3})+$"
_WHOLE = r"^([+-]?\d+)(?:\.0*)?$"
_FRACTION = r"^[+-]?(?:\d+\.\d*|\.\d+)$"
_AS_OF = (
    r"^(\d{4})-(\d{2})-(\d{2})(?:[T ](\d{2}):(\d{2})(?::(\d{2})(?:[.,](\d{1,9}))?)?)?"
    r"\s*(Z|z|[+-]\d{2}(?::?\d{2})?)?$"
)
_KEY = ["location", "sku"]
# C0 and C1 control characters: invisible, and refused by every market; a
# trimmed cell can still hold one inside (a tab, a line break in a quoted field).
_CONTROL = r"[\x00-\x1f\x7f-\x9f]"
_CONTROL_NAMES = {chr(c): f"a control character (U+{c:04X})" for c in [*range(32), *range(0x7F, 0xA0)]} | {
    "\t": "a tab (U+0009)", "\n": "a line break (U+000A)", "\r": "a carriage return (U+000D)"}
_EXTRA = "the row has more fields than the header (is a value like 1,200 missing its quotes?)"


@dataclass(frozen=True)
class Rules:
    negative: str
    max_quantity: int
    duplicates: str
    timezone: str
    semicolon: bool  # a ';' file: European locale, '.' may group thousands
    max_sku_length: int = 100


@dataclass
class Checked:
    frame: pl.DataFrame
    errors: list[tuple[int, str | None, str | None, str, str | None]]  # row, column, value, message, sku
    warnings: list[str]
    total_rows: int


def check(rows: pl.DataFrame, headers: dict[str, str | None], rules: Rules) -> Checked:
    """``rows``: row, then sku, quantity, location, as_of and _extra as trimmed text.

    Empty cells are null, and rows that mean "no row" (blank, Shopify's "Not
    stocked") are already gone: every row here counts.
    """
    try:
        ZoneInfo(rules.timezone)
    except (ValueError, KeyError):
        raise FeedError(f"unknown timezone {rules.timezone!r} in the source settings") from None
    total = rows.height
    # Fast paths first: plain integers and ISO 8601 stamps with an offset
    # parse in one pass; the rest is patched in from a (usually tiny) subset.
    df = _with(rows, pl.col("quantity").cast(pl.Int64, strict=False).alias("_q"),
               pl.col("as_of").str.strptime(pl.Datetime("us", "UTC"), _FAST_AS_OF, strict=False)
               .alias("_as_of"),
               _sku_is_bad(rules.max_sku_length).alias("_x_sku"))
    df, slow_messages = _quantity(df, rules)
    df = _as_of(df, rules.timezone)
    warnings: list[str] = []
    df, dup_messages, dup_warning = _duplicates(df, rules.duplicates)
    if dup_warning:
        warnings.append(dup_warning)
    if rules.negative == "clamp":
        clamped = df.lazy().select((pl.col("_q") < 0).sum()).collect().item()
        if clamped:
            warnings.append(f"{clamped} negative quantities were set to 0")
    df = _with(df, _row_is_bad(rules).alias("_bad"))
    errors = _errors(df.lazy().filter("_bad").collect(), headers, rules, slow_messages, dup_messages)
    quantity = pl.col("_q").clip(lower_bound=0) if rules.negative == "clamp" else pl.col("_q")
    good = df.lazy().filter(~pl.col("_bad")).select(
        pl.col("row").cast(pl.Int64), pl.col("sku"), quantity.alias("quantity"),
        pl.col("location"), pl.col("_as_of").alias("as_of"),
    ).cast(OUTPUT_SCHEMA).collect()
    return Checked(good, errors, warnings, total)


def _with(df: pl.DataFrame, *columns: pl.Expr | pl.Series) -> pl.DataFrame:
    """``df.with_columns``, through the lazy engine.

    The eager DataFrame methods (with_columns, select, filter by expression)
    first rechunk the whole frame, and a frame from read_csv comes in many
    chunks: that is a copy of every column on each call (about 40 MB for a
    million rows of sku,quantity). Lazily, untouched columns pass through.
    """
    return df.lazy().with_columns(*columns).collect()


# Each check comes twice: a boolean over every row (cheap: a bit per row) and
# the message, built only for the failed rows. The message is non-null
# exactly where the boolean is true; keep the two in step.

def _row_is_bad(rules: Rules) -> pl.Expr:
    value = pl.col("_q")
    # An empty quantity, a spreadsheet error or text all leave _q null; a
    # slow-path message always comes with a null _q too.
    quantity = value.is_null() | _too_big(rules) | ((value < 0) & (rules.negative == "reject"))
    # Neither date parser accepts a value starting with '#', so a spreadsheet
    # error in as_of is one of the unparsed values.
    as_of = pl.col("as_of").is_not_null() & pl.col("_as_of").is_null()
    return pl.any_horizontal(
        pl.col("_extra").is_not_null(), pl.col("_x_sku"), quantity,
        pl.col("location").str.contains(_SPREADSHEET_ERROR).fill_null(False), as_of, pl.col("_x_dup"),
    )


def _errors(
    failed: pl.DataFrame, headers: dict[str, str | None], rules: Rules,
    slow_messages: pl.DataFrame | None, dup_messages: pl.DataFrame | None,
) -> list[tuple[int, str | None, str | None, str, str | None]]:
    if not failed.height:
        return []
    # Eager from here: the failed rows are usually few, and run lazily the
    # parts below are built side by side, which measured more memory.
    if slow_messages is not None:
        failed = failed.join(slow_messages, on="row", how="left")
    else:
        failed = failed.with_columns(pl.lit(None, pl.Utf8).alias("_e_q_slow"))
    if dup_messages is not None:
        failed = failed.join(dup_messages, on=_KEY, how="left", nulls_equal=True)
        failed = failed.with_columns(pl.when(pl.col("_x_dup")).then(pl.col("_e_dup")).alias("_e_dup"))
    else:
        failed = failed.with_columns(pl.lit(None, pl.Utf8).alias("_e_dup"))
    failed = failed.with_columns(
        pl.when(pl.col("_extra").is_not_null()).then(pl.lit(_EXTRA)).alias("_e_extra"),
        _sku_error(rules.max_sku_length), _quantity_error(rules), _cell_error("location"), _as_of_error(),
    )
    sources = [  # error column, the role whose header and raw value it reports
        ("_e_extra", None, "_extra"), ("_e_sku", "sku", "sku"), ("_e_q", "quantity", "quantity"),
        ("_e_location", "location", "location"), ("_e_as_of", "as_of", "as_of"), ("_e_dup", "sku", "sku"),
    ]
    parts = [
        failed.filter(pl.col(e).is_not_null()).select(
            pl.col("row"), pl.lit(headers.get(role) if role else None, pl.Utf8).alias("column"),
            pl.col(value).alias("value"), pl.col(e).alias("message"), pl.lit(i).alias("_order"),
            # The row's SKU, so a person can find the row by what it is about.
            pl.col("sku").cast(pl.Utf8).str.strip_chars().replace("", None).alias("sku"),
        )
        for i, (e, role, value) in enumerate(sources)
    ]
    table = pl.concat(parts).sort(["row", "_order"])
    return list(table.select("row", "column", "value", "message", "sku").iter_rows())


def _cell_error(role: str) -> pl.Expr:
    value = pl.col(role)
    return (
        pl.when(value.str.contains(_SPREADSHEET_ERROR))
        .then(pl.format("the {} cell holds a spreadsheet error", pl.lit(role.replace("_", " "))))
        .alias(f"_e_{role}")
    )


def _sku_is_bad(max_length: int) -> pl.Expr:
    sku = pl.col("sku")
    return (sku.is_null() | sku.str.contains(_SPREADSHEET_ERROR) | sku.str.contains(_SCIENTIFIC)
            | (sku.str.len_chars() > max_length) | sku.str.contains(_CONTROL))


def _sku_error(max_length: int) -> pl.Expr:
    sku = pl.col("sku")
    control = sku.str.extract(f"({_CONTROL})", 1).replace_strict(_CONTROL_NAMES, default="a control character")
    return (
        pl.when(sku.is_null()).then(pl.lit("SKU is empty"))
        .when(sku.str.contains(_SPREADSHEET_ERROR)).then(pl.lit("the SKU cell holds a spreadsheet error"))
        .when(sku.str.contains(_SCIENTIFIC))
        .then(pl.lit("SKU looks mangled by a spreadsheet (scientific notation)"))
        .when(sku.str.len_chars() > max_length)
        .then(pl.format(f"SKU is {{}} characters long, over the limit of {max_length:,} (max_sku_length)",
                        sku.str.len_chars()))
        .when(sku.str.contains(_CONTROL))
        .then(pl.format("SKU contains {}, which no market accepts in a SKU", control))
        .alias("_e_sku")
    )


def _too_big(rules: Rules) -> pl.Expr:
    value = pl.col("_q")
    return value.abs() > rules.max_quantity if rules.negative == "allow" else value > rules.max_quantity


def _quantity_error(rules: Rules) -> pl.Expr:
    raw, value = pl.col("quantity"), pl.col("_q")
    return (
        pl.when(pl.col("_e_q_slow").is_not_null()).then(pl.col("_e_q_slow"))
        .when(raw.is_null()).then(pl.lit("quantity is empty"))
        .when(value.is_null() | _too_big(rules))
        .then(pl.lit(f"quantity is above the maximum of {rules.max_quantity:,}"))
        .when((value < 0) & (rules.negative == "reject")).then(pl.lit("quantity must not be negative"))
        .alias("_e_q")
    )


def _as_of_error() -> pl.Expr:
    raw = pl.col("as_of")
    return (
        pl.when(raw.str.contains(_SPREADSHEET_ERROR)).then(pl.lit("the as_of cell holds a spreadsheet error"))
        .when(raw.is_not_null() & pl.col("_as_of").is_null())
        .then(pl.lit("as_of must be a date-time such as 2024-05-01T10:00:00Z"))
        .alias("_e_as_of")
    )


def _patch(df: pl.DataFrame, name: str, where: pl.Expr, values: pl.Series) -> pl.DataFrame:
    """``df`` with ``values`` written into column ``name`` where ``where`` holds, in order.

    Writing into the one column beats joining the slow-path result back on
    ``row``, which would copy every column of the frame.
    """
    at = df.lazy().select(pl.arg_where(where)).collect().to_series()
    return _with(df, df.get_column(name).scatter(at, values))


def _quantity(df: pl.DataFrame, rules: Rules) -> tuple[pl.DataFrame, pl.DataFrame | None]:
    """Parse what the fast cast left null; also return (row, _e_q_slow) for their messages."""
    slow_rows = pl.col("_q").is_null() & pl.col("quantity").is_not_null()
    slow = df.lazy().filter(slow_rows).select("row", "quantity").collect()
    if not slow.height:
        return df, None
    slow = _quantity_slow(slow, rules)
    messages = slow.select("row", "_e_q_slow").filter(pl.col("_e_q_slow").is_not_null())
    return _patch(df, "_q", slow_rows, slow.get_column("_q_slow")), messages


def _quantity_slow(df: pl.DataFrame, rules: Rules) -> pl.DataFrame:
    raw, unsigned = pl.col("quantity"), pl.col("_u")
    df = df.with_columns(raw.str.strip_prefix("+").alias("_u"))
    # Thousands groups of exactly three digits are unambiguous; a comma with
    # other digit counts is a decimal comma ("5,0" in a European ';' file).
    df = df.with_columns(
        pl.when(unsigned.str.contains(_THOUSANDS)).then(unsigned.str.replace_all(r"[ ,\u00a0\u202f]", ""))
        .when(unsigned.str.contains(_DECIMAL_COMMA)).then(unsigned.str.replace(",", ".", literal=True))
        .otherwise(unsigned).alias("_n")
    )
    df = df.with_columns(pl.col("_n").str.extract(_WHOLE, 1).alias("_d"))
    digits = pl.col("_d")
    # More than 16 digits cannot be a stock level and would overflow Int64;
    # left null here, the caller reports it as above the maximum.
    number = pl.when(digits.str.len_chars() <= 16).then(digits.cast(pl.Int64, strict=False))
    ambiguous = pl.lit(rules.semicolon) & unsigned.str.contains(_DOT_GROUPS)
    message = (
        pl.when(raw.str.contains(_SPREADSHEET_ERROR)).then(pl.lit("the quantity cell holds a spreadsheet error"))
        .when(ambiguous).then(pl.lit("quantity is ambiguous: '.' may be a thousands separator here"))
        .when(digits.is_null() & pl.col("_n").str.contains(_FRACTION))
        .then(pl.lit("quantity must be a whole number, not a fraction"))
        .when(digits.is_null()).then(pl.lit("quantity must be a whole number"))
    )
    return df.select("row", pl.when(~ambiguous).then(number).alias("_q_slow"), message.alias("_e_q_slow"))


# The usual ISO 8601 forms with Z or an offset parse in one fast pass; only
# the rest (naive times, dates, odd spellings) go through the regex below.
_FAST_AS_OF = "%Y-%m-%dT%H:%M:%S%.f%#z"


def _as_of(df: pl.DataFrame, timezone: str) -> pl.DataFrame:
    slow_rows = pl.col("_as_of").is_null() & pl.col("as_of").is_not_null()
    slow = df.lazy().filter(slow_rows).select("row", "as_of").collect()
    if not slow.height:
        return df
    return _patch(df, "_as_of", slow_rows, _as_of_slow(slow, timezone).get_column("_as_of_slow"))


def _as_of_slow(df: pl.DataFrame, timezone: str) -> pl.DataFrame:
    field = pl.col("_p").struct.field
    df = df.with_columns(pl.col("as_of").str.extract_groups(_AS_OF).alias("_p"))
    stamp = pl.format(
        "{}-{}-{} {}:{}:{}", field("1"), field("2"), field("3"),
        field("4").fill_null("00"), field("5").fill_null("00"), field("6").fill_null("00"),
    )
    micros = field("7").str.slice(0, 6).str.pad_end(6, "0").cast(pl.Int64).fill_null(0)
    offset = field("8").str.replace(":", "", literal=True).str.to_uppercase()
    df = df.with_columns(
        (stamp.str.strptime(pl.Datetime("us"), "%Y-%m-%d %H:%M:%S", strict=False)
         + pl.duration(microseconds=micros)).alias("_naive"),
        offset.alias("_off"),
    )
    naive, off = pl.col("_naive"), pl.col("_off")
    sign = pl.when(off.str.starts_with("-")).then(-1).otherwise(1)
    minutes = sign * (off.str.slice(1, 2).cast(pl.Int64, strict=False) * 60
                      + off.str.slice(3, 2).cast(pl.Int64, strict=False).fill_null(0))
    # Naive values are wall-clock times in the source's zone; a time that does
    # not exist there (DST gap) is an error rather than a shifted guess.
    local = naive.dt.replace_time_zone(timezone, ambiguous="earliest", non_existent="null")
    parsed = (
        pl.when(off.is_null()).then(local.dt.convert_time_zone("UTC"))
        .when(off == "Z").then(naive.dt.replace_time_zone("UTC"))
        .otherwise((naive - pl.duration(minutes=minutes.fill_null(0))).dt.replace_time_zone("UTC"))
    )
    return df.select("row", parsed.alias("_as_of_slow"))


def _duplicates(df: pl.DataFrame, mode: str) -> tuple[pl.DataFrame, pl.DataFrame | None, str | None]:
    """Same (location, sku) twice is never summed: reject every copy, or keep the last.

    Adds ``_x_dup`` (the row is a rejected copy) and returns the messages by
    key for those rows, or drops the replaced rows and returns a warning.
    """
    alone = pl.lit(False).alias("_x_dup")
    repeats = _repeated_hashes(df)
    if not repeats.len():
        return _with(df, alone), None, None
    # Every copy of a repeated key is among the candidates, so checking
    # them alone is exact; they keep the frame's order. Rows without a
    # usable SKU have no key: they are never duplicates.
    candidates = df.lazy().filter(~pl.col("_x_sku") & _key_hash().is_in(repeats.implode())).select(
        "row", *_KEY).collect()
    repeated = candidates.select(_KEY).is_duplicated()
    if mode == "last_wins":
        replaced = candidates.filter(repeated & ~pl.struct(_KEY).is_last_distinct()).get_column("row")
        if not replaced.len():
            return _with(df, alone), None, None
        kept = df.lazy().filter(~pl.col("row").is_in(replaced.implode())).with_columns(alone).collect()
        note = f"{replaced.len()} rows were replaced by a later row for the same SKU (duplicates: last wins)"
        return kept, None, note
    dups = candidates.filter(repeated)
    if not dups.height:
        return _with(df, alone), None, None
    messages = dups.group_by(_KEY).agg(
        pl.format("the same SKU appears more than once in this file (rows {}); duplicates are never summed",
                  pl.col("row").sort().cast(pl.Utf8).str.join(", ")).alias("_e_dup")
    )
    rejected = pl.col("row").is_in(dups.get_column("row").implode())
    return _with(df, rejected.alias("_x_dup")), messages, None


def _key_hash() -> pl.Expr:
    # Two column hashes combined, not a struct hash: a struct first builds
    # its fields out in full, including a location column the file lacks.
    return pl.col("sku").hash(1) ^ pl.col("location").hash(2)


def _repeated_hashes(df: pl.DataFrame) -> pl.Series:
    """The key hashes that occur more than once, usually none.

    Equal keys have equal hashes, so these cover every duplicate (and the
    odd collision, which the caller's exact check drops). Sorting and
    comparing neighbours costs two hash columns; ``is_duplicated`` over the
    whole frame builds a hash table of about 250 MB per million rows.
    """
    ordered = df.lazy().select(_key_hash()).collect().to_series().sort()
    if ordered.len() < 2:
        return ordered.clear()
    later = ordered.slice(1)
    return later.filter(later == ordered.slice(0, ordered.len() - 1))
