"""What every channel shares: the message, the receipt, the notifier contract, error helpers.

Why a contract this small: the outbox (not the notifier) owns retries, backoff, dead letters and
rate limiting, because only the database survives a restart (DESIGN principles 1 and 3). A
notifier therefore does exactly one attempt and says, through ``DeliveryError.retryable``,
whether another attempt could succeed.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from ..engine._errors import DeliveryError

__all__ = [
    "Message",
    "Notifier",
    "RateLimit",
    "Receipt",
    "SetupError",
    "delivery_error",
    "message_id_for",
]


@dataclass(frozen=True)
class Message:
    """One rendered notification, ready for one channel.

    ``idempotency_key`` is stable per cause (e.g. ``case:BX-2026-000123:breach:1``): the outbox
    may deliver the same message more than once after a crash, and receivers de-duplicate on it
    (it becomes the webhook event id and the e-mail ``Message-ID``). SMS gateways only send
    pre-approved templates, so SMS uses ``sms_template`` + ``sms_params`` instead of ``body``.
    """

    channel: str
    recipient: str
    subject: str
    body: str
    idempotency_key: str
    html: str | None = None
    language: str = "zh"
    data: Mapping[str, Any] = field(default_factory=dict)
    sms_template: str | None = None
    sms_params: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Receipt:
    """Proof of one accepted delivery; ``provider_id`` is the provider's id when it has one."""

    channel: str
    provider_id: str | None = None
    detail: str = ""


@dataclass(frozen=True)
class RateLimit:
    """At most ``count`` messages per ``per_seconds`` (calendar seconds) for one channel.

    The notifier only declares it; the outbox enforces it in the database so that several
    daemons share one budget (an in-memory limiter per process would let three daemons send
    three times the allowance and get a DingTalk robot blocked for 10 minutes).
    """

    count: int
    per_seconds: float

    def __post_init__(self) -> None:
        if self.count < 1 or self.per_seconds <= 0:
            raise ValueError("a rate limit needs count >= 1 and per_seconds > 0")


@runtime_checkable
class Notifier(Protocol):
    """A configured channel. ``send`` makes one attempt and raises only :class:`DeliveryError`."""

    name: str
    rate_limit: RateLimit | None

    def send(self, message: Message) -> Receipt:
        """Deliver once; raise ``DeliveryError(retryable=...)`` on failure, never anything else."""
        ...

    def close(self) -> None:
        """Release connections; safe to call twice."""
        ...


class SetupError(ValueError):
    """A channel cannot be built from valid-looking options (missing extra, bad plugin).

    Private to the notifiers package: :mod:`._config` turns it into a FILE:LINE:COLUMN
    :class:`~estateflow.engine._errors.Problem` at the channel's position.
    """

    def __init__(self, message: str, hint: str = "") -> None:
        self.message = message
        self.hint = hint
        super().__init__(message)


def delivery_error(channel: str, reason: str, *, retryable: bool,
                   retry_after: float | None = None) -> DeliveryError:
    """Build a :class:`DeliveryError`, adding ``retry_after`` (seconds) as an attribute.

    ``DeliveryError`` has no ``retry_after`` parameter yet, so it is set on the instance; every
    error made here has the attribute (``None`` when the provider gave no hint), so the outbox
    can read ``exc.retry_after`` without ``getattr``.
    """
    error = DeliveryError(channel, reason, retryable=retryable)
    error.retry_after = retry_after  # type: ignore[attr-defined]
    return error


def message_id_for(idempotency_key: str) -> str:
    """The stable e-mail ``Message-ID`` for a key: the same cause always gets the same id."""
    digest = hashlib.sha256(idempotency_key.encode("utf-8")).hexdigest()[:32]
    return f"<{digest}@estateflow>"
