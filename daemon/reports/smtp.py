"""Hand one message to the SMTP server (stdlib ``smtplib``), and say whether a failure is for good.

What waiting may fix is a ``MailDeferred`` (a ``TransientError``): the
server down, refusing the connection or timing out, a 4xx reply, a login
or TLS handshake that failed (the operator fixes the config; the mail must
still go then). A 5xx reply to the message itself (its sender, a
recipient, its content) is ``MailRefused``: sending it again would get the
same answer. A message some of whose recipients were refused with a 5xx
went to the others; the refusals are reported, not retried.
"""

from __future__ import annotations

import contextlib
import smtplib
import ssl
from collections.abc import Sequence
from dataclasses import dataclass

from daemon.errors import StockdropError, TransientError
from daemon.settings import SmtpSettings


class MailDeferred(TransientError):
    """The server did not take the message this time; try again later.

    ``this_message``: the server is up and deferred this message (a 4xx to
    its recipients, sender or data: a full mailbox, greylisting), so the
    mails behind it may still go; otherwise (down, a timeout, a refused
    login, a 421 closing the channel) no other mail would fare better now.
    """

    def __init__(self, message: str, *, this_message: bool = False) -> None:
        super().__init__(message)
        self.this_message = this_message


class MailRefused(StockdropError):
    """The server refused the message for good (a 5xx reply)."""


@dataclass(frozen=True)
class Accepted:
    refused: dict[str, str]  # recipient -> the server's 5xx reply (the others got it)


def _tls_context(settings: SmtpSettings) -> ssl.SSLContext:
    if settings.ca_file is not None:
        return ssl.create_default_context(cafile=str(settings.ca_file))
    return ssl.create_default_context()


def _reply(code: int, message: bytes | str) -> str:
    text = message.decode("utf-8", "replace") if isinstance(message, bytes) else message
    return f"{code} {text}".strip()


class SmtpClient:
    def __init__(self, settings: SmtpSettings) -> None:
        self.settings = settings

    def describe(self) -> str:
        return f"smtp://{self.settings.host}:{self.settings.resolved_port} ({self.settings.security})"

    def send(self, sender: str, recipients: Sequence[str], message: bytes) -> Accepted:
        """Deliver ``message`` (the exact bytes) to the server; returns once it accepted them."""
        try:
            smtp = self._connect()
            try:
                refused = smtp.sendmail(sender, list(recipients), message)
            finally:
                # Accepted is accepted: a QUIT that fails must not make it look unsent.
                with contextlib.suppress(smtplib.SMTPException, OSError):
                    smtp.quit()
                smtp.close()
        except smtplib.SMTPRecipientsRefused as exc:  # every recipient refused
            replies = {rcpt: _reply(code, msg) for rcpt, (code, msg) in exc.recipients.items()}
            detail = "; ".join(f"{rcpt}: {reply}" for rcpt, reply in replies.items())
            if all(code >= 500 for code, _ in exc.recipients.values()):
                raise MailRefused(f"every recipient refused: {detail}") from None
            raise MailDeferred(f"recipients deferred: {detail}", this_message=True) from None
        except smtplib.SMTPAuthenticationError as exc:
            raise MailDeferred(f"login refused by {self.describe()}: {_reply(exc.smtp_code, exc.smtp_error)}") \
                from None
        except smtplib.SMTPResponseException as exc:  # MAIL FROM, DATA or the end of data
            reply = _reply(exc.smtp_code, exc.smtp_error)
            if 500 <= exc.smtp_code < 600:
                raise MailRefused(f"refused by {self.describe()}: {reply}") from None
            raise MailDeferred(f"deferred by {self.describe()}: {reply}", this_message=exc.smtp_code != 421) from None
        except (smtplib.SMTPException, OSError) as exc:  # down, refused, timed out, TLS, cut off
            raise MailDeferred(f"{self.describe()}: {type(exc).__name__}: {exc}") from None
        return Accepted({rcpt: _reply(code, msg) for rcpt, (code, msg) in refused.items()})

    def _connect(self) -> smtplib.SMTP:
        s = self.settings
        smtp: smtplib.SMTP
        if s.security == "tls":
            smtp = smtplib.SMTP_SSL(s.host, s.resolved_port, timeout=s.timeout_seconds, context=_tls_context(s))
        else:
            smtp = smtplib.SMTP(s.host, s.resolved_port, timeout=s.timeout_seconds)
        try:
            smtp.ehlo()
            if s.security == "starttls":
                if not smtp.has_extn("starttls"):
                    # Never fall back to the clear: that is what a downgrade attack looks like.
                    raise MailDeferred(f"{self.describe()} does not offer STARTTLS")
                smtp.starttls(context=_tls_context(s))
                smtp.ehlo()
            password = s.resolved_password()
            if s.user is not None and password is not None:
                smtp.login(s.user, password)
        except BaseException:
            smtp.close()
            raise
        return smtp
