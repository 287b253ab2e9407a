"""Watched drop folders with real inotify (and polling) events."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from daemon.ingest.arrival import Arrival
from daemon.ingest.names import is_temporary
from daemon.ingest.sources import Inbox
from daemon.ingest.watch import FolderWatcher
from tests.helpers import wait_for


@pytest.fixture
def inbox(tmp_path: Path) -> Inbox:
    path = tmp_path / "src" / "inbox"
    path.mkdir(parents=True)
    return Inbox(path, source_id=1)


class Taken(list[Arrival]):
    """A deliver that claims the file the way intake does (a rename away)."""

    def __init__(self, spool: Path) -> None:
        super().__init__()
        self.spool = spool
        spool.mkdir(exist_ok=True)

    def __call__(self, arrival: Arrival) -> int:
        os.rename(arrival.path, self.spool / arrival.original_name)
        self.append(arrival)
        return len(self)

    @property
    def names(self) -> list[str]:
        return [a.original_name for a in self]


@pytest.fixture
def make_watcher(inbox: Inbox, tmp_path: Path) -> Iterator[Callable[..., tuple[FolderWatcher, Taken]]]:
    started: list[FolderWatcher] = []

    def make(**kw) -> tuple[FolderWatcher, Taken]:  # type: ignore[no-untyped-def]
        taken = Taken(tmp_path / "spool")
        kw.setdefault("settle_seconds", 0.3)
        w = FolderWatcher([inbox], taken, tick=0.05, **kw)
        w.start()
        started.append(w)
        return w, taken

    yield make
    for w in started:
        w.stop()


@pytest.mark.parametrize("name", ["a.tmp", "a.csv.part", "a.filepart", "a.writing", ".hidden.csv", "~$book.xlsx"])
def test_temporary_names_are_recognised(name: str) -> None:
    assert is_temporary(name)


def test_a_complete_file_is_taken_once_after_it_settles(make_watcher, inbox: Inbox) -> None:  # type: ignore[no-untyped-def]
    _, taken = make_watcher()
    (inbox.path / "feed.csv").write_text("sku,quantity\nA,1\n")
    assert wait_for(lambda: taken.names == ["feed.csv"])
    time.sleep(0.5)
    assert taken.names == ["feed.csv"]  # once only
    assert taken[0].protocol == "watch" and taken[0].source_id == 1


def test_a_file_still_growing_is_not_taken_until_it_stops(make_watcher, inbox: Inbox) -> None:  # type: ignore[no-untyped-def]
    _, taken = make_watcher(settle_seconds=1.0)
    path = inbox.path / "slow.csv"
    with path.open("w") as fh:
        for i in range(8):
            fh.write(f"S{i},1\n")
            fh.flush()
            time.sleep(0.3)
            assert taken == []
    assert wait_for(lambda: taken.names == ["slow.csv"])


def test_a_temporary_name_is_taken_only_after_the_rename(make_watcher, inbox: Inbox) -> None:  # type: ignore[no-untyped-def]
    _, taken = make_watcher()
    tmp = inbox.path / "feed.csv.part"
    tmp.write_text("sku,quantity\nA,1\n")
    time.sleep(1.0)
    assert taken == []
    tmp.rename(inbox.path / "feed.csv")
    assert wait_for(lambda: taken.names == ["feed.csv"])


def test_files_already_waiting_are_taken_at_start(inbox: Inbox, make_watcher) -> None:  # type: ignore[no-untyped-def]
    (inbox.path / "early.csv").write_text("x")
    _, taken = make_watcher()
    assert wait_for(lambda: taken.names == ["early.csv"])


def test_with_done_markers_a_file_waits_for_its_marker(make_watcher, inbox: Inbox) -> None:  # type: ignore[no-untyped-def]
    _, taken = make_watcher(done_markers=True)
    (inbox.path / "feed.csv").write_text("sku,quantity\nA,1\n")
    time.sleep(1.0)
    assert taken == []
    (inbox.path / "feed.csv.done").write_text("")
    assert wait_for(lambda: taken.names == ["feed.csv"])
    assert wait_for(lambda: not (inbox.path / "feed.csv.done").exists())


def test_a_zero_byte_file_is_handed_on_to_be_rejected_with_its_reason(make_watcher, inbox: Inbox) -> None:  # type: ignore[no-untyped-def]
    _, taken = make_watcher()
    (inbox.path / "empty.csv").write_bytes(b"")
    assert wait_for(lambda: taken.names == ["empty.csv"])


def test_the_polling_observer_finds_files_too(make_watcher, inbox: Inbox) -> None:  # type: ignore[no-untyped-def]
    _, taken = make_watcher(polling=True)
    (inbox.path / "nfs.csv").write_text("x")
    assert wait_for(lambda: taken.names == ["nfs.csv"])


def test_the_reconcile_scan_finds_a_file_whose_event_was_lost(inbox: Inbox, make_watcher) -> None:  # type: ignore[no-untyped-def]
    w, taken = make_watcher(reconcile_seconds=0.5)
    # Stop the observer so no event can arrive: only the periodic scan can see it.
    assert w._observer is not None
    w._observer.stop()
    w._observer.join()
    (inbox.path / "lost.csv").write_text("x")
    assert wait_for(lambda: taken.names == ["lost.csv"])


def test_a_deliver_failure_leaves_the_file_for_the_next_scan(inbox: Inbox, tmp_path: Path) -> None:
    calls: list[str] = []

    def flaky(arrival: Arrival) -> int:
        calls.append(arrival.original_name)
        if len(calls) == 1:
            raise RuntimeError("database down")
        os.rename(arrival.path, tmp_path / arrival.original_name)
        return 1

    w = FolderWatcher([inbox], flaky, settle_seconds=0.1, reconcile_seconds=0.5, tick=0.05)
    w.start()
    try:
        (inbox.path / "f.csv").write_text("x")
        assert wait_for(lambda: (tmp_path / "f.csv").exists())
        assert calls == ["f.csv", "f.csv"]
    finally:
        w.stop()
