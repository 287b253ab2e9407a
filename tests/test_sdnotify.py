from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from daemon.runtime import sdnotify


@pytest.fixture
def listener(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[socket.socket]:
    """A real datagram socket standing in for systemd, named by $NOTIFY_SOCKET."""
    path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(5)
    monkeypatch.setenv("NOTIFY_SOCKET", str(path))
    yield sock
    sock.close()


def test_notify_without_notify_socket_is_a_no_op(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert sdnotify.notify("READY=1") is False
    assert sdnotify.ready() is False


def test_ready_and_stopping_arrive_on_the_socket(listener: socket.socket) -> None:
    assert sdnotify.ready() is True
    assert listener.recv(4096) == b"READY=1"
    assert sdnotify.stopping() is True
    assert listener.recv(4096) == b"STOPPING=1"


def test_status_and_watchdog_arrive_on_the_socket(listener: socket.socket) -> None:
    sdnotify.status("importing feed 3 of 7")
    assert listener.recv(4096) == b"STATUS=importing feed 3 of 7"
    sdnotify.watchdog()
    assert listener.recv(4096) == b"WATCHDOG=1"


def test_a_newline_in_a_status_cannot_inject_another_assignment(
    listener: socket.socket,
) -> None:
    sdnotify.status("bad\nREADY=1")
    assert listener.recv(4096) == b"STATUS=bad READY=1"


def test_an_abstract_namespace_socket_is_reached(monkeypatch: pytest.MonkeyPatch) -> None:
    name = f"stockdrop-test-{uuid.uuid4().hex}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(5)
        monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
        assert sdnotify.ready() is True
        assert sock.recv(4096) == b"READY=1"


def test_a_socket_nobody_listens_on_returns_false_instead_of_raising(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "gone.sock"))
    assert sdnotify.notify("READY=1") is False


def test_watchdog_interval_is_half_of_watchdog_usec_for_this_process(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("WATCHDOG_USEC", "20000000")
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    assert sdnotify.watchdog_interval() == 10.0


def test_watchdog_meant_for_another_process_is_not_enabled(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("WATCHDOG_USEC", "20000000")
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid() + 1))
    assert sdnotify.watchdog_interval() is None


def test_watchdog_is_not_enabled_without_watchdog_usec(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WATCHDOG_USEC", raising=False)
    assert sdnotify.watchdog_interval() is None
