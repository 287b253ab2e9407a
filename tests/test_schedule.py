"""The daemon's scheduler (APScheduler behind ``runtime.schedule``), with real threads and short times."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from daemon.errors import ConfigError
from daemon.runtime.schedule import Scheduler, Stopped, check_cron
from daemon.settings import parse_settings


def test_every_runs_repeatedly_and_after_runs_once_however_often_asked() -> None:
    ticks: list[float] = []
    once = threading.Event()
    calls: list[int] = []

    def setup(s: Scheduler) -> None:
        s.every("tick", 0.05, lambda: ticks.append(time.monotonic()))

    scheduler = Scheduler("test", setup)
    scheduler.start()
    try:
        for _ in range(5):  # five changes in the window: one run
            scheduler.after("debounced", 0.2, lambda: (calls.append(1), once.set()))
        assert once.wait(10)
        time.sleep(0.3)
        assert calls == [1]
        scheduler.after("debounced", 0, lambda: calls.append(2))  # the window is over: a new run
        deadline = time.monotonic() + 10
        while calls != [1, 2] and time.monotonic() < deadline:
            time.sleep(0.02)
        assert calls == [1, 2]
        assert len(ticks) >= 3
        scheduler.check()
    finally:
        scheduler.stop()


def test_stopping_cuts_a_wait_between_tries_short() -> None:
    scheduler = Scheduler("test", lambda s: None)
    scheduler.start()
    got: list[str] = []

    def waiter() -> None:
        try:
            scheduler.sleep(60)
            got.append("slept")
        except Stopped:
            got.append("stopped")

    thread = threading.Thread(target=waiter)
    thread.start()
    time.sleep(0.1)
    scheduler.stop()
    thread.join(5)
    assert got == ["stopped"]


def test_a_crontab_line_is_checked_at_load() -> None:
    assert check_cron("0 6 * * *") is None
    assert check_cron("*/15 * * * 1-5") is None
    assert "not a crontab line" in (check_cron("every day") or "")


def test_a_bad_cron_in_an_export_names_its_key(tmp_path: Path) -> None:
    raw = {"merchants": [{"name": "m", "markets": [{"name": "amz", "export": {"folder": "o", "full_cron": "0 25 * * *"}}]}]}
    with pytest.raises(ConfigError) as info:
        parse_settings(raw, base=tmp_path)
    [(key, message)] = info.value.problems
    assert key == "merchants[0].markets[0].export" and message.startswith("full_cron: '0 25 * * *' is not a crontab")
