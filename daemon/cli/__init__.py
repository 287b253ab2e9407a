"""The ``stockdrop`` command line. ``python -m daemon`` runs the same thing.

User errors print one line to stderr and exit with a named code
(``daemon.exitcodes``); tracebacks are for bugs only.

Each command is imported only when it runs: ``--version`` and ``--help``
load neither the database layer nor polars, and a read-only command loads
only what it reads (``python -m bench cli`` times them).
"""

from __future__ import annotations

import importlib
import sys
from typing import Any

import click

from daemon import __version__, exitcodes
from daemon.errors import ConfigError, StockdropError, UserError

# name -> (module under daemon.cli, attribute, the line `--help` shows). One line a command.
COMMANDS: dict[str, tuple[str, str, str]] = {
    "init": ("setup", "init", "Write a working demo into DIRECTORY: config, folders, database, SKUs."),
    "check-config": ("setup", "check_config", "Validate the config; print every problem with its key path."),
    "db": ("setup", "db", "Database schema migrations."),
    "run": ("run", "run", "Run the daemon until SIGTERM or SIGINT (a second signal forces the stop)."),
    "inventory": ("stock", "inventory", "The quantities per source (or what a market should be sent, with --market)."),
    "set": ("stock", "set_command", "Set one SKU's quantity in one source (the individual update)."),
    "ledger": ("stock", "ledger", "The stock ledger, newest first: every change with its reason and actor."),
    "upload": ("ingest", "upload", "Send FILE through the ingest pipeline and print the outcome."),
    "history": ("ingest", "history", "The upload history, newest first: feeds, and markets' order and cancellation files."),
    "template": ("ingest", "template_command", "Write the Quantity Update template: every SKU of the source and its quantity."),
    "market": ("markets", "market_group", "Markets: which sources feed them, their channel rules, their listings."),
    "orders": ("orders", "orders", "Imported order lines, newest first."),
    "export": ("exports", "export", "Send MARKET its delta now (or its full feed with --full), after any delivery still owed to it."),
    "exports": ("exports", "exports", "The exports outbox, newest first: delivered, owed, failing."),
    "outbox": ("reports", "outbox", "The email outbox, newest first: pending, sent, failed (refused for good), coalesced (held back)."),
    "report": ("reports", "report", "Upload-history digests: send one now, or preview it without sending."),
    "user": ("users", "user", "Logins for the FTP and SFTP endpoints, each jailed to one source's folder."),
    "sftp": ("users", "sftp", "The hosted SFTP endpoint."),
    "ban": ("bans", "ban", "Addresses banned from the FTP and SFTP endpoints: list them, lift a ban."),
}


class _LazyGroup(click.Group):
    """A group whose commands are imported when one is run, not when the CLI starts."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in COMMANDS:
            return None
        module, attribute, _ = COMMANDS[cmd_name]
        command = getattr(importlib.import_module(f"daemon.cli.{module}"), attribute)
        assert isinstance(command, click.Command)
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        # From the table, not from the commands: listing them must not import them.
        with formatter.section("Commands"):
            formatter.write_dl([(name, COMMANDS[name][2]) for name in self.list_commands(ctx)])


@click.group(cls=_LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-c", "--config", "config_path", type=click.Path(dir_okay=False),
              help="Config file (default: $STOCKDROP_CONFIG, then ./stockdrop.toml).")
@click.version_option(__version__, prog_name="stockdrop")
@click.pass_context
def cli(ctx: click.Context, config_path: str | None) -> None:
    """Stockdrop: file-drop inventory integration daemon."""
    from daemon.cli.app import App
    from daemon.logs import configure_logging

    # Commands other than `run` keep stdout for their output (and --json):
    # only warnings and errors are logged, on stderr. `run` reconfigures.
    configure_logging("console" if sys.stderr.isatty() else "json", "warning", stream="stderr")
    ctx.obj = App(config_path)
    ctx.call_on_close(ctx.obj.close)


def _database_unavailable(exc: BaseException) -> Any:
    """The driver's error if ``exc`` is SQLAlchemy's "cannot reach the database"."""
    errors = sys.modules.get("sqlalchemy.exc")  # loaded only if a command used the database
    if errors is not None and isinstance(exc, errors.OperationalError):
        return exc.orig
    return None


def main(argv: list[str] | None = None) -> None:
    try:
        code = cli.main(args=argv, prog_name="stockdrop", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("stockdrop: aborted", err=True)
        sys.exit(exitcodes.FAILURE)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exitcodes.USAGE if isinstance(exc, click.UsageError) else exitcodes.FAILURE)
    except ConfigError as exc:
        for key, reason in exc.problems:
            click.echo(f"{key}: {reason}", err=True)
        sys.exit(exitcodes.CONFIG)
    except UserError as exc:
        click.echo(f"stockdrop: {exc}", err=True)
        sys.exit(exitcodes.FAILURE)
    except StockdropError as exc:
        click.echo(f"stockdrop: {exc}", err=True)
        sys.exit(exitcodes.FAILURE)
    except Exception as exc:
        reason = _database_unavailable(exc)
        if reason is None:
            raise
        click.echo(f"stockdrop: database unavailable: {reason}", err=True)
        sys.exit(exitcodes.DB_NOT_READY)
    sys.exit(code if isinstance(code, int) else exitcodes.OK)
