"""A real SMTP server (aiosmtpd) on port 0 for the mail tests, and the mails it took, parsed back."""

from __future__ import annotations

import email
import socket
import ssl
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.policy import default
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from daemon.settings import SmtpSettings
from tests.export.test_exports import make_world  # noqa: F401 - the exports' world, for their alerts
from tests.helpers import self_signed_cert

SMTP_USER, SMTP_PASSWORD = "stockdrop", "mail-s3cret"


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    raw: bytes

    @property
    def message(self) -> EmailMessage:
        parsed = email.message_from_bytes(self.raw, policy=default)
        assert isinstance(parsed, EmailMessage)
        return parsed

    def part(self, subtype: str) -> str:
        body = self.message.get_body(preferencelist=(subtype,))
        assert body is not None and body.get_content_type() == f"text/{subtype}", f"no text/{subtype} part"
        content = body.get_content()
        assert isinstance(content, str)
        return content.replace("\r\n", "\n")


@dataclass
class Inbox:
    """The handler: takes every message, unless a reply is queued for the next DATA."""

    received: list[Received] = field(default_factory=list)
    replies: list[str] = field(default_factory=list)  # e.g. "451 4.3.0 try later", used up in order
    logins: list[str] = field(default_factory=list)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.replies:
            return self.replies.pop(0)
        self.received.append(Received(envelope.mail_from, list(envelope.rcpt_tos),
                                      envelope.original_content or envelope.content))
        return "250 2.0.0 OK"


class _OnPortZero(Controller):
    """aiosmtpd's controller, listening on a port the system picks."""

    def _trigger_server(self) -> None:
        assert self.server is not None
        self.port = self.server.sockets[0].getsockname()[1]
        super()._trigger_server()


@dataclass
class SmtpServer:
    inbox: Inbox
    controller: Controller
    port: int
    cert: Path | None = None

    def settings(self, **overrides: Any) -> SmtpSettings:
        values: dict[str, Any] = {"host": "127.0.0.1", "port": self.port, "security": "none",
                                  "from_address": "stockdrop@example.com", "timeout_seconds": 5,
                                  "tries": 2, "retry_max_seconds": 1}
        if self.cert is not None:
            values.update(security="starttls", ca_file=self.cert, user=SMTP_USER, password=SMTP_PASSWORD)
        return SmtpSettings(**{**values, **overrides})

    def stop(self) -> None:
        self.controller.stop()


@pytest.fixture(scope="session")
def smtp_cert(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return self_signed_cert(tmp_path_factory.mktemp("smtp-tls"))


@pytest.fixture
def start_smtp(smtp_cert: tuple[Path, Path]) -> Iterator[Callable[..., SmtpServer]]:
    """``start_smtp()``: a plain server; ``start_smtp(tls=True)``: STARTTLS required, then a login.
    ``port``: listen there (a server that comes back where it was)."""
    started: list[Controller] = []

    def start(*, tls: bool = False, port: int = 0, inbox: Inbox | None = None) -> SmtpServer:
        inbox = inbox or Inbox()
        kwargs: dict[str, Any] = {}
        if tls:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(*smtp_cert)

            def authenticate(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> AuthResult:
                ok = (isinstance(data, LoginPassword) and data.login.decode() == SMTP_USER
                      and data.password.decode() == SMTP_PASSWORD)
                if ok:
                    inbox.logins.append(data.login.decode())
                return AuthResult(success=ok)

            kwargs = {"tls_context": context, "require_starttls": True, "auth_required": True,
                      "auth_require_tls": True, "authenticator": authenticate}
        controller = _OnPortZero(inbox, hostname="127.0.0.1", port=port, **kwargs)
        controller.start()
        started.append(controller)
        return SmtpServer(inbox, controller, controller.port, smtp_cert[0] if tls else None)

    yield start
    for controller in started:
        controller.stop(no_assert=True)  # a test may have stopped it already


def free_port() -> int:
    """A port nothing listens on (yet)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
