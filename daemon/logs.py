"""Structured logging: one JSON object per line for journald, or readable console.

Everything goes through one stdlib handler on the root logger, so structlog
events and the stdlib records of pyftpdlib, paramiko, APScheduler and Alembic
come out in the same format, on the same stream, without interleaving.

JSON lines carry ``event``, ``level``, ``timestamp`` (ISO 8601, UTC), ``logger``
and whatever keys were bound. Output goes to stdout: journald captures it either
way, and one stream keeps the order of events.
"""

from __future__ import annotations

import logging
import sys
from typing import Any, Literal, TextIO

import structlog

Format = Literal["json", "console", "auto"]

# Libraries that narrate every connection at INFO. Their warnings still matter
# (a TLS failure, a refused login), their chatter does not.
NOISY_LOGGERS: dict[str, int] = {
    "pyftpdlib": logging.WARNING,
    "paramiko": logging.WARNING,
    "paramiko.transport": logging.WARNING,
    "apscheduler": logging.WARNING,
    "alembic": logging.WARNING,
}

_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "critical": logging.CRITICAL,
}


class _StockdropHandler(logging.StreamHandler):
    """Marks the handler this module installed, so reconfiguring replaces it.

    Given a stream *name* ("stdout"/"stderr") it looks the stream up on every
    record: a thread that logs late (paramiko's, after a connection drops)
    then writes to whatever sys.stderr is now, not to a stream since closed.
    """

    def __init__(self, stream: TextIO | str) -> None:
        self._stream_name = stream if isinstance(stream, str) else None
        super().__init__(getattr(sys, stream) if isinstance(stream, str) else stream)

    def emit(self, record: logging.LogRecord) -> None:
        if self._stream_name is not None:
            self.stream = getattr(sys, self._stream_name)
        super().emit(record)


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # detached or closed streams
        return False


def configure_logging(
    fmt: Format = "auto", level: str = "info", *, stream: TextIO | str | None = None
) -> None:
    """Route structlog and stdlib logging to ``stream`` (default: stdout).

    ``stream`` is a file object, or the name "stdout" or "stderr" to follow
    ``sys.stdout``/``sys.stderr`` as they are when each record is written.

    ``fmt="auto"`` picks the console renderer on a terminal and JSON otherwise
    (under systemd stdout is a socket to journald). Safe to call again: the
    handler installed last time is replaced, not duplicated.
    """
    if fmt not in ("json", "console", "auto"):
        raise ValueError(f"log format must be json, console or auto, not {fmt!r}")
    try:
        numeric = _LEVELS[level.lower()]
    except KeyError:
        raise ValueError(f"log level must be one of {', '.join(_LEVELS)}, not {level!r}") from None
    target: TextIO | str = "stdout" if stream is None else stream
    out = getattr(sys, target) if isinstance(target, str) else target
    tty = _isatty(out)
    as_json = fmt == "json" or (fmt == "auto" and not tty)

    # Applied to structlog events and stdlib records alike, so both carry the
    # same keys.
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *shared,
            structlog.stdlib.PositionalArgumentsFormatter(),
            structlog.processors.StackInfoRenderer(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        # Not cached: loggers made at import time must follow a later
        # configure_logging() and structlog.testing.capture_logs().
        cache_logger_on_first_use=False,
    )

    renderer: list[Any]
    if as_json:
        # Tracebacks become one string field: a JSON line must stay one line.
        renderer = [structlog.processors.format_exc_info, structlog.processors.JSONRenderer()]
    else:
        renderer = [structlog.dev.ConsoleRenderer(colors=tty)]
    handler = _StockdropHandler(target)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *renderer],
        )
    )

    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _StockdropHandler)]:
        root.removeHandler(old)
    # With a root handler present pyftpdlib also skips installing its own
    # stderr handler, which would print every line a second time.
    root.addHandler(handler)
    root.setLevel(numeric)
    for name, floor in NOISY_LOGGERS.items():
        logging.getLogger(name).setLevel(max(floor, numeric))
    # DeprecationWarnings and the like become log records instead of stderr text.
    logging.captureWarnings(True)


def get_logger(name: str | None = None) -> structlog.stdlib.BoundLogger:
    """A structlog logger named like a stdlib one (``get_logger(__name__)``)."""
    logger: structlog.stdlib.BoundLogger = structlog.get_logger(name)
    return logger
