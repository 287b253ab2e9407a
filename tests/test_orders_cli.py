"""`stockdrop orders ...` as a user drives it, through --json, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from daemon import exitcodes
from tests.conftest import Database
from tests.helpers import ONE_WAREHOUSE, run_cli, write_config

ORDERS = Path(__file__).parent.parent / "sample_files" / "orders"
MARKETS = ONE_WAREHOUSE + """
[[merchants.markets]]
name = "amazon"
kind = "amazon"

[[merchants.markets]]
name = "ebay"
kind = "ebay"
"""


@pytest.fixture
def config(tmp_path: Path, database: Database, capsys: pytest.CaptureFixture[str]) -> Path:
    path = write_config(tmp_path / "conf", MARKETS, database_url=database.url)
    assert run_cli(capsys, "-c", path, "db", "upgrade").code == 0
    for sku, qty in (("A-100", 5), ("0017", 1), ("B-200", 2)):
        assert run_cli(capsys, "-c", path, "set", sku, str(qty), "--source", "merchant-fulfilled").code == 0
    return path


def _inventory(config: Path, capsys: pytest.CaptureFixture[str]) -> dict[str, int]:
    rows = run_cli(capsys, "-c", config, "inventory", "--json").json()["inventory"]
    return {r["sku"]: r["quantity"] for r in rows}


def test_orders_import_is_idempotent_and_records_the_oversell(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    first = run_cli(capsys, "-c", config, "orders", "import", ORDERS / "amazon_order_report.txt",
                    "--market", "amazon", "--json")
    assert first.code == 0, first.err
    body = first.json()
    assert {k: body[k] for k in ("market", "format", "rows", "imported", "skipped", "errors", "oversold")} == {
        "market": "amazon", "format": "amazon", "rows": 3, "imported": 3, "skipped": 0, "errors": 0, "oversold": 1}
    assert body["row_errors"] == []
    assert body["lines"][1] == {"order_id": "114-3941689-8772232", "line_id": "46510268396155", "sku": "0017",
                                "quantity": 2, "status": "imported",
                                "taken": [{"source": "merchant-fulfilled", "units": 1}], "shortfall": 1,
                                "shortfall_source": "merchant-fulfilled"}
    again = run_cli(capsys, "-c", config, "orders", "import", ORDERS / "amazon_order_report.txt",
                    "--market", "amazon", "--json").json()
    assert (again["imported"], again["skipped"]) == (0, 3)
    assert _inventory(config, capsys) == {"A-100": 4, "0017": 0, "B-200": 1}
    oversold = run_cli(capsys, "-c", config, "orders", "--status", "oversold", "--json").json()["orders"]
    assert [(o["sku"], o["quantity"], o["shortfall"], o["status"]) for o in oversold] == [("0017", 2, 1, "open")]
    listed = run_cli(capsys, "-c", config, "orders", "--market", "amazon", "--json").json()["orders"]
    assert len(listed) == 3 and set(listed[0]) == {
        "merchant", "market", "order_id", "line_id", "sku", "quantity", "status", "shortfall", "ordered_at",
        "imported_at", "restocked", "cancel_reason", "warehouse", "fulfilment", "sends", "tracking_number",
        "shipping_service", "fulfilment_message"}
    assert listed[0]["warehouse"] is None  # no warehouse here is sent order files


def test_bad_order_rows_are_reported_and_the_good_lines_applied(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    result = run_cli(capsys, "-c", config, "orders", "import", ORDERS / "bad_rows.csv", "--market", "ebay", "--json")
    assert result.code == 0, result.err
    body = result.json()
    assert (body["imported"], body["errors"]) == (1, 6)
    assert body["row_errors"][2] == {"row": 5, "column": "quantity", "value": "two",
                                     "message": "quantity must be a whole number 1 or more"}
    assert _inventory(config, capsys)["A-100"] == 4
    text = run_cli(capsys, "-c", config, "orders", "import", ORDERS / "bad_rows.csv", "--market", "ebay")
    assert "row 8, ordered_at = 'yesterday'" in text.out


def test_a_rejected_order_file_applies_nothing(config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "orders.csv"
    path.write_text("order_id,sku,quantity\nO1,A-100,1\n")
    result = run_cli(capsys, "-c", config, "orders", "import", path, "--market", "amazon")
    assert result.code == exitcodes.REJECTED and "orders.csv rejected" in result.err
    assert run_cli(capsys, "-c", config, "orders", "--json").json() == {"orders": []}


def test_cancel_needs_an_explicit_choice_and_a_second_cancel_returns_nothing(
    config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Ordered an hour ago: inside the restock window of the real clock the CLI uses.
    recent = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    orders = tmp_path / "recent.csv"
    orders.write_text(f"order_id,line_id,sku,quantity,ordered_at\nSO-1001,1,A-100,2,{recent}\n"
                      f"SO-1001,2,0017,3,{recent}\n")
    assert run_cli(capsys, "-c", config, "orders", "import", orders, "--market", "amazon").code == 0
    assert _inventory(config, capsys)["A-100"] == 3
    guess = run_cli(capsys, "-c", config, "orders", "cancel", "SO-1001", "--market", "amazon")
    assert guess.code == exitcodes.FAILURE
    assert len(guess.err.strip().splitlines()) == 1 and "--restock or --no-restock" in guess.err
    done = run_cli(capsys, "-c", config, "orders", "cancel", "SO-1001", "--line", "1", "--market", "amazon",
                   "--restock", "--json")
    assert done.code == 0, done.err
    assert done.json() == {"market": "amazon", "order_id": "SO-1001", "lines": [{
        "order_id": "SO-1001", "line_id": "1", "sku": "A-100", "status": "cancelled", "restocked": True,
        "refused": False, "returned": [{"source": "merchant-fulfilled", "units": 2}],
        "reason": "restocked: the operator chose --restock"}]}
    twice = run_cli(capsys, "-c", config, "orders", "cancel", "SO-1001", "--market", "amazon", "--restock", "--json")
    assert [(x["line_id"], x["status"], x["returned"]) for x in twice.json()["lines"]] == [
        ("1", "already_cancelled", []), ("2", "cancelled", [{"source": "merchant-fulfilled", "units": 1}])]
    assert _inventory(config, capsys) == {"A-100": 5, "0017": 1, "B-200": 2}  # the 2 oversold never come back
    unknown = run_cli(capsys, "-c", config, "orders", "cancel", "NOPE", "--market", "amazon", "--no-restock")
    assert unknown.code == exitcodes.FAILURE and "no order 'NOPE'" in unknown.err


def test_a_cancellation_file_restocks_market_cancellations_and_reports_window_refusals(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_cli(capsys, "-c", config, "orders", "import", ORDERS / "generic_orders.csv", "--market", "amazon").code == 0
    result = run_cli(capsys, "-c", config, "orders", "import-cancellations", ORDERS / "cancellations.csv",
                     "--market", "amazon", "--json")
    assert result.code == 0, result.err
    body = result.json()
    # SO-1001/1 cancelled 2 hours after: back; SO-1002 cancelled 19 days after: refused.
    assert {k: body[k] for k in ("rows", "cancelled", "restocked", "refused", "errors")} == {
        "rows": 2, "cancelled": 2, "restocked": 1, "refused": 1, "errors": 0}
    assert "restock refused" in body["lines"][1]["reason"] and "14-day" in body["lines"][1]["reason"]
    assert _inventory(config, capsys) == {"A-100": 5, "0017": 0, "B-200": 0}
    cancelled = run_cli(capsys, "-c", config, "orders", "--status", "cancelled", "--json").json()["orders"]
    assert {(o["order_id"], o["line_id"], o["restocked"]) for o in cancelled} == {("SO-1001", "1", True), ("SO-1002", "1", False)}


def test_an_order_file_imported_from_the_cli_is_in_the_upload_history(config, capsys) -> None:  # type: ignore[no-untyped-def]
    assert run_cli(capsys, "-c", config, "orders", "import", ORDERS / "bad_rows.csv", "--market", "ebay").code == 0
    hist = run_cli(capsys, "-c", config, "history", "--json").json()["uploads"]
    assert [(h["kind"], h["source"], h["protocol"], h["status"]) for h in hist] == [
        ("orders", "market:ebay", "cli", "applied_with_errors")]
    shown = run_cli(capsys, "-c", config, "history", "show", str(hist[0]["id"]), "--json").json()
    assert shown["errors"] and all(e["row"] and e["message"] for e in shown["errors"])


def test_history_by_market_lists_that_markets_files_only(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli(capsys, "-c", config, "orders", "import", ORDERS / "amazon_order_report.txt",
                   "--market", "amazon").code == 0
    assert run_cli(capsys, "-c", config, "orders", "import", ORDERS / "bad_rows.csv", "--market", "ebay").code == 0
    amazon = run_cli(capsys, "-c", config, "history", "--market", "amazon", "--json").json()["uploads"]
    assert [(u["source"], u["kind"], u["original_name"], u["status"]) for u in amazon] == [
        ("market:amazon", "orders", "amazon_order_report.txt", "applied")]
    everything = run_cli(capsys, "-c", config, "history", "--json").json()["uploads"]
    assert {u["source"] for u in everything} == {"market:amazon", "market:ebay"}


def test_the_demo_warehouse_is_sent_its_orders_and_its_status_file_closes_them(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`init`'s demo, driven as the README's walk does, without the daemon."""
    demo = tmp_path / "demo"
    assert run_cli(capsys, "init", demo).code == 0
    config = demo / "stockdrop.toml"
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    orders = tmp_path / "o.csv"
    # 0001235 is only in main-warehouse; 0001234 is taken from the merchant-fulfilled source.
    orders.write_text(f"order_id,line_id,sku,quantity,ordered_at\nW-2,1,0001235,1,{now}\nW-3,1,0001234,1,{now}\n")
    assert run_cli(capsys, "-c", config, "orders", "import", orders, "--market", "webshop").code == 0
    dry = run_cli(capsys, "-c", config, "orders", "export", "main-warehouse", "--dry-run")
    assert dry.code == 0 and "nothing sent" in dry.err
    assert dry.out == f"order_id,line_id,market,sku,quantity,ordered_at\nW-2,1,webshop,0001235,1,{now}\n"
    assert not (demo / "exports" / "main-warehouse").exists()
    sent = run_cli(capsys, "-c", config, "orders", "export", "main-warehouse", "--json").json()["sent"]
    assert [s["status"] for s in sent] == ["delivered"]
    assert (demo / "exports" / "main-warehouse" / sent[0]["file_name"]).read_text() == dry.out
    listed = run_cli(capsys, "-c", config, "orders", "--json").json()["orders"]
    assert {(o["order_id"], o["warehouse"], o["fulfilment"], o["sends"]) for o in listed} == {
        ("W-2", "main-warehouse", "open", 1), ("W-3", None, None, None)}
    status = tmp_path / "s.csv"
    status.write_text("OrderId,Status,Tracking Number,Shipping Service\nW-2,SHIPPED,1Z999,UPS\nW-9,SHIPPED,,\n")
    done = run_cli(capsys, "-c", config, "orders", "import-statuses", status, "--source", "main-warehouse", "--json")
    body = done.json()
    assert (done.code, body["shipped"], body["errors"]) == (0, 1, 1)
    assert body["row_errors"][0]["row"] == 3 and body["row_errors"][0]["column"] == "OrderId"
    shipped = run_cli(capsys, "-c", config, "orders", "--status", "shipped", "--json").json()["orders"]
    assert [(o["order_id"], o["tracking_number"], o["shipping_service"]) for o in shipped] == [
        ("W-2", "1Z999", "UPS")]
    history = run_cli(capsys, "-c", config, "history", "--source", "main-warehouse", "--json").json()["uploads"]
    assert [u["status"] for u in history][:1] == ["applied_with_errors"]
    nothing = run_cli(capsys, "-c", config, "orders", "export", "main-warehouse")
    assert nothing.code == 0 and "nothing to send" in nothing.out
    # The warehouse's own login for its status files; a market's kinds are not a source's.
    added = run_cli(capsys, "-c", config, "user", "add", "main-warehouse", "--kind", "statuses", "--generate")
    assert added.code == 0 and "demo/main-warehouse/statuses" in added.out
    wrong = run_cli(capsys, "-c", config, "user", "add", "main-warehouse", "--kind", "orders", "--generate")
    assert wrong.code == exitcodes.FAILURE and "use --market" in wrong.err
