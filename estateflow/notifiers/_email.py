"""The ``email`` channel: one SMTP conversation per message through :mod:`smtplib`.

Why a fresh connection per message: the outbox sends in short bursts minutes apart, and SMTP
servers drop idle connections after a minute or so; reconnecting costs a few milliseconds on a
LAN and removes a whole class of "server disconnected" half-failures.

Why the Message-ID is derived from the idempotency key: after a crash the outbox may send the
same message twice (at-least-once, DESIGN principle 3); mail clients and many servers collapse
messages with the same Message-ID, and the ``X-Estateflow-Idempotency-Key`` header lets a
receiving system de-duplicate explicitly.
"""

from __future__ import annotations

import logging
import smtplib
import socket
import ssl
from datetime import datetime, timezone
from email import policy
from email.message import EmailMessage
from email.utils import format_datetime, parseaddr
from typing import Literal

from ..engine._errors import DeliveryError
from ._base import Message, RateLimit, Receipt, delivery_error, message_id_for

__all__ = ["EmailNotifier", "Security"]

Security = Literal["starttls", "ssl", "none"]
DEFAULT_PORTS: dict[str, int] = {"ssl": 465, "starttls": 587, "none": 25}

# SMTP policy with CRLF line ends; ``cte_type="7bit"`` makes non-ASCII bodies quoted-printable or
# base64, so a relay without 8BITMIME cannot mangle Chinese text.
_POLICY = policy.SMTP.clone(cte_type="7bit")
_LOOPBACK = ("127.0.0.1", "::1", "localhost")

log = logging.getLogger(__name__)


class EmailNotifier:
    """Sends plain text (plus an optional HTML alternative) to one address per message."""

    wants_html = True  # the outbox renders the HTML alternative only for channels that send it

    def __init__(self, name: str, *, host: str, port: int | None = None,
                 security: Security = "starttls", username: str | None = None,
                 password: str | None = None, sender: str, timeout: float = 30.0,
                 rate_limit: RateLimit | None = None) -> None:
        self.name = name
        self.host = host
        self.security = security
        self.port = port if port is not None else DEFAULT_PORTS[security]
        self.username = username
        self.password = password
        self.sender = sender
        self.envelope_from = parseaddr(sender)[1]
        self.timeout = timeout
        self.rate_limit = rate_limit
        if security == "none" and username and host not in _LOOPBACK:
            log.warning("channel %s sends the SMTP password to %s without TLS; use security: "
                        "starttls or ssl", name, host)

    # -- building -------------------------------------------------------------------------
    def build(self, message: Message) -> EmailMessage:
        """The MIME message that :meth:`send` would transmit (useful for previews and tests)."""
        mail = EmailMessage(policy=_POLICY)
        mail["From"] = self.sender
        mail["To"] = message.recipient
        # Headers must be one line; a template ending in a newline must not break the message.
        mail["Subject"] = " ".join(message.subject.splitlines()).strip()
        mail["Date"] = format_datetime(datetime.now(timezone.utc))
        mail["Message-ID"] = message_id_for(message.idempotency_key)
        mail["X-Estateflow-Idempotency-Key"] = message.idempotency_key
        mail["Auto-Submitted"] = "auto-generated"  # RFC 3834: no vacation auto-replies back
        mail.set_content(message.body, charset="utf-8")
        if message.html:
            mail.add_alternative(message.html, subtype="html", charset="utf-8")
        if message.language:  # after set_content, which clears every Content-* header
            mail["Content-Language"] = "zh-CN" if message.language == "zh" else message.language
        return mail

    # -- sending --------------------------------------------------------------------------
    def send(self, message: Message) -> Receipt:
        """One SMTP attempt; 4xx and network trouble are retryable, 5xx are permanent."""
        recipient = message.recipient.strip()
        if "@" not in recipient or any(c in recipient for c in "\r\n,;"):
            raise delivery_error(self.name, f"not a single e-mail address: {recipient!r}",
                                 retryable=False)
        try:
            mail = self.build(message)
        except (ValueError, TypeError) as exc:  # header injection, undecodable content
            raise delivery_error(self.name, f"cannot build the e-mail: {exc}",
                                 retryable=False) from exc
        try:
            with self._connect() as smtp:
                if self.username:
                    smtp.login(self.username, self.password or "")
                refused = smtp.send_message(mail, from_addr=self.envelope_from,
                                            to_addrs=[recipient])
        except DeliveryError:
            raise
        except Exception as exc:  # noqa: BLE001 - the contract: only DeliveryError leaves send()
            raise self._map_error(exc) from exc
        if refused:  # only possible with several recipients; kept for completeness
            raise delivery_error(self.name, f"recipient refused: {refused}", retryable=False)
        return Receipt(self.name, mail["Message-ID"], f"accepted by {self.host}:{self.port}")

    def close(self) -> None:
        """No connection is kept between messages."""

    def _connect(self) -> smtplib.SMTP:
        if self.security == "ssl":
            return smtplib.SMTP_SSL(self.host, self.port, timeout=self.timeout,
                                    context=ssl.create_default_context())
        smtp = smtplib.SMTP(self.host, self.port, timeout=self.timeout)
        try:
            if self.security == "starttls":
                smtp.ehlo()
                smtp.starttls(context=ssl.create_default_context())
                smtp.ehlo()
        except BaseException:
            smtp.close()
            raise
        return smtp

    def _map_error(self, exc: BaseException) -> DeliveryError:
        """Classify by SMTP reply code: 4xx = try again later, 5xx = this will never work."""
        name = self.name
        if isinstance(exc, smtplib.SMTPRecipientsRefused):
            codes = {addr: (code, _text(reply)) for addr, (code, reply) in exc.recipients.items()}
            temporary = any(400 <= code < 500 for code, _ in codes.values())
            detail = "; ".join(f"{addr}: {code} {text}" for addr, (code, text) in codes.items())
            return delivery_error(name, f"recipient refused: {detail}", retryable=temporary)
        if isinstance(exc, smtplib.SMTPNotSupportedError):
            return delivery_error(name, f"server does not support what the configuration asks "
                                        f"for ({exc}); check 'security' and 'username'",
                                  retryable=False)
        if isinstance(exc, smtplib.SMTPResponseException):
            code, text = exc.smtp_code, _text(exc.smtp_error)
            login = isinstance(exc, smtplib.SMTPAuthenticationError)
            what = "login failed" if login else "server said"
            return delivery_error(name, f"{what}: {code} {text}", retryable=not 500 <= code < 600)
        if isinstance(exc, smtplib.SMTPServerDisconnected):
            return delivery_error(name, f"server disconnected: {exc}", retryable=True)
        if isinstance(exc, ssl.SSLCertVerificationError):
            return delivery_error(name, f"TLS certificate of {self.host} not trusted: "
                                        f"{exc.verify_message}", retryable=False)
        if isinstance(exc, (socket.timeout, TimeoutError)):
            return delivery_error(name, f"timed out after {self.timeout:g} s talking to "
                                        f"{self.host}:{self.port}", retryable=True)
        if isinstance(exc, OSError):  # refused, unreachable, DNS, TLS handshake
            return delivery_error(name, f"cannot reach {self.host}:{self.port}: {exc}",
                                  retryable=True)
        if isinstance(exc, smtplib.SMTPException):
            return delivery_error(name, f"SMTP error: {exc}", retryable=True)
        if isinstance(exc, UnicodeError):
            return delivery_error(name, f"address or header not encodable for SMTP: {exc}",
                                  retryable=False)
        return delivery_error(name, f"unexpected {type(exc).__name__}: {exc}", retryable=False)


def _text(reply: bytes | str) -> str:
    return reply.decode("utf-8", "replace") if isinstance(reply, bytes) else str(reply)
