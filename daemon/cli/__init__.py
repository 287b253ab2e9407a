"""The ``stockdrop`` command line. ``python -m daemon`` runs the same thing.

User errors print one line to stderr and exit with a named code
(``daemon.exitcodes``); tracebacks are for bugs only.
"""

from __future__ import annotations

import sys

import click
from sqlalchemy.exc import OperationalError

from daemon import __version__, exitcodes
from daemon.cli.app import App
from daemon.errors import ConfigError, StockdropError, UserError


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-c", "--config", "config_path", type=click.Path(dir_okay=False),
              help="Config file (default: $STOCKDROP_CONFIG, then ./stockdrop.toml).")
@click.version_option(__version__, prog_name="stockdrop")
@click.pass_context
def cli(ctx: click.Context, config_path: str | None) -> None:
    """Stockdrop: file-drop inventory integration daemon."""
    # Commands other than `run` keep stdout for their output (and --json):
    # only warnings and errors are logged, on stderr. `run` reconfigures.
    from daemon.logs import configure_logging

    configure_logging("console" if sys.stderr.isatty() else "json", "warning", stream="stderr")
    ctx.obj = App(config_path)
    ctx.call_on_close(ctx.obj.close)


def _register() -> None:
    # Each module adds its commands to ``cli``; one line per module.
    from daemon.cli import ingest, markets, orders, run, setup, stock, users  # noqa: F401


def main(argv: list[str] | None = None) -> None:
    _register()
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
    except OperationalError as exc:
        click.echo(f"stockdrop: database unavailable: {exc.orig}", err=True)
        sys.exit(exitcodes.DB_NOT_READY)
    except StockdropError as exc:
        click.echo(f"stockdrop: {exc}", err=True)
        sys.exit(exitcodes.FAILURE)
    sys.exit(code if isinstance(code, int) else exitcodes.OK)
