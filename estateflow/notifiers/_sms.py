"""The ``sms`` channel: a generic HTTP gateway taking a template code and parameters.

Why templates and not text: mainland SMS providers only deliver a pre-approved signature
(签名) + template code + parameters; free text is rejected by the carrier rules. So a message
without ``sms_template`` is refused here, before any network call, as not retryable: retrying
cannot make a template appear.

The gateway receives ``{"phone", "sign_name", "template_code", "params"}`` and the
``Idempotency-Key`` header (and the HMAC signature headers when a secret is configured); a
small adapter service in front of Aliyun/Tencent Cloud SMS can translate that.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import httpx

from ._base import Message, RateLimit, Receipt, delivery_error
from ._webhook import HttpChannel, json_bytes

__all__ = ["SmsNotifier"]

_MAINLAND_MOBILE = re.compile(r"^(?:\+?86[- ]?)?(1[3-9][0-9]{9})$")


class SmsNotifier(HttpChannel):
    """POSTs one template SMS per message to the configured gateway URL."""

    def __init__(self, name: str, *, url: str, sign_name: str, timeout: float = 10.0,
                 secret: str | None = None, headers: Mapping[str, str] | None = None,
                 rate_limit: RateLimit | None = None,
                 transport: httpx.BaseTransport | None = None) -> None:
        super().__init__(name, timeout=timeout, rate_limit=rate_limit, transport=transport)
        self.url = url
        self.sign_name = sign_name
        self.secret = secret
        self.extra_headers = dict(headers or {})

    def send(self, message: Message) -> Receipt:
        """Refuse free text and non-mainland numbers; otherwise one POST to the gateway."""
        if not message.sms_template:
            raise delivery_error(self.name, "SMS needs sms_template (an approved template code); "
                                            "free text cannot be sent", retryable=False)
        match = _MAINLAND_MOBILE.match(message.recipient.strip())
        if not match:
            raise delivery_error(self.name, f"not a mainland mobile number: "
                                            f"{message.recipient!r}", retryable=False)
        payload = {
            "phone": match.group(1),
            "sign_name": self.sign_name,
            "template_code": message.sms_template,
            "params": {str(k): str(v) for k, v in message.sms_params.items()},
        }
        response = self.post_signed(json_bytes(payload), message.idempotency_key)
        return Receipt(self.name, _provider_id(response), f"HTTP {response.status_code}")


def _provider_id(response: httpx.Response) -> str | None:
    try:
        document = response.json()
    except ValueError:
        return None
    if isinstance(document, dict):
        for key in ("id", "message_id", "biz_id", "BizId", "serial_no"):
            if document.get(key):
                return str(document[key])
    return None
