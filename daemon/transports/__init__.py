"""Clients for folders on other machines: what pulls fetch from and exports deliver to.

``sftp`` connects with the server's host key pinned, never learned. Every
way a connection can fail is a ``TransportError``: a ``TransientError``, so
the caller retries later.
"""

from __future__ import annotations

from daemon.errors import TransientError


class TransportError(TransientError):
    """A remote folder could not be used this time (down, refused, host key, login); the
    message says why."""
