"""Commands that set things up: init, check-config, db."""

from __future__ import annotations

from pathlib import Path

import click

from daemon import exitcodes
from daemon.cli.app import App, emit_json
from daemon.cli.demo import DEMO_CONFIG, DEMO_PASSWORD, DEMO_USER, seed_demo
from daemon.db import migrate
from daemon.db.sync import sync_with_config
from daemon.errors import UserError


@click.command()
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option("--force", is_flag=True, help="Overwrite an existing stockdrop.toml there.")
@click.pass_obj
def init(app: App, directory: Path, force: bool) -> None:
    """Write a working demo into DIRECTORY: config, folders, database, SKUs."""
    config = directory / "stockdrop.toml"
    if config.exists() and not force:
        raise UserError(f"{config} already exists; use --force to overwrite it")
    directory.mkdir(parents=True, exist_ok=True)
    config.write_text(DEMO_CONFIG, encoding="utf-8")
    app.config_path = str(config)
    settings = app.settings
    prepare_folders(app)
    migrate.upgrade(app.engine)
    with app.transaction() as session:
        sync_with_config(session, settings, app.now())
        seeded = seed_demo(session, app.now())
    click.echo(f"Wrote {config} and a demo database with {seeded} SKUs.")
    click.echo(f"FTP (127.0.0.1:2121) and SFTP (127.0.0.1:2222) login: {DEMO_USER} / {DEMO_PASSWORD}\n")
    click.echo("Next:")
    click.echo(f"  stockdrop -c {config} inventory")
    click.echo(f"  stockdrop -c {config} set 0001234 7 --source main-warehouse")
    click.echo(f"  stockdrop -c {config} ledger")
    click.echo(f"  stockdrop -c {config} run")


def prepare_folders(app: App) -> None:
    """Create the data directory and every source's inbox and results folders (and a
    warehouse's statuses/ when it is sent orders)."""
    s = app.settings
    s.data_dir.mkdir(parents=True, exist_ok=True)
    for merchant in s.merchants:
        for source in merchant.all_sources():
            s.inbox(merchant.name, source).mkdir(parents=True, exist_ok=True)
            s.results(merchant.name, source).mkdir(parents=True, exist_ok=True)
            if source.orders_export is not None:
                for sub in ("inbox", "results"):
                    (s.statuses_folder(merchant.name, source) / sub).mkdir(parents=True, exist_ok=True)


@click.command("check-config")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.pass_obj
def check_config(app: App, as_json: bool) -> None:
    """Validate the config; print every problem with its key path."""
    settings = app.settings  # raises ConfigError, printed by main() with exit code 6
    if as_json:
        emit_json({"ok": True, "config": str(settings.config_path)})
    else:
        click.echo(f"{settings.config_path}: OK ({len(settings.merchants)} merchant(s))")


@click.group()
def db() -> None:
    """Database schema migrations."""


@db.command()
@click.option("--revision", default="head", show_default=True)
@click.pass_obj
def upgrade(app: App, revision: str) -> None:
    """Apply pending migrations, then record the configured merchants and sources."""
    before = migrate.current_revision(app.engine)
    migrate.upgrade(app.engine, revision)
    after = migrate.current_revision(app.engine)
    if revision == "head":
        prepare_folders(app)
        with app.transaction() as session:
            sync_with_config(session, app.settings, app.now())
    click.echo(f"database at {after} (was {before or 'empty'})")


@db.command()
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def current(app: App, as_json: bool) -> None:
    """Print the schema revision and whether a migration is pending."""
    cur, head = migrate.current_revision(app.engine), migrate.HEAD
    if as_json:
        emit_json({"current": cur, "head": head, "pending": cur != head})
    else:
        click.echo(f"{cur or 'empty'}{'' if cur == head else f' (pending: upgrade to {head})'}")
    if cur != head:
        raise SystemExit(exitcodes.DB_NOT_READY)
