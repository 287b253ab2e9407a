"""Vectorised row validation: raw text cells in, valid rows and row errors out.

Every check is a polars expression producing an error message (or null) per
row, so a million rows cost a handful of column passes; Python only loops
over the rows that failed, to build their RowError objects.
"""

from __future__ import annotations

from dataclasses import dataclass
from zoneinfo import ZoneInfo

import polars as pl

from daemon.errors import FeedError

OUTPUT_SCHEMA = {
    "row": pl.Int64, "sku": pl.Utf8, "quantity": pl.Int64, "location": pl.Utf8,
    "as_of": pl.Datetime("us", "UTC"),
}
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


@dataclass(frozen=True)
class Rules:
    negative: str
    max_quantity: int
    duplicates: str
    timezone: str
    semicolon: bool  # a ';' file: European locale, '.' may group thousands


@dataclass
class Checked:
    frame: pl.DataFrame
    errors: list[tuple[int, str | None, str | None, str, str | None]]  # row, column, value, message, sku
    warnings: list[str]
    total_rows: int


def check(raw: pl.DataFrame, headers: dict[str, str | None], rules: Rules) -> Checked:
    """``raw`` has row, sku, quantity, location, as_of (Utf8), _extra, _blank."""
    try:
        ZoneInfo(rules.timezone)
    except (ValueError, KeyError):
        raise FeedError(f"unknown timezone {rules.timezone!r} in the source settings") from None
    text = ["sku", "quantity", "location", "as_of", "_extra"]
    df = raw.with_columns(pl.col(text).str.strip_chars()).with_columns(
        pl.when(pl.col(c) == "").then(None).otherwise(pl.col(c)).alias(c) for c in text
    )
    # Blank rows and Shopify's "Not stocked" mean "no row": not errors, not counted.
    df = df.filter(~pl.col("_blank") & (pl.col("quantity").str.to_lowercase() != "not stocked").fill_null(True))
    total = df.height
    df = _quantity(df, rules)
    df = _as_of(df, rules.timezone)
    df = df.with_columns(_sku_error(), _cell_error("location"))
    df = df.with_columns(
        pl.when(pl.col("_extra").is_not_null())
        .then(pl.lit("the row has more fields than the header (is a value like 1,200 missing its quotes?)"))
        .alias("_e_extra"),
    )
    warnings: list[str] = []
    df, dup_warning = _duplicates(df, rules.duplicates)
    if dup_warning:
        warnings.append(dup_warning)
    if rules.negative == "clamp":
        clamped = df.select((pl.col("_q") < 0).sum()).item()
        if clamped:
            warnings.append(f"{clamped} negative quantities were set to 0")
        df = df.with_columns(pl.col("_q").clip(lower_bound=0))
    sources = [  # error column, the role whose header and raw value it reports
        ("_e_extra", None, "_extra"), ("_e_sku", "sku", "sku"), ("_e_q", "quantity", "quantity"),
        ("_e_location", "location", "location"), ("_e_as_of", "as_of", "as_of"), ("_e_dup", "sku", "sku"),
    ]
    bad = pl.any_horizontal(pl.col(e).is_not_null() for e, _, _ in sources)
    failed = df.filter(bad)
    errors: list[tuple[int, str | None, str | None, str, str | None]] = []
    if failed.height:
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
        errors = list(table.select("row", "column", "value", "message", "sku").iter_rows())
    good = df.filter(~bad).select(
        pl.col("row").cast(pl.Int64), pl.col("sku"), pl.col("_q").alias("quantity"),
        pl.col("location"), pl.col("_as_of").alias("as_of"),
    )
    return Checked(good.cast(OUTPUT_SCHEMA), errors, warnings, total)  # type: ignore[arg-type]


def _cell_error(role: str) -> pl.Expr:
    value = pl.col(role)
    return (
        pl.when(value.str.contains(_SPREADSHEET_ERROR))
        .then(pl.format("the {} cell holds a spreadsheet error", pl.lit(role.replace("_", " "))))
        .alias(f"_e_{role}")
    )


def _sku_error() -> pl.Expr:
    sku = pl.col("sku")
    return (
        pl.when(sku.is_null()).then(pl.lit("SKU is empty"))
        .when(sku.str.contains(_SPREADSHEET_ERROR)).then(pl.lit("the SKU cell holds a spreadsheet error"))
        .when(sku.str.contains(_SCIENTIFIC))
        .then(pl.lit("SKU looks mangled by a spreadsheet (scientific notation)"))
        .alias("_e_sku")
    )


def _quantity(df: pl.DataFrame, rules: Rules) -> pl.DataFrame:
    raw, value = pl.col("quantity"), pl.col("_q")
    # Fast path: plain integers cast directly; only the rest (5.0, 1,200,
    # text) go through the regex normalisation on a (usually tiny) subset.
    df = df.with_columns(raw.cast(pl.Int64, strict=False).alias("_q"), pl.lit(None, pl.Utf8).alias("_e_q"))
    slow = df.filter(value.is_null() & raw.is_not_null()).select("row", "quantity")
    if slow.height:
        slow = _quantity_slow(slow, rules)
        df = df.drop("_e_q").join(slow, on="row", how="left").with_columns(
            pl.coalesce("_q", "_q_slow").alias("_q")
        ).drop("_q_slow")
    too_big = value.abs() > rules.max_quantity if rules.negative == "allow" else value > rules.max_quantity
    message = (
        pl.when(pl.col("_e_q").is_not_null()).then(pl.col("_e_q"))
        .when(raw.is_null()).then(pl.lit("quantity is empty"))
        .when(value.is_null() | too_big)
        .then(pl.lit(f"quantity is above the maximum of {rules.max_quantity:,}"))
        .when((value < 0) & (rules.negative == "reject")).then(pl.lit("quantity must not be negative"))
    )
    return df.with_columns(message.alias("_e_q"))


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
    return df.select("row", pl.when(~ambiguous).then(number).alias("_q_slow"), message.alias("_e_q"))


# The usual ISO 8601 forms with Z or an offset parse in one fast pass; only
# the rest (naive times, dates, odd spellings) go through the regex below.
_FAST_AS_OF = "%Y-%m-%dT%H:%M:%S%.f%#z"


def _as_of(df: pl.DataFrame, timezone: str) -> pl.DataFrame:
    raw = pl.col("as_of")
    df = df.with_columns(raw.str.strptime(pl.Datetime("us", "UTC"), _FAST_AS_OF, strict=False).alias("_as_of"))
    slow = df.filter(pl.col("_as_of").is_null() & raw.is_not_null()).select("row", "as_of")
    if slow.height:
        slow = _as_of_slow(slow, timezone)
        df = df.join(slow, on="row", how="left").with_columns(pl.coalesce("_as_of", "_as_of_slow").alias("_as_of"))
        df = df.drop("_as_of_slow")
    message = (
        pl.when(raw.str.contains(_SPREADSHEET_ERROR)).then(pl.lit("the as_of cell holds a spreadsheet error"))
        .when(raw.is_not_null() & pl.col("_as_of").is_null())
        .then(pl.lit("as_of must be a date-time such as 2024-05-01T10:00:00Z"))
    )
    return df.with_columns(message.alias("_e_as_of"))


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


def _duplicates(df: pl.DataFrame, mode: str) -> tuple[pl.DataFrame, str | None]:
    """Same (location, sku) twice is never summed: reject every copy, or keep the last."""
    key = ["location", "sku"]
    keyed = pl.col("sku").is_not_null() & pl.col("_e_sku").is_null()
    # Rows without a usable SKU get a null key and are masked out below.
    keys = df.select(pl.col("location"), pl.when(keyed).then(pl.col("sku")).alias("sku"))
    usable = df.select(keyed).to_series()
    if mode == "last_wins":
        keep = ~usable | ~keys.is_duplicated() | pl.struct(keys).is_last_distinct()
        kept = df.filter(keep)
        dropped = df.height - kept.height
        note = (f"{dropped} rows were replaced by a later row for the same SKU (duplicates: last wins)"
                if dropped else None)
        return kept.with_columns(pl.lit(None, pl.Utf8).alias("_e_dup")), note
    dups = df.filter(usable & keys.is_duplicated())
    if not dups.height:
        return df.with_columns(pl.lit(None, pl.Utf8).alias("_e_dup")), None
    rows = dups.group_by(key).agg(
        pl.format("the same SKU appears more than once in this file (rows {}); duplicates are never summed",
                  pl.col("row").sort().cast(pl.Utf8).str.join(", ")).alias("_e_dup")
    )
    return df.join(rows, on=key, how="left", nulls_equal=True).sort("row"), None
