"""``stockdrop export``, ``exports`` and ``market show``'s export line, as a user runs them on the demo."""

from __future__ import annotations

from pathlib import Path

from daemon import exitcodes
from tests.helpers import run_cli


def test_a_dry_run_then_a_delivery_then_nothing_left_to_send(capsys, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    demo = tmp_path / "demo"
    assert run_cli(capsys, "init", demo).code == 0
    cfg = demo / "stockdrop.toml"

    dry = run_cli(capsys, "-c", cfg, "export", "amazon", "--dry-run")
    assert dry.code == 0 and dry.out.splitlines()[:2] == ["sku\tprice\tquantity", "0001234\t\t50"]
    assert "5 lines as amazon_price_quantity" in dry.err and "nothing sent" in dry.err
    assert not (demo / "exports" / "amazon").exists()
    assert run_cli(capsys, "-c", cfg, "exports", "--json").json() == {"exports": []}

    sent = run_cli(capsys, "-c", cfg, "export", "amazon", "--json").json()["sent"]
    assert [(s["kind"], s["status"]) for s in sent] == [("delta", "delivered")]
    assert [p.name for p in (demo / "exports" / "amazon").iterdir()] == [sent[0]["file_name"]]
    [row] = run_cli(capsys, "-c", cfg, "exports", "--json").json()["exports"]
    assert (row["market"], row["status"], row["lines"]) == ("amazon", "delivered", 5)

    show = run_cli(capsys, "-c", cfg, "market", "show", "amazon", "--json").json()["export"]
    assert show["format"] == "amazon_price_quantity" and show["owed"] is None
    assert show["last_delivered_at"] is not None and show["next_delta_due"] > show["last_delivered_at"]

    again = run_cli(capsys, "-c", cfg, "export", "amazon")
    assert again.code == 0 and "nothing to send" in again.out
    full = run_cli(capsys, "-c", cfg, "export", "amazon", "--full", "--json").json()["sent"]
    assert [(s["kind"], s["status"]) for s in full] == [("full", "delivered")]


def test_exporting_a_market_without_an_export_table_says_so(capsys, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    demo = tmp_path / "demo"
    run_cli(capsys, "init", demo)
    cfg = demo / "stockdrop.toml"
    cfg.write_text(cfg.read_text() + '\n[[merchants.markets]]\nname = "ebay"\n')
    out = run_cli(capsys, "-c", cfg, "export", "ebay")
    assert out.code == exitcodes.FAILURE and "no [merchants.markets.export]" in out.err


def test_a_delivery_that_fails_exits_9_and_stays_owed(capsys, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    demo = tmp_path / "demo"
    run_cli(capsys, "init", demo)
    cfg = demo / "stockdrop.toml"
    (demo / "exports").mkdir()
    (demo / "exports" / "amazon").write_text("a file where the folder should be")
    text = cfg.read_text().replace('folder = "exports/amazon"', 'folder = "exports/amazon"\nfailing_after = 1')
    cfg.write_text(text)
    out = run_cli(capsys, "-c", cfg, "export", "amazon")
    assert out.code == exitcodes.NOT_DELIVERED and "failing" in out.out
    [row] = run_cli(capsys, "-c", cfg, "exports", "--status", "failing", "--json").json()["exports"]
    assert row["attempts"] == 1 and row["last_error"]
    owed = run_cli(capsys, "-c", cfg, "market", "show", "amazon", "--json").json()["export"]["owed"]
    assert owed["id"] == row["id"] and owed["status"] == "failing"
