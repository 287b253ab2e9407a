"""Hosted receivers: the FTP/FTPS and SFTP endpoints warehouse systems push files to.

They are thin: they authenticate an account, keep the user inside its source
folder, write uploads to a hidden staging folder and hand each *complete* file
to intake through ``deliver(Arrival(...))``. Everything after that (history,
parsing, applying) belongs to intake.
"""

from __future__ import annotations

from daemon.ingest.receivers.accounts import (
    Account,
    Authenticator,
    MemoryAuthenticator,
    hash_password,
    verify_password,
)
from daemon.ingest.receivers.bans import BanList

__all__ = [
    "Account",
    "Authenticator",
    "BanList",
    "MemoryAuthenticator",
    "hash_password",
    "verify_password",
]
