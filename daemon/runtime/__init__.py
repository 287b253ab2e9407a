"""Running the daemon: ordered start and stop, signals, sd_notify, assembling the services.

``lifecycle`` owns the services' start, supervision and stop; ``assemble``
builds the service list from the settings; ``sdnotify`` speaks systemd's
notify protocol.
"""

from __future__ import annotations

from daemon.runtime.lifecycle import (
    RET_CONFIG,
    RET_CRASHED,
    RET_FORCED,
    RET_OK,
    RET_START,
    Runtime,
    Service,
    install_signal_handlers,
)

__all__ = [
    "RET_CONFIG", "RET_CRASHED", "RET_FORCED", "RET_OK", "RET_START",
    "Runtime", "Service", "install_signal_handlers",
]
