"""Named exit codes of the ``stockdrop`` command. Scripts may rely on them."""

from __future__ import annotations

OK = 0
FAILURE = 1  # a user error: unknown merchant/source/SKU, bad value, refused request
USAGE = 2  # click's own code for a malformed command line
START_FAILED = 3  # a service failed to start; the ones started were stopped again
CRASHED = 4  # a service crashed while running; everything was stopped
FORCED = 5  # a second signal forced the stop
CONFIG = 6  # the configuration is invalid; nothing was started
REJECTED = 7  # `upload`: the file was rejected or held
DB_NOT_READY = 8  # the database needs `stockdrop db upgrade`, or is unreachable
NOT_DELIVERED = 9  # `export`, `orders export`, `report send`: a delivery did not succeed this time (it stays owed and is retried)
