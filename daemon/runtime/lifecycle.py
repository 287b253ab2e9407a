"""Run the daemon's services: start in order, supervise, stop in reverse.

Exit codes (what systemd and scripts see). They are aliases of
``daemon.exitcodes``, which the CLI shares, so a number has one meaning:

- ``RET_OK`` (0): stopped on request, every service shut down.
- ``RET_CONFIG`` (6): the configuration is invalid; the CLI returns it before
  anything starts. Not 2: click already exits 2 on a malformed command line.
- ``RET_START`` (3): a service failed to start; the ones already started were
  stopped again.
- ``RET_CRASHED`` (4): a running service died; the others were stopped.
- ``RET_FORCED`` (5): a second stop signal, or a graceful stop that overran its
  deadline; the process exited without waiting for the rest.

Service calls (``start``/``stop``) run on a helper thread while the main thread
only waits. That keeps the main thread free to act on a second signal even when
a service hangs in ``stop()``, which is the case the second signal exists for.
"""

from __future__ import annotations

import os
import queue
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Protocol

from daemon import exitcodes
from daemon.logs import get_logger
from daemon.runtime import sdnotify

RET_OK = exitcodes.OK
RET_CONFIG = exitcodes.CONFIG
RET_START = exitcodes.START_FAILED
RET_CRASHED = exitcodes.CRASHED
RET_FORCED = exitcodes.FORCED

log = get_logger(__name__)


class Service(Protocol):
    """A long-running part of the daemon (a receiver, the scheduler, ...).

    ``start()`` returns once the service is up (it may start threads); if it
    raises, it must leave nothing running. ``stop(timeout)`` shuts it down
    gracefully within about ``timeout`` seconds. A service may also define
    ``check()``, raising when it has died (say its thread exited); the runtime
    calls it about once a second.
    """

    name: str

    def start(self) -> None: ...

    def stop(self, timeout: float) -> None: ...


def _hard_exit(code: int) -> None:
    # os._exit skips buffer flushing: flush so the forced_stop line reaches journald.
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code)


class Runtime:
    """Owns the services' lifecycle; ``run()`` blocks until the daemon should exit.

    ``stop_timeout`` bounds each service's ``stop()``; ``stop_deadline`` bounds a
    whole shutdown, after which it escalates to forced. ``tick`` is how often
    services are checked. ``notify``, ``clock`` and ``force_exit`` are there for
    tests.
    """

    def __init__(
        self,
        services: Iterable[Service] = (),
        *,
        notify: Callable[[str], bool] = sdnotify.notify,
        clock: Callable[[], float] = time.monotonic,
        force_exit: Callable[[int], None] = _hard_exit,
        tick: float = 1.0,
        stop_timeout: float = 10.0,
        stop_deadline: float = 30.0,
        watchdog_interval: float | None = None,
    ) -> None:
        self._services: list[Service] = list(services)
        self._started: list[Service] = []  # in start order; stop pops from the end
        self._notify = notify
        self._clock = clock
        self._force_exit = force_exit
        self._tick = tick
        self._stop_timeout = stop_timeout
        self._stop_deadline = stop_deadline
        self._watchdog_interval = watchdog_interval
        self._next_watchdog = 0.0
        self._running = False
        # Requests arrive from signal handlers, so they are plain attributes plus
        # a SimpleQueue put to wake the main loop: SimpleQueue.put is reentrant,
        # whereas Event.set can deadlock if the signal lands while the main
        # thread holds the Event's own lock inside wait().
        self._stop_reason: str | None = None
        self._force_reason: str | None = None
        self._reload_requested = False
        self._wakeups: queue.SimpleQueue[str] = queue.SimpleQueue()
        self._stop_event: threading.Event | None = None
        self._start_failed = False

    def add(self, service: Service) -> None:
        """Register ``service``; services start in the order they were added."""
        if self._running:
            raise RuntimeError("cannot add a service to a running Runtime")
        self._services.append(service)

    # -- requests (safe from signal handlers and other threads) ---------------

    @property
    def stop_requested(self) -> bool:
        return self._stop_reason is not None

    @property
    def force_requested(self) -> bool:
        return self._force_reason is not None

    def request_stop(self, reason: str = "requested") -> None:
        """Ask for a graceful stop; the first reason given is the one logged."""
        if self._stop_reason is None:
            self._stop_reason = reason
        self._wakeups.put("stop")

    def request_force(self, reason: str = "requested") -> None:
        """Ask to exit now without waiting for services still stopping."""
        if self._force_reason is None:
            self._force_reason = reason
        self.request_stop(reason)

    def request_reload(self) -> None:
        """SIGHUP: reserved for a config reload; only logged for now."""
        self._reload_requested = True
        self._wakeups.put("reload")

    # -- the lifecycle ----------------------------------------------------------

    def run(self, stop_event: threading.Event | None = None) -> int:
        """Start, supervise and stop the services; return an exit code.

        ``stop_event``, when given, asks for a graceful stop like ``request_stop``
        (noticed within one tick).
        """
        if self._running:
            raise RuntimeError("Runtime.run() called twice")
        self._running = True
        self._stop_event = stop_event
        if self._watchdog_interval is None:
            self._watchdog_interval = sdnotify.watchdog_interval()

        self._notify("STATUS=starting")
        if not self._in_helper(self._start_all, deadline=None):
            return self._forced()
        if self._start_failed:
            return RET_START if self._shutdown() else self._forced()

        crash = None
        if not self.stop_requested:
            names = [s.name for s in self._started]
            self._notify(f"READY=1\nSTATUS=running {len(names)} services")
            log.info("ready", services=names)
            crash = self._supervise()
            if self._force_reason is not None:
                return self._forced()

        if crash is not None:
            service, exc = crash
            log.error("crashed", service=service.name, error=repr(exc), exc_info=exc)
            self._notify(f"STOPPING=1\nSTATUS=crashed: {service.name}")
            return RET_CRASHED if self._shutdown() else self._forced()

        self._notify("STOPPING=1\nSTATUS=stopping")
        log.info("stopping", reason=self._stop_reason)
        if not self._shutdown():
            return self._forced()
        log.info("stopped")
        return RET_OK

    def _supervise(self) -> tuple[Service, Exception] | None:
        """Wait for a stop request; return the first crashed service instead."""
        while not self.stop_requested:
            self._wait(self._tick)
            if self._stop_event is not None and self._stop_event.is_set():
                self.request_stop("stop_event")
            if self.stop_requested:
                break
            for service in self._started:
                check = getattr(service, "check", None)
                if check is None:
                    continue
                try:
                    check()
                # Whatever check() raises, the service is down; run() logs it.
                except Exception as exc:  # noqa: BLE001
                    return service, exc
        return None

    def _start_all(self) -> None:
        for service in self._services:
            if self.stop_requested:  # a signal during startup: start no more
                return
            began = self._clock()
            try:
                service.start()
            except Exception as exc:
                self._start_failed = True
                log.error(
                    "service_start_failed", service=service.name, error=repr(exc), exc_info=exc
                )
                return
            self._started.append(service)
            log.info("service_started", service=service.name, elapsed=self._since(began))

    def _shutdown(self) -> bool:
        """Stop the started services in reverse; False if it had to be forced."""
        deadline = self._clock() + self._stop_deadline
        return self._in_helper(lambda: self._stop_all(deadline), deadline)

    def _stop_all(self, deadline: float) -> None:
        while self._started:
            service = self._started[-1]
            # Each service gets its own timeout, but never past the total deadline.
            timeout = min(self._stop_timeout, max(0.0, deadline - self._clock()))
            began = self._clock()
            try:
                service.stop(timeout)
            except Exception as exc:
                # Keep going: the services before it still hold sockets and files.
                log.error(
                    "service_stop_failed", service=service.name, error=repr(exc), exc_info=exc
                )
            else:
                log.info("service_stopped", service=service.name, elapsed=self._since(began))
            # Popped only once stopped, so a forced exit can name what was pending.
            self._started.pop()

    # -- waiting ------------------------------------------------------------------

    def _in_helper(self, work: Callable[[], None], deadline: float | None) -> bool:
        """Run ``work`` on a helper thread; False if forced or past ``deadline``."""
        done = threading.Event()

        def target() -> None:
            try:
                work()
            finally:
                done.set()
                self._wakeups.put("done")

        helper = threading.Thread(target=target, name="stockdrop-lifecycle", daemon=True)
        helper.start()
        while not done.is_set():
            if self._force_reason is not None:
                return False
            if deadline is not None and self._clock() >= deadline:
                self._force_reason = "stop_deadline"
                return False
            wait = self._tick if deadline is None else min(self._tick, deadline - self._clock())
            self._wait(max(0.0, wait))
        helper.join()
        return True

    def _wait(self, timeout: float) -> None:
        """Sleep until a request, the end of a helper's work, or ``timeout``."""
        if self._watchdog_interval is not None:
            timeout = min(timeout, max(0.0, self._next_watchdog - self._clock()))
        try:
            self._wakeups.get(timeout=timeout)
        except queue.Empty:
            pass
        if self._watchdog_interval is not None and self._clock() >= self._next_watchdog:
            # Pinged from the main thread: a wedged main loop is what it should catch.
            self._notify("WATCHDOG=1")
            self._next_watchdog = self._clock() + self._watchdog_interval
        if self._reload_requested:
            self._reload_requested = False
            log.info("reload_requested", detail="reload is not implemented; ignored")

    def _forced(self) -> int:
        log.error(
            "forced_stop",
            reason=self._force_reason,
            pending=[s.name for s in reversed(self._started)],
        )
        self._force_exit(RET_FORCED)
        return RET_FORCED  # only reached when force_exit is a test double

    def _since(self, began: float) -> float:
        return round(self._clock() - began, 3)


@contextmanager
def install_signal_handlers(runtime: Runtime) -> Iterator[None]:
    """Within the block, SIGTERM/SIGINT stop ``runtime`` and SIGHUP asks a reload.

    The first SIGTERM or SIGINT asks for a graceful stop, the second forces the
    exit. The handlers only record the request: logging or joining threads from
    a handler could deadlock on a lock the interrupted code holds. The previous
    handlers are restored on the way out. Call from the main thread.
    """

    def on_stop(signum: int, frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        if runtime.stop_requested:
            runtime.request_force(name)
        else:
            runtime.request_stop(name)

    def on_hup(signum: int, frame: FrameType | None) -> None:
        runtime.request_reload()

    installed = {signal.SIGTERM: on_stop, signal.SIGINT: on_stop, signal.SIGHUP: on_hup}
    previous = {sig: signal.signal(sig, handler) for sig, handler in installed.items()}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            # None means a handler installed outside Python; the default is the
            # closest thing we can put back.
            signal.signal(sig, handler if handler is not None else signal.SIG_DFL)
