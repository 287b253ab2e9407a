"""The CLI as a user drives it, through --json, on SQLite and PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import click
import pytest

from daemon import exitcodes
from tests.conftest import Database
from tests.helpers import ONE_WAREHOUSE, run_cli, write_config


@pytest.fixture
def config(tmp_path: Path, database: Database, capsys: pytest.CaptureFixture[str]) -> Path:
    path = write_config(tmp_path / "conf", ONE_WAREHOUSE, database_url=database.url)
    assert run_cli(capsys, "-c", path, "db", "upgrade").code == 0
    return path


def test_init_writes_a_working_demo_and_set_shows_in_inventory_and_ledger(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    demo = tmp_path / "demo"
    result = run_cli(capsys, "init", demo)
    assert result.code == 0, result.err
    assert "Next:" in result.out
    cfg = demo / "stockdrop.toml"
    assert run_cli(capsys, "-c", cfg, "check-config").code == 0
    assert run_cli(capsys, "-c", cfg, "set", "0001234", "7", "--source", "main-warehouse").code == 0
    inv = run_cli(capsys, "-c", cfg, "inventory", "--sku", "0001234", "--json").json()["inventory"]
    by_source = {row["source"]: row["quantity"] for row in inv}
    assert by_source["main-warehouse"] == 7
    assert by_source["merchant-fulfilled"] == 12  # the other source is untouched
    entry = run_cli(capsys, "-c", cfg, "ledger", "--limit", "1", "--json").json()["ledger"][0]
    assert (entry["sku"], entry["before"], entry["after"], entry["actor"], entry["reason"]) == (
        "0001234", 40, 7, "cli", "manual")


def test_init_refuses_to_overwrite_an_existing_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli(capsys, "init", tmp_path / "d").code == 0
    result = run_cli(capsys, "init", tmp_path / "d")
    assert result.code == exitcodes.FAILURE
    assert "already exists" in result.err and "Traceback" not in result.err


def test_set_keeps_leading_zeros_and_records_the_cli_actor(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = run_cli(capsys, "-c", config, "set", "0017", "5", "--source", "wh1", "--json")
    assert out.code == 0, out.err
    assert out.json() == {"merchant": "acme", "source": "wh1", "sku": "0017", "before": 0,
                          "after": 5, "changed": True}
    again = run_cli(capsys, "-c", config, "set", "0017", "5", "--source", "wh1", "--json").json()
    assert again["changed"] is False
    inv = run_cli(capsys, "-c", config, "inventory", "--json").json()["inventory"]
    assert [(r["sku"], r["source"], r["quantity"]) for r in inv] == [("0017", "wh1", 5)]
    ledger = run_cli(capsys, "-c", config, "ledger", "--sku", "0017", "--json").json()["ledger"]
    assert len(ledger) == 1 and ledger[0]["actor"] == "cli"
    assert run_cli(capsys, "-c", config, "inventory", "--sku", "17", "--json").json() == {"inventory": []}


def test_an_unknown_source_is_one_clear_line_and_a_named_exit_code(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    result = run_cli(capsys, "-c", config, "set", "A", "1", "--source", "nope")
    assert result.code == exitcodes.FAILURE
    lines = result.err.strip().splitlines()
    assert len(lines) == 1 and "no source named 'nope'" in lines[0] and "wh1" in lines[0]


def test_check_config_prints_every_problem_with_its_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = write_config(tmp_path, '[[merchants]]\nname = "m"\ntimezone = "Nowhere/City"\n'
                       '[[merchants.sources]]\nname = "w"\ndrop_folder = "missing"\n')
    result = run_cli(capsys, "-c", cfg, "check-config")
    assert result.code == exitcodes.CONFIG
    assert "merchants[0].timezone: unknown time zone 'Nowhere/City'" in result.err
    assert "Traceback" not in result.err


def test_commands_refuse_a_database_with_pending_migrations(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = write_config(tmp_path, ONE_WAREHOUSE)
    result = run_cli(capsys, "-c", cfg, "inventory")
    assert result.code == exitcodes.FAILURE
    assert "stockdrop db upgrade" in result.err
    assert run_cli(capsys, "-c", cfg, "db", "current").code == exitcodes.DB_NOT_READY
    assert run_cli(capsys, "-c", cfg, "db", "upgrade").code == 0
    assert run_cli(capsys, "-c", cfg, "db", "current", "--json").json()["pending"] is False


def test_a_missing_config_file_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    result = run_cli(capsys, "-c", tmp_path / "nope.toml", "inventory")
    assert result.code == exitcodes.CONFIG
    assert "config file not found" in result.err


HEAVY = ("sqlalchemy", "alembic", "pydantic", "polars", "paramiko", "pyftpdlib", "openpyxl", "watchdog", "fastexcel")
_LOADED = """
import sys
from daemon.cli import main
try:
    main(sys.argv[1:])
except SystemExit as exc:
    code = exc.code
print("loaded:" + ",".join(sorted(m for m in {heavy!r} if m in sys.modules)))
"""


def _loaded(*args: str | Path) -> set[str]:
    """The heavy libraries a command imports, run in a fresh interpreter."""
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", _LOADED.format(heavy=HEAVY), *map(str, args)],
                          check=True, capture_output=True, text=True, timeout=120)
    line = done.stdout.splitlines()[-1]
    assert line.startswith("loaded:"), done.stdout
    return set(filter(None, line.removeprefix("loaded:").split(",")))


def test_version_and_help_load_no_heavy_library() -> None:
    assert _loaded("--version") == set()
    assert _loaded("--help") == set()


def test_read_only_commands_load_the_database_layer_but_not_polars_alembic_or_the_endpoints(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli(capsys, "init", tmp_path / "demo").code == 0
    config = tmp_path / "demo" / "stockdrop.toml"
    for args in (("inventory", "--sku", "0001234", "--json"), ("history",), ("ledger", "--json"), ("outbox",)):
        assert _loaded("-c", config, *args) <= {"sqlalchemy", "pydantic"}, args


def test_the_command_table_says_what_each_command_says_of_itself() -> None:
    from daemon.cli import COMMANDS, cli

    ctx = click.Context(cli)
    for name, (_, _, short) in COMMANDS.items():
        command = cli.get_command(ctx, name)
        assert command is not None and command.name == name
        own = (command.help or "").split("\n\n")[0].replace("\n", " ").strip()
        assert own == short, name
