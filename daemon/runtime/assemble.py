"""Assemble the daemon from the settings: which services run, in which order."""

from __future__ import annotations

from typing import Any

from daemon import exitcodes
from daemon.cli.app import App
from daemon.db.catalog import sync_config
from daemon.db.checkpoint import Checkpointer
from daemon.db.markets import sync_markets
from daemon.db.engine import session_factory
from daemon.errors import ConfigError, UserError
from daemon.ingest.pipeline import Pipeline
from daemon.ingest.endpoints.factory import endpoint_services
from daemon.ingest.sources import SourceBook
from daemon.logs import configure_logging, get_logger
from daemon.runtime.lifecycle import Runtime, install_signal_handlers

log = get_logger("daemon.runtime.assemble")

def build_services(app: App) -> list[Any]:
    settings = app.settings
    sessions = session_factory(app.engine)
    with sessions() as session, session.begin():
        sync_config(session, settings, app.now())
        sync_markets(session, settings, app.now())
        book = SourceBook.load(session, settings)
    for info in book:
        info.inbox.mkdir(parents=True, exist_ok=True)
        info.results.mkdir(parents=True, exist_ok=True)
    pipeline = Pipeline(settings, sessions, book)
    services = pipeline.services()
    services.extend(endpoint_services(settings, pipeline, sessions))
    if app.engine.dialect.name == "sqlite":
        # First, so it stops last: the workers' final commits get checkpointed.
        services.insert(0, Checkpointer(app.engine))
    return services


def run_daemon(app: App, *, log_format: str = "auto", log_level: str = "info") -> int:
    configure_logging(log_format, log_level)  # type: ignore[arg-type]
    try:
        settings = app.settings
        app.require_schema()
        services = build_services(app)
    except ConfigError as exc:
        for key, reason in exc.problems:
            log.error("config_invalid", key=key, reason=reason)
        return exitcodes.CONFIG
    except UserError as exc:
        log.error("database_not_ready", reason=str(exc))
        return exitcodes.DB_NOT_READY
    log.info("starting", config=str(settings.config_path), data_dir=str(settings.data_dir),
             services=[s.name for s in services])
    runtime = Runtime(services)
    with install_signal_handlers(runtime):
        return runtime.run()
