"""The e-mail channel against a real SMTP server (aiosmtpd) on 127.0.0.1."""

from __future__ import annotations

import email
import socket
from collections.abc import Iterator
from email import policy
from email.header import decode_header, make_header

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from estateflow import DeliveryError
from estateflow.notifiers import EmailNotifier, Message, create_notifier, message_id_for

# The test server allows AUTH without TLS on purpose (127.0.0.1 only); aiosmtpd warns about it.
pytestmark = pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Recorder:
    """aiosmtpd handler keeping every accepted envelope; some addresses get a fixed reply."""

    def __init__(self) -> None:
        self.envelopes: list = []
        self.replies: dict[str, str] = {
            "nobody@example.com": "550 5.1.1 <nobody@example.com>: user unknown",
            "busy@example.com": "451 4.3.0 mailbox busy, try later",
        }

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address in self.replies:
            return self.replies[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        self.envelopes.append(envelope)
        return "250 2.0.0 accepted"


def _authenticator(server, session, envelope, mechanism, auth_data):
    ok = isinstance(auth_data, LoginPassword) and auth_data.login == b"cs" and \
        auth_data.password == b"s3cret"
    return AuthResult(success=ok, handled=False)


@pytest.fixture
def smtp() -> Iterator[tuple[Recorder, int]]:
    handler = Recorder()
    controller = Controller(handler, hostname="127.0.0.1", port=free_port())
    controller.start()
    try:
        yield handler, controller.port
    finally:
        controller.stop()


@pytest.fixture
def smtp_auth() -> Iterator[tuple[Recorder, int]]:
    handler = Recorder()
    controller = Controller(handler, hostname="127.0.0.1", port=free_port(),
                            authenticator=_authenticator, auth_required=True,
                            auth_require_tls=False)
    controller.start()
    try:
        yield handler, controller.port
    finally:
        controller.stop()


def notifier(port: int, **extra) -> EmailNotifier:
    return EmailNotifier("email", host="127.0.0.1", port=port, security="none",
                         sender="物业客服 <cs@example.com>", timeout=5, **extra)


def message(key: str = "case:BX-2026-000123:breach:1", **extra) -> Message:
    fields = dict(channel="email", recipient="owner@example.com",
                  subject="【超时提醒】报修单 BX-2026-000123 已超时", body="维修工单已超过3个工作日未处理。\n请尽快跟进。",
                  idempotency_key=key)
    fields.update(extra)
    return Message(**fields)


def received(handler: Recorder, index: int = -1) -> email.message.Message:
    return email.message_from_bytes(handler.envelopes[index].original_content)


def test_send_delivers_plain_text_with_stable_message_id_and_idempotency_header(smtp):
    handler, port = smtp
    receipt = notifier(port).send(message())
    assert receipt.provider_id == message_id_for("case:BX-2026-000123:breach:1")
    envelope = handler.envelopes[0]
    assert envelope.mail_from == "cs@example.com"
    assert envelope.rcpt_tos == ["owner@example.com"]
    mail = received(handler)
    assert mail["Message-ID"] == receipt.provider_id
    assert mail["Message-ID"].endswith("@estateflow>") and len(mail["Message-ID"]) == 32 + 13
    assert mail["X-Estateflow-Idempotency-Key"] == "case:BX-2026-000123:breach:1"
    assert mail["Auto-Submitted"] == "auto-generated"
    parsed = email.message_from_bytes(envelope.original_content, policy=policy.default)
    text = parsed.get_content().replace("\r\n", "\n").strip()  # SMTP wire format is CRLF
    assert text == "维修工单已超过3个工作日未处理。\n请尽快跟进。"
    assert str(parsed["From"].addresses[0].display_name) == "物业客服"


def test_same_key_gives_same_message_id_and_other_key_another(smtp):
    handler, port = smtp
    sender = notifier(port)
    sender.send(message())
    sender.send(message())
    sender.send(message(key="case:BX-2026-000124:breach:1"))
    ids = [received(handler, i)["Message-ID"] for i in range(3)]
    assert ids[0] == ids[1] != ids[2]


def test_chinese_subject_is_encoded_and_round_trips(smtp):
    handler, port = smtp
    notifier(port).send(message())
    raw = received(handler)["Subject"]
    assert raw.isascii() and "=?utf-8?" in raw.lower()
    assert str(make_header(decode_header(raw))) == "【超时提醒】报修单 BX-2026-000123 已超时"


def test_english_message_and_newline_in_subject(smtp):
    handler, port = smtp
    notifier(port).send(message(subject="Repair overdue\n", language="en"))
    mail = received(handler)
    assert mail["Subject"] == "Repair overdue"
    assert mail["Content-Language"] == "en"


def test_html_alternative_is_attached(smtp):
    handler, port = smtp
    notifier(port).send(message(html="<p>维修工单<b>已超时</b></p>"))
    parsed = email.message_from_bytes(handler.envelopes[0].original_content, policy=policy.default)
    assert parsed.get_content_type() == "multipart/alternative"
    assert parsed.get_body(("plain",)).get_content().startswith("维修工单已超过")
    assert "<b>已超时</b>" in parsed.get_body(("html",)).get_content()


def test_login_with_auth_succeeds(smtp_auth):
    handler, port = smtp_auth
    notifier(port, username="cs", password="s3cret").send(message())
    assert len(handler.envelopes) == 1


def test_wrong_password_is_not_retryable(smtp_auth):
    handler, port = smtp_auth
    with pytest.raises(DeliveryError) as info:
        notifier(port, username="cs", password="wrong").send(message())
    assert info.value.retryable is False
    assert "535" in str(info.value)
    assert handler.envelopes == []


def test_missing_login_on_server_requiring_auth_is_not_retryable(smtp_auth):
    _, port = smtp_auth
    with pytest.raises(DeliveryError) as info:
        notifier(port).send(message())
    assert info.value.retryable is False  # 530 authentication required


def test_refused_recipient_550_is_not_retryable(smtp):
    handler, port = smtp
    with pytest.raises(DeliveryError) as info:
        notifier(port).send(message(recipient="nobody@example.com"))
    assert info.value.retryable is False
    assert "550" in info.value.reason and "user unknown" in info.value.reason
    assert info.value.retry_after is None
    assert handler.envelopes == []


def test_temporary_refusal_451_is_retryable(smtp):
    _, port = smtp
    with pytest.raises(DeliveryError) as info:
        notifier(port).send(message(recipient="busy@example.com"))
    assert info.value.retryable is True


def test_server_down_is_retryable():
    with pytest.raises(DeliveryError) as info:
        notifier(free_port()).send(message())
    assert info.value.retryable is True
    assert info.value.channel == "email"


def test_starttls_against_server_without_it_is_not_retryable(smtp):
    _, port = smtp
    sender = EmailNotifier("email", host="127.0.0.1", port=port, security="starttls",
                           sender="cs@example.com", timeout=5)
    with pytest.raises(DeliveryError) as info:
        sender.send(message())
    assert info.value.retryable is False


def test_bad_recipient_is_refused_before_connecting():
    sender = notifier(free_port())
    for bad in ("not-an-address", "a@example.com, b@example.com", "a@example.com\r\nBcc: x@y.z"):
        with pytest.raises(DeliveryError) as info:
            sender.send(message(recipient=bad))
        assert info.value.retryable is False


def test_create_notifier_builds_email_from_options(smtp):
    handler, port = smtp
    built = create_notifier("email", "email", {"host": "127.0.0.1", "port": port,
                                               "security": "none", "from": "cs@example.com"})
    built.send(message())
    assert handler.envelopes[0].mail_from == "cs@example.com"
    built.close()
