"""The ``log`` channel and personal-data masking.

Why a log channel: it is always available, so a fresh install (or a test) can route every
notification somewhere visible before SMTP or robots are configured. Why masking: owners'
mobile numbers and e-mail addresses end up in log files that many people can read; China's
PIPL treats them as personal information, so the log shows ``138****1234`` instead.
"""

from __future__ import annotations

import logging
import re

from ._base import Message, RateLimit, Receipt

__all__ = ["LogNotifier", "mask_personal"]

log = logging.getLogger("estateflow.notify")

# Mainland mobile: 1[3-9] + 9 digits, optionally +86/86 in front, not part of a longer number.
_MOBILE = re.compile(r"(?<![0-9])((?:\+?86[- ]?)?1[3-9][0-9])([0-9]{4})([0-9]{4})(?![0-9])")
_EMAIL = re.compile(r"(?<![A-Za-z0-9._%+-])([A-Za-z0-9._%+-]+)@([A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+)")


def _mask_local(match: re.Match[str]) -> str:
    local, domain = match.group(1), match.group(2)
    shown = local[0] if len(local) > 1 else ""
    return f"{shown}***@{domain}"


def mask_personal(text: str) -> str:
    """Mask mainland mobile numbers (``138****1234``) and e-mail local parts (``z***@x.com``).

    Meant for logs and admin screens, not for delivery: the domain and the last four digits
    stay visible so that a person can still tell two recipients apart.
    """
    text = _MOBILE.sub(lambda m: f"{m.group(1)}****{m.group(3)}", text)
    return _EMAIL.sub(_mask_local, text)


class LogNotifier:
    """Writes each message to the ``estateflow.notify`` logger; never fails."""

    rate_limit: RateLimit | None = None

    def __init__(self, name: str, *, level: str = "INFO", mask: bool = True,
                 rate_limit: RateLimit | None = None) -> None:
        self.name = name
        self.level = logging.getLevelName(level.upper())
        if not isinstance(self.level, int):
            raise ValueError(f"unknown log level {level!r}")
        self.mask = mask
        self.rate_limit = rate_limit

    def send(self, message: Message) -> Receipt:
        """Log recipient, subject and body (masked unless ``mask: false``)."""
        show = mask_personal if self.mask else (lambda s: s)
        log.log(self.level, "[%s] to %s: %s | %s (key %s)", self.name, show(message.recipient),
                show(message.subject), show(message.body), message.idempotency_key)
        return Receipt(self.name, None, "logged")

    def close(self) -> None:
        """Nothing to release."""
