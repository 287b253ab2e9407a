from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
import structlog

from daemon.logs import NOISY_LOGGERS, configure_logging, get_logger


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    """Leave the root logger and structlog as the test found them."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    noisy = {name: logging.getLogger(name).level for name in NOISY_LOGGERS}
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    for name, lvl in noisy.items():
        logging.getLogger(name).setLevel(lvl)
    logging.captureWarnings(False)
    structlog.reset_defaults()


def lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_json_output_is_one_object_per_line_with_event_level_timestamp_and_bound_keys() -> None:
    out = io.StringIO()
    configure_logging("json", stream=out)
    get_logger("daemon.test").bind(merchant="acme").info("feed_applied", rows=3)
    get_logger("daemon.test").warning("feed_held")

    first, second = lines(out)
    assert first["event"] == "feed_applied"
    assert first["level"] == "info"
    assert first["merchant"] == "acme" and first["rows"] == 3
    assert first["logger"] == "daemon.test"
    stamp = datetime.fromisoformat(first["timestamp"])
    assert stamp.utcoffset() == UTC.utcoffset(None)
    assert second["event"] == "feed_held" and second["level"] == "warning"


def test_stdlib_records_come_out_as_the_same_json() -> None:
    out = io.StringIO()
    configure_logging("json", stream=out)
    logging.getLogger("some.library").error("disk %s is full", "/srv")

    (record,) = lines(out)
    assert record["event"] == "disk /srv is full"
    assert record["level"] == "error"
    assert record["logger"] == "some.library"
    assert "timestamp" in record


def test_noisy_libraries_are_quiet_below_warning_even_at_debug() -> None:
    out = io.StringIO()
    configure_logging("json", level="debug", stream=out)
    logging.getLogger("paramiko.transport").info("Connected (version 2.0)")
    logging.getLogger("paramiko.transport").warning("Authentication failed")
    get_logger("daemon.test").debug("still_here")

    assert [r["event"] for r in lines(out)] == ["Authentication failed", "still_here"]


def test_events_below_the_level_are_dropped() -> None:
    out = io.StringIO()
    configure_logging("json", level="warning", stream=out)
    get_logger("daemon.test").info("chatter")
    get_logger("daemon.test").warning("kept")
    assert [r["event"] for r in lines(out)] == ["kept"]


def test_an_exception_stays_on_one_json_line() -> None:
    out = io.StringIO()
    configure_logging("json", stream=out)
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        get_logger("daemon.test").exception("failed")

    (record,) = lines(out)
    assert "RuntimeError: boom" in record["exception"]


def test_auto_picks_json_when_the_stream_is_not_a_terminal() -> None:
    out = io.StringIO()
    configure_logging("auto", stream=out)
    get_logger("daemon.test").info("hello")
    assert lines(out)[0]["event"] == "hello"


def test_console_format_is_not_json() -> None:
    out = io.StringIO()
    configure_logging("console", stream=out)
    get_logger("daemon.test").info("hello", merchant="acme")
    text = out.getvalue()
    assert "hello" in text and "merchant" in text
    with pytest.raises(json.JSONDecodeError):
        json.loads(text.splitlines()[0])


def test_configuring_twice_does_not_print_every_line_twice() -> None:
    out = io.StringIO()
    configure_logging("json", stream=out)
    configure_logging("json", stream=out)
    get_logger("daemon.test").info("once")
    assert len(lines(out)) == 1


def test_a_bad_level_or_format_is_refused_with_the_allowed_values() -> None:
    with pytest.raises(ValueError, match="debug, info"):
        configure_logging("json", level="loud")
    with pytest.raises(ValueError, match="json, console or auto"):
        configure_logging("xml")  # type: ignore[arg-type]
