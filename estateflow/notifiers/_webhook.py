"""The ``webhook`` channel, and the HTTP plumbing the robot and SMS channels share.

Why sign the raw body: a receiver must be able to check the bytes it got before parsing them,
and JSON re-serialisation is not byte-stable across languages. The signed body carries
``sent_at``, so a receiver that wants replay protection can trust that time, not the
informational ``X-Estateflow-Timestamp`` header.

Why classify status codes here: only the channel knows that 429 and 5xx may heal by
themselves while 400/401/404 need a person; the outbox just obeys ``retryable`` and
``retry_after``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Mapping
from datetime import date, datetime, timezone
from decimal import Decimal
from email.utils import parsedate_to_datetime
from typing import Any
from uuid import UUID

import httpx

from ..engine._errors import DeliveryError
from ._base import Message, RateLimit, Receipt, delivery_error

__all__ = [
    "HttpChannel",
    "RESERVED_HEADERS",
    "WebhookNotifier",
    "json_bytes",
    "parse_retry_after",
    "sign_body",
    "verify_signature",
]

SIGNATURE_HEADER = "X-Estateflow-Signature"
TIMESTAMP_HEADER = "X-Estateflow-Timestamp"
RESERVED_HEADERS = frozenset({"content-type", "idempotency-key", SIGNATURE_HEADER.lower(),
                              TIMESTAMP_HEADER.lower(), "content-length", "host"})
_RETRYABLE_STATUS = {408, 425, 429}


def sign_body(secret: str | bytes, body: bytes) -> str:
    """``sha256=<hex>`` HMAC of the exact request body, as sent in ``X-Estateflow-Signature``."""
    key = secret.encode("utf-8") if isinstance(secret, str) else secret
    return "sha256=" + hmac.new(key, body, hashlib.sha256).hexdigest()


def verify_signature(secret: str | bytes, body: bytes, header: str | None) -> bool:
    """For receivers: does ``header`` (``X-Estateflow-Signature``) match ``body``?

    Compares in constant time and returns ``False`` (never raises) for a missing or malformed
    header, so a receiver can write ``if not verify_signature(...): return 401``.
    """
    if not header or not isinstance(header, str):
        return False
    expected = sign_body(secret, body)
    return hmac.compare_digest(expected.encode("ascii"), header.strip().encode("ascii", "replace"))


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, (Decimal, UUID)):
        return str(value)
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def json_bytes(payload: Any) -> bytes:
    """UTF-8 JSON (Chinese kept readable, not ``\\uXXXX``); dates and decimals as strings."""
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":"),
                      default=_json_default).encode("utf-8")


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP-date), or ``None``."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


class HttpChannel:
    """One pooled :class:`httpx.Client` per channel, with failures mapped to DeliveryError."""

    rate_limit: RateLimit | None = None

    def __init__(self, name: str, *, timeout: float = 10.0, rate_limit: RateLimit | None = None,
                 transport: httpx.BaseTransport | None = None) -> None:
        self.name = name
        self.timeout = timeout
        self.rate_limit = rate_limit
        # No redirects: a webhook that moved is a configuration error, and following a redirect
        # would re-send a signed body to a place nobody configured.
        self._client = httpx.Client(timeout=timeout, follow_redirects=False, transport=transport,
                                    headers={"User-Agent": "estateflow-notifier"})

    def close(self) -> None:
        """Close pooled connections; safe to call twice."""
        self._client.close()

    def post(self, url: str | httpx.URL, content: bytes,
             headers: Mapping[str, str] | None = None) -> httpx.Response:
        """POST once; timeouts and network errors become retryable DeliveryErrors."""
        all_headers = {"Content-Type": "application/json; charset=utf-8", **(headers or {})}
        try:
            return self._client.post(url, content=content, headers=all_headers)
        except httpx.TimeoutException as exc:
            raise delivery_error(self.name, f"timed out after {self.timeout:g} s "
                                            f"({type(exc).__name__})", retryable=True) from exc
        except (httpx.UnsupportedProtocol, httpx.InvalidURL) as exc:
            raise delivery_error(self.name, f"bad URL: {exc}", retryable=False) from exc
        except httpx.TransportError as exc:
            raise delivery_error(self.name, f"network error: {type(exc).__name__}: {exc}",
                                 retryable=True) from exc
        except httpx.HTTPError as exc:
            raise delivery_error(self.name, f"HTTP error: {exc}", retryable=True) from exc
        except (UnicodeError, ValueError, TypeError) as exc:  # e.g. a non-ASCII header value
            raise delivery_error(self.name, f"cannot build the request: {exc}",
                                 retryable=False) from exc

    def status_error(self, response: httpx.Response) -> DeliveryError:
        """Map a non-2xx response: 408/425/429/5xx retryable (with Retry-After), others not."""
        status = response.status_code
        snippet = response.text[:200].strip() if response.content else ""
        reason = f"HTTP {status} {response.reason_phrase}" + (f": {snippet}" if snippet else "")
        if 300 <= status < 400:
            where = response.headers.get("Location", "?")
            return delivery_error(self.name, f"{reason} (redirect to {where}; configure the "
                                             f"final URL)", retryable=False)
        retryable = status in _RETRYABLE_STATUS or status >= 500
        retry_after = parse_retry_after(response.headers.get("Retry-After")) if retryable else None
        return delivery_error(self.name, reason, retryable=retryable, retry_after=retry_after)

    def post_signed(self, body: bytes, idempotency_key: str) -> httpx.Response:
        """POST ``body`` with the idempotency key, timestamp and (with a secret) HMAC signature;
        a non-2xx answer raises a classified DeliveryError."""
        headers = {**self.extra_headers, "Idempotency-Key": idempotency_key,
                   TIMESTAMP_HEADER: str(int(time.time()))}
        if self.secret:
            headers[SIGNATURE_HEADER] = sign_body(self.secret, body)
        response = self.post(self.url, body, headers)
        if not response.is_success:
            raise self.status_error(response)
        return response


class WebhookNotifier(HttpChannel):
    """POSTs ``{"id", "event", "subject", "body", "data", "sent_at", ...}`` as JSON."""

    def __init__(self, name: str, *, url: str, timeout: float = 10.0, secret: str | None = None,
                 headers: Mapping[str, str] | None = None, rate_limit: RateLimit | None = None,
                 transport: httpx.BaseTransport | None = None) -> None:
        super().__init__(name, timeout=timeout, rate_limit=rate_limit, transport=transport)
        self.url = url
        self.secret = secret
        self.extra_headers = dict(headers or {})

    def payload(self, message: Message) -> dict[str, Any]:
        """The JSON document sent; ``id`` is the idempotency key receivers de-duplicate on."""
        return {
            "id": message.idempotency_key,
            "event": message.data.get("event"),
            "subject": message.subject,
            "body": message.body,
            "recipient": message.recipient,
            "language": message.language,
            "data": dict(message.data),
            "sent_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }

    def send(self, message: Message) -> Receipt:
        """One POST; 2xx is success, anything else a classified DeliveryError."""
        try:
            body = json_bytes(self.payload(message))
        except (TypeError, ValueError) as exc:
            raise delivery_error(self.name, f"data is not JSON: {exc}", retryable=False) from exc
        response = self.post_signed(body, message.idempotency_key)
        provider_id = response.headers.get("X-Request-Id") or response.headers.get("X-Delivery-Id")
        return Receipt(self.name, provider_id, f"HTTP {response.status_code}")
