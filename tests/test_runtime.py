from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator, MutableMapping
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from daemon.runtime.lifecycle import (
    RET_CRASHED,
    RET_FORCED,
    RET_OK,
    RET_START,
    Runtime,
    install_signal_handlers,
)

REPO = Path(__file__).resolve().parents[1]
# Generous: the suite must pass on a loaded two-core CI box.
WAIT = 30.0


class FakeService:
    """A real implementation of the Service protocol that records its calls."""

    def __init__(
        self,
        name: str,
        calls: list[str],
        *,
        fail_start: bool = False,
        fail_stop: bool = False,
        crash: bool = False,
    ) -> None:
        self.name = name
        self.calls = calls
        self.fail_start = fail_start
        self.fail_stop = fail_stop
        self.crash = crash
        self.timeouts: list[float] = []

    def start(self) -> None:
        self.calls.append(f"start {self.name}")
        if self.fail_start:
            raise OSError("address already in use")

    def stop(self, timeout: float) -> None:
        self.calls.append(f"stop {self.name}")
        self.timeouts.append(timeout)
        if self.fail_stop:
            raise RuntimeError("stop failed")

    def check(self) -> None:
        if self.crash:
            raise RuntimeError(f"{self.name} thread died")


class HangingStop(FakeService):
    """stop() blocks until the test releases it, like a wedged network call."""

    def __init__(self, name: str, calls: list[str]) -> None:
        super().__init__(name, calls)
        self.entered = threading.Event()
        self.release = threading.Event()

    def stop(self, timeout: float) -> None:
        self.calls.append(f"stop {self.name}")
        self.entered.set()
        self.release.wait(WAIT)


class Notes:
    """Collects sd_notify messages; can ask the runtime to stop once ready."""

    def __init__(self, stop_when_ready: bool = True) -> None:
        self.sent: list[str] = []
        self.runtime: Runtime | None = None
        self.stop_when_ready = stop_when_ready

    def __call__(self, state: str) -> bool:
        self.sent.append(state)
        if "READY=1" in state.splitlines() and self.stop_when_ready and self.runtime:
            self.runtime.request_stop("test")
        return True

    def lines(self) -> list[str]:
        return [line for state in self.sent for line in state.splitlines()]


def make_runtime(services: list[Any], notes: Notes, **kwargs: Any) -> Runtime:
    kwargs.setdefault("tick", 0.02)
    kwargs.setdefault("watchdog_interval", None)
    runtime = Runtime(services, notify=notes, **kwargs)
    notes.runtime = runtime
    return runtime


def finish_lifecycle_threads() -> None:
    """After a forced run in-process, let the abandoned stop finish before the test ends."""
    for thread in threading.enumerate():
        if thread.name == "stockdrop-lifecycle":
            thread.join(WAIT)


def events(logs: list[MutableMapping[str, Any]]) -> list[str]:
    return [entry["event"] for entry in logs]


@pytest.fixture
def no_watchdog_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WATCHDOG_USEC", raising=False)


def test_services_start_in_order_and_stop_in_reverse() -> None:
    calls: list[str] = []
    notes = Notes()
    runtime = make_runtime([FakeService(n, calls) for n in "abc"], notes)

    with capture_logs() as logs:
        code = runtime.run()

    assert code == RET_OK
    assert calls == ["start a", "start b", "start c", "stop c", "stop b", "stop a"]
    started = [e["service"] for e in logs if e["event"] == "service_started"]
    stopped = [e["service"] for e in logs if e["event"] == "service_stopped"]
    assert started == ["a", "b", "c"] and stopped == ["c", "b", "a"]
    assert all("elapsed" in e for e in logs if e["event"].startswith("service_"))
    assert events(logs)[-1] == "stopped"
    assert notes.lines().index("READY=1") < notes.lines().index("STOPPING=1")


def test_a_failed_start_stops_the_earlier_services_in_reverse_and_returns_ret_start() -> None:
    calls: list[str] = []
    services = [
        FakeService("a", calls),
        FakeService("b", calls),
        FakeService("c", calls, fail_start=True),
        FakeService("d", calls),
    ]
    notes = Notes()

    with capture_logs() as logs:
        code = make_runtime(services, notes).run()

    assert code == RET_START
    assert calls == ["start a", "start b", "start c", "stop b", "stop a"]
    (failed,) = [e for e in logs if e["event"] == "service_start_failed"]
    assert failed["service"] == "c" and "address already in use" in failed["error"]
    assert "READY=1" not in notes.lines()


def test_a_crashing_service_logs_crashed_not_stopped_and_returns_ret_crashed() -> None:
    calls: list[str] = []
    services = [
        FakeService("a", calls),
        FakeService("b", calls, crash=True),
        FakeService("c", calls),
    ]
    notes = Notes(stop_when_ready=False)

    with capture_logs() as logs:
        code = make_runtime(services, notes).run()

    assert code == RET_CRASHED
    (crashed,) = [e for e in logs if e["event"] == "crashed"]
    assert crashed["log_level"] == "error"
    assert crashed["service"] == "b" and "b thread died" in crashed["error"]
    assert "stopped" not in events(logs)
    # The crashed service is stopped too: its other threads may still hold files.
    assert calls[3:] == ["stop c", "stop b", "stop a"]


def test_ready_and_stopping_arrive_on_a_real_notify_socket(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_watchdog_env: None
) -> None:
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(tmp_path / "notify.sock"))
        sock.settimeout(WAIT)
        monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "notify.sock"))
        runtime = Runtime([FakeService("a", [])], tick=0.02)  # the real sdnotify.notify
        result: list[int] = []
        runner = threading.Thread(target=lambda: result.append(runtime.run()))
        runner.start()
        try:
            assert "READY=1" in read_until(sock, "READY=1")
            runtime.request_stop("test")
            assert "STOPPING=1" in read_until(sock, "STOPPING=1")
        finally:
            runtime.request_stop("cleanup")
            runner.join(WAIT)
    assert result == [RET_OK]


def test_a_stop_that_overruns_the_deadline_is_forced() -> None:
    calls: list[str] = []
    hang = HangingStop("ftp", calls)
    exits: list[int] = []
    runtime = make_runtime(
        [FakeService("db", calls), hang], Notes(), stop_deadline=0.2, force_exit=exits.append
    )
    with capture_logs() as logs:
        try:
            code = runtime.run()
        finally:
            hang.release.set()
            finish_lifecycle_threads()

    assert code == RET_FORCED and exits == [RET_FORCED]
    (forced,) = [e for e in logs if e["event"] == "forced_stop"]
    assert forced["reason"] == "stop_deadline" and forced["pending"] == ["ftp", "db"]
    assert "stopped" not in events(logs)


def test_a_second_request_forces_the_exit_while_a_service_hangs_in_stop() -> None:
    hang = HangingStop("sftp", [])
    exits: list[int] = []
    runtime = make_runtime([hang], Notes(), stop_deadline=300, force_exit=exits.append)

    def second_signal() -> None:
        if hang.entered.wait(WAIT):
            runtime.request_force("SIGTERM")

    forcer = threading.Thread(target=second_signal)
    forcer.start()
    with capture_logs() as logs:
        try:
            code = runtime.run()
        finally:
            hang.release.set()
            forcer.join(WAIT)
            finish_lifecycle_threads()

    assert code == RET_FORCED and exits == [RET_FORCED]
    assert [e["pending"] for e in logs if e["event"] == "forced_stop"] == [["sftp"]]


def test_each_stop_timeout_is_cut_to_what_is_left_of_the_deadline() -> None:
    service = FakeService("a", [])
    make_runtime([service], Notes(), stop_timeout=10, stop_deadline=3).run()
    assert 0 <= service.timeouts[0] <= 3


def test_a_service_whose_stop_raises_does_not_keep_the_earlier_ones_running() -> None:
    calls: list[str] = []
    services = [FakeService("a", calls), FakeService("b", calls, fail_stop=True)]
    with capture_logs() as logs:
        code = make_runtime(services, Notes()).run()
    assert code == RET_OK
    assert calls[-2:] == ["stop b", "stop a"]
    assert [e["service"] for e in logs if e["event"] == "service_stop_failed"] == ["b"]


def test_a_stop_request_during_startup_starts_no_more_services() -> None:
    calls: list[str] = []
    notes = Notes()
    runtime = make_runtime([], notes)

    class StopsWhileStarting(FakeService):
        def start(self) -> None:
            super().start()
            runtime.request_stop("SIGTERM")

    runtime.add(StopsWhileStarting("a", calls))
    runtime.add(FakeService("b", calls))
    assert runtime.run() == RET_OK
    assert calls == ["start a", "stop a"]
    assert "READY=1" not in notes.lines()


def test_setting_the_stop_event_stops_the_runtime() -> None:
    stop = threading.Event()
    notes = Notes(stop_when_ready=False)
    runtime = make_runtime([FakeService("a", [])], notes)
    timer = threading.Timer(0.1, stop.set)
    timer.start()
    try:
        assert runtime.run(stop_event=stop) == RET_OK
    finally:
        timer.cancel()


def test_a_reload_request_is_logged_and_the_daemon_keeps_running() -> None:
    notes = Notes(stop_when_ready=False)
    runtime = make_runtime([], notes)

    class StopsAfterChecks(FakeService):
        checks = 0

        def check(self) -> None:
            self.checks += 1
            if self.checks == 1:
                runtime.request_reload()
            if self.checks == 5:
                runtime.request_stop("test")

    service = StopsAfterChecks("a", [])
    runtime.add(service)
    with capture_logs() as logs:
        assert runtime.run() == RET_OK
    assert "reload_requested" in events(logs)
    assert service.checks == 5


def test_the_watchdog_is_pinged_while_running() -> None:
    notes = Notes(stop_when_ready=False)
    runtime = make_runtime([], notes, watchdog_interval=0.01)

    class StopsOnWatchdog(FakeService):
        def check(self) -> None:
            if "WATCHDOG=1" in notes.lines():
                runtime.request_stop("test")

    runtime.add(StopsOnWatchdog("a", []))
    assert runtime.run() == RET_OK
    assert "WATCHDOG=1" in notes.lines()


def test_the_first_signal_asks_a_graceful_stop_and_the_second_forces() -> None:
    runtime = Runtime([])
    with install_signal_handlers(runtime):
        handler = signal.getsignal(signal.SIGTERM)
        assert callable(handler)
        handler(signal.SIGTERM, None)
        assert runtime.stop_requested and not runtime.force_requested
        handler(signal.SIGINT, None)
        assert runtime.force_requested


def test_previous_signal_handlers_are_restored_after_the_block() -> None:
    before = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}
    with install_signal_handlers(Runtime([])):
        assert signal.getsignal(signal.SIGTERM) is not before[signal.SIGTERM]
    assert {s: signal.getsignal(s) for s in before} == before


# -- a real process, real signals, a real notify socket ---------------------------

DAEMON_SCRIPT = """
import sys
import threading

from daemon.logs import configure_logging
from daemon.runtime.lifecycle import Runtime, install_signal_handlers

HANG = {hang}


class Sleeper:
    name = "sleeper"

    def start(self):
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._stop.wait, daemon=True)
        self._thread.start()

    def stop(self, timeout):
        if HANG:
            threading.Event().wait()
        self._stop.set()
        self._thread.join(timeout)

    def check(self):
        if not self._thread.is_alive():
            raise RuntimeError("sleeper thread died")


configure_logging("json")
# A deadline far beyond the test's patience: a forced exit must come from the signal.
runtime = Runtime([Sleeper()], stop_deadline=600)
with install_signal_handlers(runtime):
    code = runtime.run()
sys.exit(code)
"""


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    path = str(tmp_path / "notify.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(path)
        sock.settimeout(WAIT)
        yield sock, path


def read_until(sock: socket.socket, key: str) -> list[str]:
    """Receive notify datagrams until one carries ``key``; return its lines."""
    while True:
        lines = sock.recv(4096).decode().splitlines()
        if key in lines:
            return lines


def spawn_daemon(tmp_path: Path, notify_path: str, *, hang: bool) -> subprocess.Popen[str]:
    script = tmp_path / "daemon_under_test.py"
    script.write_text(textwrap.dedent(DAEMON_SCRIPT.format(hang=hang)))
    env = {**os.environ, "NOTIFY_SOCKET": notify_path, "PYTHONPATH": str(REPO)}
    env.pop("WATCHDOG_USEC", None)
    return subprocess.Popen(
        [sys.executable, str(script)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def json_events(stdout: str) -> list[str]:
    return [json.loads(line)["event"] for line in stdout.splitlines() if line.startswith("{")]


def test_a_real_daemon_stops_cleanly_on_sigterm(
    tmp_path: Path, notify_socket: tuple[socket.socket, str]
) -> None:
    sock, path = notify_socket
    proc = spawn_daemon(tmp_path, path, hang=False)
    try:
        read_until(sock, "READY=1")
        proc.send_signal(signal.SIGTERM)
        stdout, stderr = proc.communicate(timeout=WAIT)
    finally:
        proc.kill()
        proc.communicate()
    assert proc.returncode == RET_OK, stderr
    assert "Traceback" not in stderr
    assert "stopped" in json_events(stdout)
    assert read_until(sock, "STOPPING=1")


def test_a_second_sigterm_forces_a_real_daemon_hung_in_stop(
    tmp_path: Path, notify_socket: tuple[socket.socket, str]
) -> None:
    sock, path = notify_socket
    proc = spawn_daemon(tmp_path, path, hang=True)
    try:
        read_until(sock, "READY=1")
        proc.send_signal(signal.SIGTERM)
        # Wait until the first signal was acted on: two signals sent back to back
        # can reach the Python handler as one.
        read_until(sock, "STOPPING=1")
        proc.send_signal(signal.SIGTERM)
        stdout, stderr = proc.communicate(timeout=WAIT)
    finally:
        proc.kill()
        proc.communicate()
    assert proc.returncode == RET_FORCED, stderr
    events = json_events(stdout)
    assert "forced_stop" in events and "stopped" not in events
