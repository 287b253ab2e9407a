"""Watched inboxes end to end: only finished, stable, plain files are taken (issue 12, defects 5 and 6).

A real inotify watcher hands files to the real pipeline (database, parser
workers, spool, archive); the writers are real processes' file descriptors.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from daemon.ingest.arrival import Arrival
from daemon.ingest.outcomes import Outcome
from daemon.ingest.watch import FolderWatcher
from tests.helpers import wait_for
from tests.ingest.conftest import IngestEnv
from tests.ingest.test_pipeline import kept

SETTLE = 0.3


class Watched:
    """The env's wh1 inbox under a real watcher; every file taken is processed at once."""

    def __init__(self, env: IngestEnv, *, polling: bool = False) -> None:
        self.env = env
        self.inbox = env.source().inbox
        self.inbox.mkdir(parents=True, exist_ok=True)
        self.outcomes: list[Outcome] = []
        self._lock = threading.Lock()
        self.watcher = FolderWatcher(env.book.inboxes(), self._deliver, settle_seconds=SETTLE,
                                     polling=polling, tick=0.05)

    def _deliver(self, arrival: Arrival) -> int:
        upload_id = self.env.pipeline.deliver(arrival)
        done = self.env.pipeline.processor.process(upload_id)
        with self._lock:
            self.outcomes.append(done)
        return upload_id

    def names(self) -> list[str]:
        return [self.env.show(o.upload_id)[0].original_name for o in self.outcomes]


@pytest.fixture
def watched(env: IngestEnv) -> Iterator[Watched]:
    w = Watched(env)
    w.watcher.start()
    yield w
    w.watcher.stop()


def feed(n: int) -> bytes:
    return ("sku,quantity\n" + "".join(f"WP-{i:05d},{i + 1000}\n" for i in range(n))).encode()


def everything_said(env: IngestEnv, upload_id: int) -> str:
    """The history row, its errors and the result file, as text."""
    row, errors = env.show(upload_id)
    results = "".join(p.read_text(errors="replace") for p in env.source().results.glob(f"{upload_id:09d}__*"))
    return f"{row!r}{errors!r}{results}"


def test_a_writer_that_pauses_with_the_file_open_is_applied_whole_once(watched: Watched) -> None:
    """Defect 5: half the rows, a pause longer than settle_seconds, then the rest."""
    content = feed(2000)
    cut = content.index(b"WP-00999,1") + len(b"WP-00999,1")  # a line cut after its first digit
    with open(watched.inbox / "stock.csv", "wb") as writer:
        writer.write(content[:cut])
        writer.flush()
        os.fsync(writer.fileno())
        time.sleep(SETTLE * 5)  # settled by size and mtime, but still open
        assert watched.outcomes == []
        writer.write(content[cut:])
    assert wait_for(lambda: len(watched.outcomes) == 1)
    time.sleep(SETTLE * 3)
    [done] = watched.outcomes
    assert done.status == "applied" and done.counts["rows"] == 2000
    quantities = watched.env.quantities()
    assert quantities["WP-00999"] == 1999 and len(quantities) == 2000
    row, _ = watched.env.show(done.upload_id)
    archived = kept(watched.env, done.upload_id).read_bytes()
    assert archived == content
    assert hashlib.sha256(archived).hexdigest() == row.sha256 and row.size == len(content)


def test_bytes_a_writer_adds_after_the_claim_are_not_applied_and_the_file_is_taken_again(
        env: IngestEnv) -> None:
    """Where no close is seen (polling, or a writer that resumes after settling): the
    claim's copy is what is hashed and archived; the grown original goes back."""
    info = env.source()
    info.inbox.mkdir(parents=True, exist_ok=True)
    path = info.inbox / "stock.csv"
    content = feed(200)
    half = len(content) // 2
    with open(path, "wb") as writer:
        writer.write(content[:half])
        writer.flush()
        upload_id = env.pipeline.deliver(Arrival(
            path=path, source_id=info.id, original_name="stock.csv", protocol="watch",
            received_at=datetime.now(UTC), shared=True))
        writer.write(content[half:])  # the writer still holds the inode we claimed
        writer.flush()
    done = env.pipeline.processor.process(upload_id)
    assert done.status == "rejected" and "still writing" in (done.message or "")
    assert env.quantities() == {} and env.ledger_count() == 0
    row, _ = env.show(upload_id)
    archived = kept(env, upload_id).read_bytes()
    assert archived == content[:half] and hashlib.sha256(archived).hexdigest() == row.sha256
    # The whole file is back in the inbox, to be taken again once it settles.
    assert path.read_bytes() == content
    assert not [p for p in env.pipeline.dirs.spool.iterdir()]


def test_a_symlink_to_a_file_outside_the_inbox_is_refused_and_its_target_never_read(
        watched: Watched, tmp_path: Path) -> None:
    """Defect 6."""
    secret = tmp_path / "secret.csv"
    secret.write_text("sku,quantity\nSECRET-SKU,7654321987\n")
    (watched.inbox / "stock.csv").symlink_to(secret)
    assert wait_for(lambda: len(watched.outcomes) == 1)
    [done] = watched.outcomes
    assert done.status == "rejected"
    assert "stock.csv is a symbolic link" in (done.message or "") and "not opened" in (done.message or "")
    said = everything_said(watched.env, done.upload_id)
    assert "SECRET" not in said and "7654321987" not in said
    assert watched.env.quantities() == {}
    assert secret.read_text() == "sku,quantity\nSECRET-SKU,7654321987\n"  # the target is left as it was
    assert not os.path.lexists(watched.inbox / "stock.csv")
    assert not any(watched.env.pipeline.dirs.root.rglob("*stock.csv"))  # nothing kept


def test_a_fifo_is_refused_without_blocking_the_watcher(watched: Watched) -> None:
    os.mkfifo(watched.inbox / "pipe.csv")
    assert wait_for(lambda: len(watched.outcomes) == 1)
    (watched.inbox / "after.csv").write_bytes(b"sku,quantity\nA,1\n")
    assert wait_for(lambda: len(watched.outcomes) == 2)
    first, second = watched.outcomes
    assert watched.names() == ["pipe.csv", "after.csv"]
    assert first.status == "rejected" and "named pipe (FIFO)" in (first.message or "")
    assert second.status == "applied" and watched.env.quantities() == {"A": 1}


def test_a_hard_link_in_the_inbox_is_refused_and_the_other_name_left_alone(
        watched: Watched, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere.csv"
    elsewhere.write_text("sku,quantity\nLINKED,5\n")
    os.link(elsewhere, watched.inbox / "stock.csv")
    assert wait_for(lambda: len(watched.outcomes) == 1)
    [done] = watched.outcomes
    assert done.status == "rejected" and "hard link" in (done.message or "")
    assert "LINKED" not in everything_said(watched.env, done.upload_id)
    assert watched.env.quantities() == {}
    assert elsewhere.read_text() == "sku,quantity\nLINKED,5\n" and os.stat(elsewhere).st_nlink == 1


def test_a_claim_leaves_no_copy_behind_in_the_spool(watched: Watched) -> None:
    (watched.inbox / "stock.csv").write_bytes(feed(3))
    assert wait_for(lambda: len(watched.outcomes) == 1)
    assert watched.outcomes[0].status == "applied"
    assert list(watched.env.pipeline.dirs.spool.iterdir()) == []
    assert list(watched.inbox.iterdir()) == []


def test_a_spool_file_changed_between_the_parse_and_the_commit_is_not_applied(env: IngestEnv) -> None:
    """The sha256 checked just before the commit is the one the parse read."""
    info = env.source()
    info.inbox.mkdir(parents=True, exist_ok=True)
    path = info.inbox / "stock.csv"
    path.write_bytes(feed(10))
    upload_id = env.pipeline.deliver(Arrival(path=path, source_id=info.id, original_name="stock.csv",
                                             protocol="watch", received_at=datetime.now(UTC), shared=True))
    feeds = env.pipeline.processor.feeds
    read = feeds._read

    def read_then_tamper(spooled: Path, options):  # type: ignore[no-untyped-def]
        parsed = read(spooled, options)
        with open(spooled, "ab") as fh:  # what a second writer on the spool would do
            fh.write(b"WP-99999,1\n")
        return parsed

    feeds._read = read_then_tamper
    try:
        done = env.pipeline.processor.process(upload_id)
    finally:
        feeds._read = read
    assert done.status == "rejected" and "changed while it was read" in (done.message or "")
    assert env.quantities() == {} and env.ledger_count() == 0


def test_recovery_removes_claim_leftovers_of_its_own_node_only(make_env) -> None:  # type: ignore[no-untyped-def]
    env = make_env(node="a")
    other = make_env(node="b", engine=None)
    spool = env.pipeline.dirs.spool
    info = env.source()
    info.inbox.mkdir(parents=True, exist_ok=True)
    mine = other_node = 0
    for e in (env, other):
        path = info.inbox / f"{e.settings.node}.csv"
        path.write_bytes(feed(2))
        upload_id = e.pipeline.deliver(Arrival(path=path, source_id=info.id, original_name=path.name,
                                               protocol="watch", received_at=datetime.now(UTC), shared=True))
        e.pipeline.processor.process(upload_id)
        if e is env:
            mine = upload_id
        else:
            other_node = upload_id
    # What a kill leaves: a copy cut short, an original whose copy was filed.
    from daemon.db.uploads import spool_name

    leftovers = [spool / f".{spool_name(mine, 'a.csv')}.claimed", spool / f".{spool_name(999, 'x.csv')}.copying",
                 spool / f".{spool_name(other_node, 'b.csv')}.claimed"]
    for path in leftovers:
        path.write_bytes(b"x")
    env.pipeline.intake.recover()
    assert [p.exists() for p in leftovers] == [False, False, True]
