"""Real receivers on 127.0.0.1 that honour the idempotency key, and the ledger they share.

Why a ledger separate from the servers: an outage test stops a receiver and starts a new one
on the same port later; what was processed before the outage must still count. The ledger is
what a careful receiving system keeps: the first delivery of a key is processed, a repeat is
acknowledged but not processed again, and counted (at-least-once delivery is the contract, so
repeats are a figure to report, not a failure). A repeat whose content differs from the first
delivery would mean the key does not identify the message: that is counted separately and is
a failure.
"""

from __future__ import annotations

import email
import json
import socket
import threading
from collections import Counter
from email import policy
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ["Ledger", "SmtpReceiver", "WebhookReceiver", "free_port"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Ledger:
    """Keys processed once each; every delivery counted."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.first: dict[str, Any] = {}
        self.deliveries: Counter[str] = Counter()
        self.changed: list[str] = []

    def record(self, key: str, content: Any) -> bool:
        """True when this delivery is processed (first time), False for an honoured repeat."""
        with self._lock:
            self.deliveries[key] += 1
            if key not in self.first:
                self.first[key] = content
                return True
            if self.first[key] != content:
                self.changed.append(key)
            return False

    @property
    def processed(self) -> int:
        return len(self.first)

    @property
    def repeats(self) -> int:
        return sum(n - 1 for n in self.deliveries.values())

    def keys(self) -> set[str]:
        with self._lock:
            return set(self.first)


class WebhookReceiver:
    """An HTTP server recording ``Idempotency-Key`` and the message it carried.

    ``up = False`` answers every attempt 503 (a receiver that is there but failing, as opposed
    to :meth:`stop`, a refused connection); ``attempts`` counts every POST, ``documents`` holds
    the JSON of each key's first delivery, in order.
    """

    def __init__(self, ledger: Ledger | None = None, port: int | None = None) -> None:
        self.ledger = ledger or Ledger()
        self.port = port or free_port()
        self.up = True
        self.attempts = 0
        self.documents: list[dict[str, Any]] = []
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def start(self) -> WebhookReceiver:
        receiver, ledger, lock = self, self.ledger, threading.Lock()

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                with lock:
                    receiver.attempts += 1
                if not receiver.up:
                    self.send_response(503)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                key = self.headers.get("Idempotency-Key")
                if not key or len(raw) != length:
                    self.send_response(400)
                    self.end_headers()
                    return
                doc = json.loads(raw)
                # sent_at is the sending time of this attempt, not part of the message
                if ledger.record(key, (doc["id"], doc["subject"], doc["body"], doc["recipient"])):
                    with lock:
                        receiver.documents.append(doc)
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


class SmtpReceiver:
    """An aiosmtpd server recording ``X-Estateflow-Idempotency-Key`` of every accepted mail;
    ``messages`` keeps every accepted mail, repeats included."""

    def __init__(self, ledger: Ledger | None = None, port: int | None = None) -> None:
        self.ledger = ledger or Ledger()
        self.port = port or free_port()
        self.messages: list[email.message.EmailMessage] = []
        self._controller: Any = None

    def start(self) -> SmtpReceiver:
        from aiosmtpd.controller import Controller

        ledger, messages = self.ledger, self.messages

        class Handler:
            async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
                mail = email.message_from_bytes(envelope.content, policy=policy.default)
                messages.append(mail)
                key = str(mail["X-Estateflow-Idempotency-Key"])
                body = mail.get_body(("plain",))
                ledger.record(key, (str(mail["Message-ID"]), str(mail["Subject"]),
                                    body.get_content().strip() if body else "", tuple(envelope.rcpt_tos)))
                return "250 2.0.0 accepted"

        self._controller = Controller(Handler(), hostname="127.0.0.1", port=self.port)
        self._controller.start()
        return self

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None
