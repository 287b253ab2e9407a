from __future__ import annotations

import threading

from structlog.testing import capture_logs

from daemon.auth.bans import BanList


def test_an_address_is_banned_after_max_failures_within_the_window() -> None:
    bans = BanList(max_failures=3, window_s=60, ban_s=100)
    assert not bans.failed("1.2.3.4", 0)
    assert not bans.failed("1.2.3.4", 10)
    assert not bans.is_banned("1.2.3.4", 11)
    with capture_logs() as logs:
        assert bans.failed("1.2.3.4", 20)
    assert bans.is_banned("1.2.3.4", 21)
    assert not bans.is_banned("5.6.7.8", 21)
    assert bans.bans_total == 1
    assert [e["event"] for e in logs] == ["login_ban"]
    assert logs[0]["remote_addr"] == "1.2.3.4"


def test_the_ban_ends_after_ban_s() -> None:
    bans = BanList(max_failures=1, window_s=60, ban_s=100)
    bans.failed("a", 0)
    assert bans.is_banned("a", 99.9)
    assert not bans.is_banned("a", 100)
    assert bans.failed("a", 101)  # a fresh failure bans again at max_failures=1
    assert bans.bans_total == 2


def test_failures_older_than_the_window_do_not_count() -> None:
    bans = BanList(max_failures=3, window_s=60, ban_s=100)
    bans.failed("a", 0)
    bans.failed("a", 10)
    assert not bans.failed("a", 75)  # the first two are out of the window
    assert not bans.is_banned("a", 76)


def test_a_successful_login_clears_the_failures() -> None:
    bans = BanList(max_failures=2, window_s=60, ban_s=100)
    bans.failed("a", 0)
    bans.succeeded("a", 1)
    assert not bans.failed("a", 2)
    assert not bans.is_banned("a", 3)


def test_failures_while_banned_do_not_extend_or_recount_the_ban() -> None:
    bans = BanList(max_failures=1, window_s=60, ban_s=100)
    assert bans.failed("a", 0)
    assert not bans.failed("a", 50)
    assert not bans.is_banned("a", 100)
    assert bans.bans_total == 1


def test_concurrent_failures_ban_exactly_once() -> None:
    bans = BanList(max_failures=50, window_s=60, ban_s=100)
    results: list[bool] = []
    lock = threading.Lock()

    def fail() -> None:
        for _ in range(10):
            r = bans.failed("a", 1)
            with lock:
                results.append(r)

    threads = [threading.Thread(target=fail) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results.count(True) == 1
    assert bans.bans_total == 1
