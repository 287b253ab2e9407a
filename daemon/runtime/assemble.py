"""Assemble the daemon from the settings: which services run, in which order."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from daemon import exitcodes
from daemon.db import migrate
from daemon.db.checkpoint import Checkpointer
from daemon.db.engine import session_factory
from daemon.db.leader import Leadership
from daemon.db.sync import sync_with_config
from daemon.errors import ConfigError, UserError
from daemon.export.orders import OrderExporter, OrdersTarget
from daemon.export.sender import AlertHook, Stopping
from daemon.export.service import Exporter, ExportTarget
from daemon.ingest.endpoints.factory import endpoint_services
from daemon.ingest.outcomes import Outcome, OutcomeHook
from daemon.ingest.pipeline import Pipeline
from daemon.ingest.sources import SourceBook
from daemon.logs import configure_logging, get_logger
from daemon.reports.alerts import alerts_for
from daemon.reports.digest import DigestService
from daemon.reports.outbox import MailService
from daemon.runtime.lifecycle import Runtime, install_signal_handlers
from daemon.runtime.schedule import Scheduler, Stopped
from daemon.settings import Settings, session_info

log = get_logger(__name__)


def build_services(settings: Settings, engine: Engine) -> list[Any]:
    sessions = session_factory(engine, info=session_info(settings))
    for attempt in (1, 2):
        try:
            with sessions() as session, session.begin():
                sync_with_config(session, settings, datetime.now(UTC))
                book = SourceBook.load(session, settings)
            break
        except IntegrityError:
            # Another daemon on the same database created the same merchant,
            # source or market at the same moment: the second try finds them.
            if attempt == 2:
                raise
    for info in book:
        info.inbox.mkdir(parents=True, exist_ok=True)
        info.results.mkdir(parents=True, exist_ok=True)
        if info.statuses is not None:
            (info.statuses / "inbox").mkdir(parents=True, exist_ok=True)
            (info.statuses / "results").mkdir(parents=True, exist_ok=True)
    alerts = alerts_for(sessions, settings)
    told: list[OutcomeHook] = [alerts.upload_finished] if alerts else []  # each file's outcome, once filed

    def tell(outcome: Outcome) -> None:
        for hook in told:
            hook(outcome)

    pipeline = Pipeline(settings, sessions, book, on_outcome=tell)
    services = pipeline.services(leads=lambda work: Leadership(engine, work).is_leader)
    services.extend(endpoint_services(settings, pipeline, sessions))
    exports = export_service(settings, engine, sessions, alert=alerts.export_failing if alerts else None,
                             order_alert=alerts.order_export_failing if alerts else None)
    if exports is not None:
        scheduler, exporter = exports
        services.append(scheduler)
        # A file applied here: the exporter looks at once rather than at its next poll.
        told.append(lambda outcome: exporter.nudge())
    if settings.smtp is not None:
        # Every daemon writes the alerts for what it saw; the one leading "email" sends them all,
        # and writes the scheduled digests (one Leadership: one advisory lock, one session).
        email = Leadership(engine, "email")
        services.append(MailService(sessions, settings.smtp, node=settings.node, leads=email.is_leader))
        if settings.reports.digest:
            services.append(DigestService(sessions, settings, leads=email.is_leader))
    if engine.dialect.name == "sqlite":
        # First, so it stops last: the workers' final commits get checkpointed.
        services.insert(0, Checkpointer(engine))
    return services


def export_service(settings: Settings, engine: Engine, sessions: sessionmaker[Session], *,
                   alert: AlertHook | None = None,
                   order_alert: AlertHook | None = None) -> tuple[Scheduler, Exporter] | None:
    """The exporters (quantity feeds to markets, ``export.service``; order files to warehouses,
    ``export.orders``) on a scheduler of their own, leading or not, and the markets' exporter;
    None without exports.
    ``alert``: called when a market's exports keep failing; ``order_alert``: a warehouse's order files."""
    targets = [ExportTarget(m, market, export) for m, market, export in settings.export_targets()]
    order_targets = [OrdersTarget(m, source, export) for m, source, export in settings.orders_export_targets()]
    if not targets and not order_targets:
        return None
    leadership = Leadership(engine, "exports")

    def sleep(seconds: float) -> None:
        try:
            scheduler.sleep(seconds)
        except Stopped:
            raise Stopping from None

    exporter = Exporter(sessions, targets, leads=leadership.is_leader, node=settings.node, sleep=sleep, alert=alert)
    orders = OrderExporter(sessions, order_targets, leads=leadership.is_leader, node=settings.node, sleep=sleep,
                           alert=order_alert)

    def setup(timer: Scheduler) -> None:
        if targets:
            exporter.start(timer)
        orders.start(timer)

    scheduler = Scheduler("exports", setup, workers=min(8, len(targets) + len(order_targets) + 2))
    return scheduler, exporter


def run_daemon(load: Callable[[], tuple[Settings, Engine]], *, log_format: str = "auto",
               log_level: str = "info") -> int:
    """Run until stopped; returns the exit code. ``load`` reads the settings and
    opens the database once logging is set up, so its problems are logged too."""
    configure_logging(log_format, log_level)  # type: ignore[arg-type]  # click's Choice checked it
    try:
        settings, engine = load()
        migrate.require_head(engine)
        services = build_services(settings, engine)
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
