"""Every row the parser counts is either a valid row or has an error: none is dropped silently.

The validator decides "bad" with cheap flags over every row and builds the
messages only for the flagged rows; this property holds the two together.
"""

from __future__ import annotations

from pathlib import Path
from tempfile import TemporaryDirectory

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from daemon.formats.feeds import ParseOptions, parse_feed

CELLS = {
    "sku": st.sampled_from(["A", "B", "0017", "", " ", "#N/A", "1.23E+05", "=X", "Ä-1", "A"]),
    "quantity": st.sampled_from(["5", "5.0", "5.5", "-3", "1,200", "x", "", "#VALUE!", "Not stocked",
                                 "99999999999999999999", "+4", " 7 "]),
    "as_of": st.sampled_from(["", "2026-11-30T10:00:00Z", "2026-11-30 10:00", "2026-13-01", "#REF!",
                              "2026-03-29 02:30"]),
    "location": st.sampled_from(["", "wh1", "#NAME?"]),
}
ROW = st.fixed_dictionaries(CELLS).map(lambda c: [c["sku"], c["quantity"], c["as_of"], c["location"]])


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows=st.lists(ROW, max_size=25), extra=st.booleans(),
       negative=st.sampled_from(["reject", "clamp", "allow"]),
       duplicates=st.sampled_from(["reject", "last_wins"]))
def test_every_counted_row_is_valid_or_has_an_error(rows: list[list[str]], extra: bool,
                                                    negative: str, duplicates: str) -> None:
    lines = ["sku,quantity,as_of,location"]
    lines += [",".join(r) + (",spill" if extra and i % 3 == 0 else "") for i, r in enumerate(rows)]
    with TemporaryDirectory() as tmp:
        path = Path(tmp) / "feed.csv"
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        feed = parse_feed(path, ParseOptions(negative=negative, duplicates=duplicates,  # type: ignore[arg-type]
                                             timezone="Europe/Berlin"))
    valid = set(feed.frame.get_column("row").to_list())
    failed = {e.row for e in feed.errors}
    assert not valid & failed
    replaced = 0
    for warning in feed.warnings:
        if "replaced by a later row" in warning:
            replaced = int(warning.split()[0])
    assert len(valid) + len(failed) + replaced == feed.total_rows
    assert all(e.message and e.row is not None for e in feed.errors)
