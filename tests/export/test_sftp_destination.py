"""SftpDestination against a real paramiko SFTP server on 127.0.0.1 port 0 (the
market's side: tests/remote_sftp.py), some of it misbehaving on purpose."""

from __future__ import annotations

import gc
import os
import random
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from daemon.auth.hostkey import fingerprint, load_or_create_host_key
from daemon.transports import TransportError
from daemon.transports.destination import PART_SUFFIX, Destination, LoginRefused
from daemon.transports.sftp import HostKeyRejected, SftpDestination, SftpEndpoint
from tests.remote_sftp import OLD, OpenServer

USER, PASSWORD = "market", "pa55-w0rd-never-shown"
NAME, MARKER = "stock.csv", "stock.csv.done"
# Every byte value, then more than one SFTP write's worth (paramiko writes 32 KiB at a time).
DATA = bytes(range(256)) * 4 + random.Random(20240611).randbytes(200_000) + b"\r\n"
PART, FINAL = f"/out/{NAME}{PART_SUFFIX}", f"/out/{NAME}"
MARKER_PART, MARKER_FINAL = f"/out/{MARKER}{PART_SUFFIX}", f"/out/{MARKER}"


def listing(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


@pytest.fixture(autouse=True)
def no_leaks() -> Iterator[None]:
    """Every thread a test starts (server and client) is gone after it, and no descriptor stays open."""
    before = set(threading.enumerate())
    fds_before = len(os.listdir("/proc/self/fd"))
    yield
    deadline = time.monotonic() + 10
    while (extra := [t for t in threading.enumerate() if t not in before and t.is_alive()]) \
            and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not extra, f"threads left running: {extra}"
    while True:
        gc.collect()
        fds = len(os.listdir("/proc/self/fd"))
        if fds <= fds_before or time.monotonic() > deadline:
            break
        time.sleep(0.02)
    assert fds <= fds_before, f"{fds - fds_before} file descriptor(s) left open"


@pytest.fixture
def market(open_server: OpenServer) -> OpenServer:
    """The market's server, with its folder "out" (empty) and its login."""
    (open_server.root / "out").mkdir()
    open_server.user, open_server.password = USER, PASSWORD
    return open_server


def destination(server: OpenServer, *, folder: str = "out", **endpoint: Any) -> SftpDestination:
    values: dict[str, Any] = {"host": "127.0.0.1", "port": server.port, "user": USER, "password": PASSWORD,
                              "host_key_fingerprint": fingerprint(server.key), "timeout_seconds": 10.0}
    values.update(endpoint)
    return SftpDestination(SftpEndpoint(**values), folder)


# --- delivering


def test_delivers_the_bytes_exactly_then_the_empty_marker_and_a_retry_delivers_again(market: OpenServer) -> None:
    out = market.root / "out"
    target: Destination = destination(market)
    target.deliver(NAME, DATA, done_marker=MARKER)

    assert (out / NAME).read_bytes() == DATA
    assert (out / MARKER).read_bytes() == b""
    assert listing(out) == [NAME, MARKER]  # no .part left
    # each through its .part and a posix-rename, the marker only after the file is in place
    once = [("open-write", PART), ("posix_rename", PART, FINAL),
            ("open-write", MARKER_PART), ("posix_rename", MARKER_PART, MARKER_FINAL)]
    assert market.calls == once

    target.deliver(NAME, DATA, done_marker=MARKER)  # the retry after a crash before the record
    assert (out / NAME).read_bytes() == DATA
    assert (out / MARKER).read_bytes() == b""
    assert listing(out) == [NAME, MARKER]
    assert market.calls == once * 2

    assert target.describe() == f"sftp://{USER}@127.0.0.1:{market.port}/out"
    assert PASSWORD not in repr(target)


def test_a_redelivery_replaces_the_file_by_posix_rename_and_it_is_never_missing(market: OpenServer) -> None:
    final = market.root / "out" / NAME
    target = destination(market)
    target.deliver(NAME, b"yesterday's feed\n")
    old_inode = final.stat().st_ino
    market.calls.clear()
    # what the final name held just before each request the server was asked for
    seen: list[tuple[str, bytes | None]] = []
    market.watch = lambda call: seen.append((call[0], final.read_bytes() if final.exists() else None))

    with open(final, "rb") as old:
        target.deliver(NAME, DATA)
        assert old.read() == b"yesterday's feed\n"  # replaced, not rewritten in place
        assert os.fstat(old.fileno()).st_nlink == 0  # and unlinked only by the rename over it
    # there and whole up to the rename itself (an atomic os.replace on the server), never
    # removed, never opened for writing
    assert market.calls == [("open-write", PART), ("posix_rename", PART, FINAL)]
    assert seen == [("open-write", b"yesterday's feed\n"), ("posix_rename", b"yesterday's feed\n")]
    assert final.read_bytes() == DATA
    assert final.stat().st_ino != old_inode
    assert listing(final.parent) == [NAME]


def test_without_posix_rename_a_plain_rename_delivers_and_a_retry_of_the_same_bytes_counts_as_delivered(
        market: OpenServer) -> None:
    market.posix_rename = False
    out = market.root / "out"
    target = destination(market)
    target.deliver(NAME, DATA)  # nothing to rename over: the plain rename works
    assert (out / NAME).read_bytes() == DATA
    assert listing(out) == [NAME]
    assert market.calls == [("open-write", PART), ("posix_rename", PART, FINAL), ("rename", PART, FINAL)]
    inode = (out / NAME).stat().st_ino

    # the retry after a crash between the rename and its record: the same bytes are there, no marker yet
    market.calls.clear()
    target.deliver(NAME, DATA, done_marker=MARKER)
    assert (out / NAME).read_bytes() == DATA
    assert (out / NAME).stat().st_ino == inode  # left as it was
    assert listing(out) == [NAME, MARKER]  # the .part was cleaned up
    assert market.calls == [
        ("open-write", PART), ("posix_rename", PART, FINAL), ("rename", PART, FINAL), ("remove", PART),
        ("open-write", MARKER_PART), ("posix_rename", MARKER_PART, MARKER_FINAL),
        ("rename", MARKER_PART, MARKER_FINAL),
    ]

    target.deliver(NAME, DATA, done_marker=MARKER)  # the marker there too: still delivered
    assert (out / NAME).read_bytes() == DATA
    assert listing(out) == [NAME, MARKER]


def test_without_posix_rename_other_bytes_over_an_existing_file_are_a_transport_error_and_it_stays(
        market: OpenServer) -> None:
    market.posix_rename = False
    final = market.put(f"out/{NAME}", b"yesterday's feed\n")
    before = final.stat()
    with pytest.raises(TransportError, match=rf"refused to rename {NAME}{PART_SUFFIX} to {NAME} .*;"
                                             rf" {NAME} there holds 17 bytes, not {len(DATA)}") as caught:
        destination(market).deliver(NAME, DATA, done_marker=MARKER)
    assert not isinstance(caught.value, LoginRefused)  # retried later, not a config problem
    assert final.read_bytes() == b"yesterday's feed\n"
    assert (final.stat().st_ino, final.stat().st_mtime) == (before.st_ino, OLD)  # never removed or rewritten
    assert MARKER not in listing(final.parent)
    assert [c for c in market.calls if FINAL in c[1:2]] == []  # no request on the final name but as a target
    assert ("remove", FINAL) not in market.calls


# --- refusals


def test_a_wrong_password_is_login_refused_and_writes_nothing(market: OpenServer) -> None:
    market.password = "the-market-changed-it"  # the server takes another password than ours
    with pytest.raises(LoginRefused, match=f"authentication failed for {USER}") as caught:
        destination(market).deliver(NAME, DATA, done_marker=MARKER)
    assert PASSWORD not in str(caught.value)
    assert market.logins == [USER]
    assert market.calls == []
    assert listing(market.root / "out") == []


def test_a_host_key_other_than_the_pinned_one_is_refused_before_any_password_is_sent(
        market: OpenServer, tmp_path: Path) -> None:
    pinned = fingerprint(load_or_create_host_key(tmp_path / "the-markets-real-key"))
    with pytest.raises(HostKeyRejected, match="is not the pinned one") as caught:
        destination(market, host_key_fingerprint=pinned).deliver(NAME, DATA, done_marker=MARKER)
    assert isinstance(caught.value, LoginRefused)
    assert caught.value.expected == [pinned]
    assert caught.value.offered == fingerprint(market.key)
    assert market.logins == []  # an impostor never sees the password
    assert market.calls == []
    assert listing(market.root / "out") == []


def test_a_missing_remote_folder_is_a_transport_error_naming_it_and_is_not_created(market: OpenServer) -> None:
    with pytest.raises(TransportError, match="the folder 'feeds/missing' cannot be used: No such file"):
        destination(market, folder="feeds/missing").deliver(NAME, DATA)
    assert listing(market.root) == ["drop", "out"]
    assert market.calls == []


def test_a_remote_folder_that_is_a_file_is_a_transport_error(market: OpenServer) -> None:
    market.put("out/feeds", b"")
    with pytest.raises(TransportError, match="the folder 'out/feeds' cannot be used: Not a directory"):
        destination(market, folder="out/feeds").deliver(NAME, DATA)
    assert market.calls == []


def test_nothing_listening_is_a_transport_error_naming_host_and_port() -> None:
    with socket.socket() as bound:  # bound, never listening: refused, and the port stays ours
        bound.bind(("127.0.0.1", 0))
        port = bound.getsockname()[1]
        target = SftpDestination(SftpEndpoint(host="127.0.0.1", port=port, user=USER, password=PASSWORD,
                                              host_key_fingerprint="SHA256:" + "A" * 43, timeout_seconds=5),
                                 "out")
        with pytest.raises(TransportError, match=f"cannot connect to 127.0.0.1:{port}: .*refused") as caught:
            target.deliver(NAME, DATA)
    assert not isinstance(caught.value, LoginRefused)


def test_a_name_that_is_a_path_is_refused_before_connecting(market: OpenServer) -> None:
    target = destination(market)
    for name in ("../escape.csv", "a/b.csv", "", "..", "x\r\ny"):
        with pytest.raises(ValueError, match="plain file name"):
            target.deliver(name, DATA)
        with pytest.raises(ValueError, match="plain file name"):
            target.deliver(NAME, DATA, done_marker=name)
    assert market.transports == []
    assert listing(market.root) == ["drop", "out"]


# --- a server that loses bytes


def test_a_server_that_stores_fewer_bytes_is_caught_and_nothing_gets_the_final_name(market: OpenServer) -> None:
    market.short_by = 1
    out = market.root / "out"
    with pytest.raises(TransportError, match=rf"uploading {NAME}{PART_SUFFIX} failed: size mismatch in put!"
                                             rf"\s+{len(DATA) - 1} != {len(DATA)}"):
        destination(market).deliver(NAME, DATA, done_marker=MARKER)
    assert listing(out) == []  # no final file, no marker, and the short .part was removed
    assert market.calls == [("open-write", PART), ("remove", PART)]  # never renamed

    market.short_by = 0  # the server is mended: the next try delivers
    destination(market).deliver(NAME, DATA, done_marker=MARKER)
    assert (out / NAME).read_bytes() == DATA
    assert listing(out) == [NAME, MARKER]
