"""`stockdrop run`: the daemon."""

from __future__ import annotations

import click

from daemon.cli.app import App


@click.command()
@click.option("--log-format", type=click.Choice(["auto", "json", "console"]), default="auto",
              show_default=True, help="auto: console on a TTY, JSON lines otherwise.")
@click.option("--log-level", default="info", show_default=True)
@click.pass_obj
def run(app: App, log_format: str, log_level: str) -> None:
    """Run the daemon until SIGTERM or SIGINT (a second signal forces the stop)."""
    from daemon.runtime.assemble import run_daemon

    raise SystemExit(run_daemon(lambda: (app.settings, app.engine), log_format=log_format,
                                log_level=log_level))
