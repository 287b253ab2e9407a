"""Where an export is delivered: one interface over a local folder, FTP/FTPS and SFTP.

Every destination delivers the same way (design.md, "Exports mirror this"):
the bytes go to a temporary name in the target folder, their size is
checked where the protocol can tell it, and the temporary file is renamed
over the final name. The final name is never deleted first (a reader must
never find it missing or half written; NiFi's NIFI-13159 is that bug). A
done-marker, when asked for, is written the same way after the file.

A delivery may be tried again after a crash between the rename and the
caller's record of it: the final name then already holds the same bytes.
A destination that cannot rename over an existing file (some FTP servers)
treats a final file of the same size as delivered.

Every failure is a ``TransportError`` (a ``TransientError``): the caller
retries later. ``LoginRefused`` marks the failures that will not pass by
themselves (a wrong password, a refused host key).
"""

from __future__ import annotations

from typing import Protocol

from daemon.transports import TransportError

PART_SUFFIX = ".part"  # the temporary name: "<name>.part", which importers skip


class LoginRefused(TransportError):
    """The other side refused who we are (password, key, host key): retrying will not help
    until someone changes the config; the market is marked failing at once."""


class Destination(Protocol):
    def describe(self) -> str:
        """Where this delivers, for messages and logs: "ftp://user@host:21/folder" (no secret)."""
        ...

    def deliver(self, name: str, data: bytes, *, done_marker: str | None = None) -> None:
        """Put ``data`` at ``name`` in the destination folder (temporary name, size check,
        rename over), then the empty ``done_marker`` file if given. Raises TransportError."""
        ...
