"""The private parts of pyftpdlib and paramiko the endpoints build on are still there.

The endpoints correct what the libraries get wrong for a file drop (an FTP
reset taken for a clean end of file, an SFTP CLOSE that always answers OK),
and that reaches below their public API. pyproject.toml pins both below their
next major version; an upgrade inside the pin that moves one of these names
fails here, by name, instead of somewhere in a transfer.
"""

from __future__ import annotations

import inspect

import pytest
from paramiko import sftp, sftp_server
from pyftpdlib import ioloop, servers
from pyftpdlib.handlers import DTPHandler, FTPHandler, TLS_FTPHandler

# (what, where its source is, the names it must hold)
USED = [
    ("pyftpdlib.ioloop", inspect.getsource(ioloop), ["_ERRNOS_DISCONNECTED", "_ERRNOS_RETRY", "_RetryError"]),
    ("FTPHandler", inspect.getsource(FTPHandler),
     ["_restart_position", "_in_dtp_queue", "_on_dtp_close", "_rnfr", "_closed", "_current_type",
      "handle_auth_failed", "handle_auth_success", "proto_cmds", "auth_failed_timeout"]),
    ("TLS_FTPHandler", inspect.getsource(TLS_FTPHandler), ["_ssl_established"]),
    ("DTPHandler", inspect.getsource(DTPHandler),
     ["_resp", "_closed", "transfer_finished", "receive", "file_obj", "enable_receiving"]),
    ("pyftpdlib.servers", inspect.getsource(servers), ["_lock", "_exit", "def _loop(self, handler)"]),
    ("paramiko.sftp", inspect.getsource(sftp), ["_VERSION"]),
    ("SFTPServer", inspect.getsource(sftp_server.SFTPServer),
     ["_send_server_version", "_send_status", "_read_packet", "_send_packet", "_process",
      "file_table", "folder_table"]),
]


@pytest.mark.parametrize(("what", "source", "names"), USED, ids=[u[0] for u in USED])
def test_the_library_still_has_what_the_endpoints_use(what: str, source: str, names: list[str]) -> None:
    missing = [name for name in names if name not in source]
    assert missing == [], f"{what} no longer has {missing}: see daemon/ingest/endpoints"
