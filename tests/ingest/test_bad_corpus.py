"""Every file of the bad-input corpus through the real pipeline, against sample_files/bad/cases.csv.

Each case is uploaded as a feed of a source; the history's outcome and a
fragment of its message (or of a row error's) must be what the table says,
and a rejected file must leave stock and ledger untouched. The big files
(bombs, a 100 MB line) are made once per session by sample_files/hostile.py.
"""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from sample_files import hostile
from tests.ingest.conftest import IngestEnv

BAD = Path(__file__).resolve().parents[2] / "sample_files" / "bad"
with (BAD / "cases.csv").open(encoding="utf-8", newline="") as _table:
    CASES = list(csv.DictReader(_table))


def test_the_corpus_is_big_enough_and_every_file_has_a_case() -> None:
    named = {c["file"] for c in CASES}
    assert len(CASES) >= 40 and len(named) == len(CASES)
    committed = {p.name for p in BAD.iterdir() if p.name != "cases.csv"}
    assert committed | set(hostile.GENERATED) == named
    assert {c["outcome"] for c in CASES} <= {"rejected", "applied", "applied_with_errors"}


@pytest.fixture(scope="session")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("hostile")
    for name, make in hostile.GENERATED.items():
        make(folder / name)
    return folder


@pytest.mark.parametrize("case", CASES, ids=[c["file"] for c in CASES])
def test_each_bad_file_gets_its_outcome_and_message(env: IngestEnv, generated: Path, case: dict[str, str]) -> None:
    name = case["file"]
    path = BAD / name if (BAD / name).exists() else generated / name
    env.set("A", 4)
    ledger = env.ledger_count()
    out = env.upload(name, path.read_bytes())
    row, errors = env.show(out.upload_id)
    said = [out.message or "", row.warnings or "", *(e.message for e in errors)]
    assert out.status == case["outcome"], said
    assert any(case["message"] in text for text in said), said
    if case["outcome"] == "rejected":
        assert env.quantities() == {"A": 4} and env.ledger_count() == ledger
        assert row.original_name == name
    if case["outcome"] == "applied_with_errors":
        # Row errors name their row (and column and value where the cell has them).
        assert errors and all(e.row is not None and e.message for e in errors)
        assert any(case["message"] in e.message for e in errors)


def test_the_configured_limits_are_the_ones_the_parser_applies(make_env) -> None:  # type: ignore[no-untyped-def]
    env = make_env(ingest="max_sku_length = 5\nmax_inflation_ratio = 2")
    out = env.upload("short.csv", "sku,quantity\nABCDE,1\nABCDEF,2\n")
    assert out.status == "applied_with_errors" and env.quantities() == {"ABCDE": 1}
    assert [e.message for e in env.show(out.upload_id)[1]] == [
        "SKU is 6 characters long, over the limit of 5 (max_sku_length)"]
    # 20 MB of padding in a file of about 20 KB: 2 times its size is reached long before.
    padded = hostile.whitespace_sheet(env.root / "padded.xlsx", 20 * hostile.MiB)
    out = env.upload("padded.xlsx", padded.read_bytes())
    assert out.status == "rejected" and "more than 2 times its size" in (out.message or "")
