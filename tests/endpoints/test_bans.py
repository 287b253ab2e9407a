"""The ban rules (scored per address and per account), without servers, and kept in a real database."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from daemon.auth.ban_store import DbBanStore
from daemon.auth.bans import Ban, BanList, BanPolicy
from daemon.db import bans as ban_rows
from daemon.db.engine import session_factory

POLICY = BanPolicy(threshold=5, window_s=60, ban_s=100, ban_growth_percent=50, max_ban_s=1000,
                   remember_s=500)


def test_an_address_is_banned_once_its_score_reaches_the_threshold() -> None:
    bans = BanList(POLICY)
    for t in range(4):  # a wrong password for an account that exists scores 1
        assert not bans.failed("1.2.3.4", "wh1", t)
    assert not bans.is_banned("1.2.3.4", 5)
    with capture_logs() as logs:
        assert bans.failed("1.2.3.4", "wh1", 6)
    assert bans.is_banned("1.2.3.4", 7)
    assert not bans.is_banned("5.6.7.8", 7)
    assert bans.bans_total == 1
    [event] = logs
    assert (event["event"], event["remote_addr"], event["score"]) == ("login_ban", "1.2.3.4", 5)
    assert event["reason"] == "failed logins as wh1 x5"


def test_guessing_account_names_scores_more_than_mistyping_a_password() -> None:
    bans = BanList(POLICY)
    assert not bans.failed("a", "nobody", 0, known_user=False)
    assert not bans.failed("a", "admin", 1, known_user=False)
    assert bans.failed("a", "root", 2, known_user=False)  # 2 + 2 + 2 >= 5


def test_connections_over_a_limit_score_too() -> None:
    bans = BanList(POLICY)
    assert not bans.limit_exceeded("a", 0)
    assert bans.limit_exceeded("a", 1)  # 3 + 3
    assert bans.active(2)[0].reason == "connection limits x2"


def test_a_valid_login_as_one_account_does_not_launder_guesses_at_another() -> None:
    # issue 12, defect 1: a login of its own every 4th try kept the attacker unbanned
    bans = BanList(POLICY)
    banned, t = False, 0
    while not banned and t < 40:
        t += 1
        if t % 4 == 0:
            bans.succeeded("a", "attacker", t)
            continue
        banned = bans.failed("a", "victim", t)
    assert banned and t == 6  # the 5th guess at the victim
    assert bans.active(t)[0].reason == "failed logins as victim x5"


def test_a_valid_login_clears_that_accounts_failures_from_that_address_only() -> None:
    bans = BanList(POLICY)
    for t in range(4):
        bans.failed("a", "wh1", t)
        bans.failed("b", "wh1", t)
    bans.succeeded("a", "wh1", 5)  # wh1 got its password right from a
    assert not bans.failed("a", "wh1", 6)
    assert bans.failed("b", "wh1", 6)  # b's four still count


def test_the_ban_ends_after_ban_s() -> None:
    bans = BanList(POLICY)
    for t in range(5):
        bans.failed("a", "wh1", t)
    assert bans.is_banned("a", 103.9)
    assert not bans.is_banned("a", 104)


def test_a_repeat_offender_is_banned_longer_each_time_up_to_the_cap() -> None:
    bans = BanList(POLICY)
    lengths = []
    t = 0.0
    for _ in range(7):
        for _ in range(5):
            bans.failed("a", "wh1", t)
        [ban] = bans.active(t)
        lengths.append(round(ban.until - t))
        t = ban.until + 1
    assert lengths == [100, 150, 225, 338, 506, 759, 1000]
    assert [POLICY.ban_seconds(n) for n in (1, 2)] == [100, 150]


def test_a_ban_long_forgotten_starts_again_at_ban_s() -> None:
    bans = BanList(POLICY)
    for t in range(5):
        bans.failed("a", "wh1", t)
    later = 104 + POLICY.remember_s + 1
    for t in range(5):
        bans.failed("a", "wh1", later + t)
    [ban] = bans.active(later + 5)
    assert (ban.count, round(ban.until - ban.since)) == (1, 100)


def test_failures_older_than_the_window_do_not_count() -> None:
    bans = BanList(POLICY)
    for t in (0, 10, 20, 30):
        bans.failed("a", "wh1", t)
    assert not bans.failed("a", "wh1", 75)  # the first two are out of the window
    assert not bans.is_banned("a", 76)


def test_failures_while_banned_do_not_extend_or_recount_the_ban() -> None:
    bans = BanList(BanPolicy(threshold=1, window_s=60, ban_s=100))
    assert bans.failed("a", "wh1", 0)
    assert not bans.failed("a", "wh1", 50)
    assert not bans.is_banned("a", 100)
    assert bans.bans_total == 1


def test_concurrent_failures_ban_exactly_once() -> None:
    bans = BanList(BanPolicy(threshold=50, window_s=60, ban_s=100))
    results: list[bool] = []
    lock = threading.Lock()

    def fail() -> None:
        for _ in range(10):
            r = bans.failed("a", "wh1", 1)
            with lock:
                results.append(r)

    threads = [threading.Thread(target=fail) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results.count(True) == 1
    assert bans.bans_total == 1


def test_a_threshold_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="threshold"):
        BanPolicy(threshold=0)


# --- kept in the database


def _ban(bans: BanList, addr: str, t: float) -> None:
    for i in range(5):
        bans.failed(addr, "wh1", t + i / 10)
    assert bans.is_banned(addr, t + 1)


def test_a_ban_survives_a_restart(database) -> None:  # type: ignore[no-untyped-def]
    now = 1_800_000_000.0
    first = BanList(POLICY, DbBanStore(session_factory(database.engine), node="box-a"))
    _ban(first, "10.0.0.9", now)
    again = BanList(POLICY, DbBanStore(session_factory(database.engine), node="box-a"))  # a new process
    assert again.is_banned("10.0.0.9", now + 2)
    assert not again.is_banned("10.0.0.8", now + 2)
    [ban] = again.active(now + 2)
    assert (ban.address, ban.count, ban.reason) == ("10.0.0.9", 1, "failed logins as wh1 x5")
    assert round(ban.until - now) == 100


def test_a_ban_by_one_daemon_is_honoured_by_another_within_refresh_s(database) -> None:  # type: ignore[no-untyped-def]
    now = 1_800_000_000.0
    policy = BanPolicy(threshold=5, window_s=60, ban_s=100, refresh_s=5)
    a = BanList(policy, DbBanStore(session_factory(database.engine), node="a"))
    b = BanList(policy, DbBanStore(session_factory(database.engine), node="b"))
    assert not b.is_banned("10.0.0.9", now)  # b reads the store now, then every 5 s
    _ban(a, "10.0.0.9", now)
    assert b.is_banned("10.0.0.9", now + 5)


def test_a_removed_ban_lets_the_address_in_at_the_next_refresh(database) -> None:  # type: ignore[no-untyped-def]
    now = 1_800_000_000.0
    bans = BanList(POLICY, DbBanStore(session_factory(database.engine)))
    _ban(bans, "10.0.0.9", now)
    with session_factory(database.engine)() as session, session.begin():
        assert ban_rows.remove_ban(session, "10.0.0.9")
        assert not ban_rows.remove_ban(session, "10.0.0.9")
    assert not bans.is_banned("10.0.0.9", now + POLICY.refresh_s + 1)


def test_the_growth_counts_bans_remembered_in_the_database(database) -> None:  # type: ignore[no-untyped-def]
    now = 1_800_000_000.0
    _ban(BanList(POLICY, DbBanStore(session_factory(database.engine))), "10.0.0.9", now)
    later = now + 200  # the first ban ended at +100: remembered, not in force
    restarted = BanList(POLICY, DbBanStore(session_factory(database.engine)))
    assert not restarted.is_banned("10.0.0.9", later)
    _ban(restarted, "10.0.0.9", later)
    [ban] = restarted.active(later + 1)
    assert (ban.count, round(ban.until - ban.since)) == (2, 150)


class _DownStore:
    def __init__(self) -> None:
        self.saved: list[Ban] = []
        self.down = True

    def load(self, now: float, remember_s: float) -> list[Ban]:
        if self.down:
            raise OSError("database unavailable")
        return list(self.saved)

    def save(self, ban: Ban) -> None:
        if self.down:
            raise OSError("database unavailable")
        self.saved.append(ban)


def test_a_store_that_is_down_neither_stops_logins_nor_loses_a_ban(tmp_path: Path) -> None:
    store = _DownStore()
    bans = BanList(POLICY, store)
    with capture_logs() as logs:
        _ban(bans, "a", 0)
    assert {"bans_not_read", "ban_not_saved"} <= {e["event"] for e in logs}
    assert not bans.is_banned("b", 2)
    store.down = False
    assert bans.is_banned("a", POLICY.refresh_s + 2)  # the refresh saved it first
    assert [b.address for b in store.saved] == ["a"]


def test_a_ban_ended_longer_ago_than_remember_s_is_deleted(database) -> None:  # type: ignore[no-untyped-def]
    now = 1_800_000_000.0
    sessions = session_factory(database.engine)
    _ban(BanList(POLICY, DbBanStore(sessions)), "10.0.0.9", now)
    assert DbBanStore(sessions).load(now + 2, POLICY.remember_s) != []
    assert DbBanStore(sessions).load(now + 104 + POLICY.remember_s + 1, POLICY.remember_s) == []
    with sessions() as session:
        assert ban_rows.recent_bans(session, _at(0)) == []


def _at(seconds: float):  # type: ignore[no-untyped-def]
    from datetime import UTC, datetime

    return datetime.fromtimestamp(seconds, UTC)


def test_the_reason_shows_client_supplied_names_escaped_and_few() -> None:
    bans = BanList(BanPolicy(threshold=10, window_s=60, ban_s=100))
    for i, name in enumerate(["a\x1b[31m", "b" * 100, "c", "d", "e", "f", "g", "h", "i"]):
        bans.failed("addr", name, i)
    bans.failed("addr", "j", 10)
    [ban] = bans.active(11)
    assert ban.reason.startswith("failed logins as 'a\\x1b[31m' x1; failed logins as 'bbbb")
    assert ban.reason.endswith("; failed logins as e x1; 5 more accounts")
    assert "\x1b" not in ban.reason and "b" * 65 not in ban.reason
