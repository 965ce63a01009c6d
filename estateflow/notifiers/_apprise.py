"""The ``apprise`` channel (optional extra ``estateflow[apprise]``): 100+ services by URL.

Why optional and imported lazily: most installs never use it, and importing estateflow must not
fail or slow down because of it. A configuration that names ``kind: apprise`` without the extra
installed is reported at that line with the install command.

Apprise only answers "sent or not", so every failure is reported as retryable; the outbox's
attempt limit and dead-letter state bound the retries.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Sequence
from typing import Any

from ._base import Message, RateLimit, Receipt, SetupError, delivery_error

__all__ = ["AppriseNotifier", "apprise_available"]

INSTALL_HINT = "install estateflow[apprise]: pip install 'estateflow[apprise]'"


def apprise_available() -> bool:
    """Whether the optional ``apprise`` package can be imported (without importing it)."""
    return importlib.util.find_spec("apprise") is not None


class AppriseNotifier:
    """Sends subject + body to every configured Apprise URL."""

    def __init__(self, name: str, *, urls: Sequence[str],
                 rate_limit: RateLimit | None = None) -> None:
        try:
            apprise = importlib.import_module("apprise")
        except ImportError as exc:
            raise SetupError("the apprise package is not installed", INSTALL_HINT) from exc
        self.name = name
        self.rate_limit = rate_limit
        self._apprise: Any = apprise.Apprise()
        for url in urls:
            if not self._apprise.add(url):
                raise SetupError(f"apprise does not understand the URL {url.split(':', 1)[0]}://…",
                                 "check the URL against the Apprise wiki")

    def send(self, message: Message) -> Receipt:
        """One notify() call across all URLs."""
        try:
            ok = self._apprise.notify(title=message.subject, body=message.body)
        except Exception as exc:  # noqa: BLE001 - third-party code; keep the contract
            raise delivery_error(self.name, f"apprise failed: {type(exc).__name__}: {exc}",
                                 retryable=True) from exc
        if not ok:
            raise delivery_error(self.name, "apprise reported a failed delivery", retryable=True)
        return Receipt(self.name, None, "apprise accepted")

    def close(self) -> None:
        """Apprise keeps no connections."""
