"""The systemd notify protocol (``Type=notify``), without the systemd package.

systemd passes the address of a datagram socket in ``$NOTIFY_SOCKET``; a service
reports ``READY=1`` once it is serving, ``STOPPING=1`` when it begins to shut
down, ``STATUS=...`` for ``systemctl status``, and ``WATCHDOG=1`` as a heartbeat
when the unit sets ``WatchdogSec=``. Outside systemd every call is a no-op that
returns False, so the daemon runs the same under a terminal or a test.
"""

from __future__ import annotations

import os
import socket


def _address() -> str | None:
    addr = os.environ.get("NOTIFY_SOCKET", "")
    if addr.startswith("@"):
        # Abstract namespace: the leading "@" stands for a NUL byte.
        return "\0" + addr[1:]
    if addr.startswith("/"):
        return addr
    # Unset, or a vsock address (systemd in a VM) that AF_UNIX cannot reach.
    return None


def notify(state: str) -> bool:
    """Send ``state`` (newline-separated ``KEY=VALUE`` lines); True if sent.

    Never raises: a lost notification must not take the daemon down. systemd
    notices a missing READY=1 on its own (``TimeoutStartSec=``).
    """
    addr = _address()
    if addr is None:
        return False
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(addr)
            sock.sendall(state.encode("utf-8"))
    except OSError:
        return False
    return True


def ready() -> bool:
    """Tell systemd the service is up; ``systemctl start`` returns after this."""
    return notify("READY=1")


def stopping() -> bool:
    """Tell systemd a graceful shutdown has begun."""
    return notify("STOPPING=1")


def status(text: str) -> bool:
    """Set the one-line status shown by ``systemctl status``."""
    # A newline would start a new KEY=VALUE assignment in the datagram.
    return notify("STATUS=" + " ".join(text.splitlines()))


def watchdog() -> bool:
    """Heartbeat for ``WatchdogSec=``: systemd restarts the unit when these stop."""
    return notify("WATCHDOG=1")


def watchdog_interval() -> float | None:
    """Seconds between heartbeats, or None when the watchdog is not enabled.

    Half of ``WatchdogSec=``, as sd_watchdog_enabled(3) advises, so one late
    heartbeat does not kill the service. ``WATCHDOG_PID`` names the process the
    watchdog is for; a child that inherited the environment must not ping.
    """
    pid = os.environ.get("WATCHDOG_PID")
    if pid and pid != str(os.getpid()):
        return None
    try:
        usec = int(os.environ.get("WATCHDOG_USEC", ""))
    except ValueError:
        return None
    return usec / 2_000_000 if usec > 0 else None
