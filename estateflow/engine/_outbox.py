"""Delivering the outbox: at-least-once, with backoff, dead letters and shared rate limits.

Rows are claimed with a lease exactly like timers, so several daemons never send the same row
concurrently; the send happens outside any transaction (a slow SMTP server must not hold
database locks), and the result is recorded afterwards. A crash between a receiver's
acknowledgement and that record may resend the row: every message carries its idempotency
key for receivers to de-duplicate, and ``attempts > 1`` on a sent row shows such repeats.
Rate limits are counted in ``rate_windows`` rows, so four daemons together still respect a
robot's 20 messages a minute.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from ._errors import DeliveryError
from ._schema import outbox, rate_windows

if TYPE_CHECKING:
    from ._engine import Engine

__all__ = ["DeliveryResult", "OutboxDelivery"]

log = logging.getLogger(__name__)


@dataclass
class DeliveryResult:
    sent: list[int] = field(default_factory=list)
    retried: list[int] = field(default_factory=list)
    dead: list[int] = field(default_factory=list)
    deferred: list[int] = field(default_factory=list)


class OutboxDelivery:
    def __init__(self, engine: Engine, worker: str, *, max_attempts: int = 8,
                 give_up_after: timedelta = timedelta(hours=24),
                 base_delay: timedelta = timedelta(seconds=30), max_delay: timedelta = timedelta(hours=1),
                 lease: timedelta = timedelta(minutes=2)) -> None:
        self.engine = engine
        self.worker = worker
        self.max_attempts = max_attempts
        # A retryable failure becomes a dead letter only after max_attempts *and* this long:
        # eight attempts with backoff span only 32-64 minutes, so a receiver down for an hour
        # would otherwise dead-letter the messages queued when it went down.
        self.give_up_after = give_up_after
        self.base_delay = base_delay
        self.max_delay = max_delay
        self.lease = lease
        self._warned: set[str] = set()

    def claim(self, now: datetime, batch: int) -> list[Any]:
        due = (sa.select(outbox.c.id).where(outbox.c.status == "pending", outbox.c.next_attempt_at <= now,
                                             sa.or_(outbox.c.lease_until.is_(None), outbox.c.lease_until < now))
               .order_by(outbox.c.next_attempt_at, outbox.c.id).limit(batch))
        with self.engine.db.begin() as conn:
            ids = conn.execute(due.with_for_update(skip_locked=True) if conn.dialect.name == "postgresql"
                               else due).scalars().all()
            if not ids:
                return []
            conn.execute(outbox.update().where(outbox.c.id.in_(ids))
                         .values(claimed_by=self.worker, lease_until=now + self.lease))
            return conn.execute(sa.select(outbox).where(outbox.c.id.in_(ids)).order_by(outbox.c.id)).all()

    def deliver(self, now: datetime, *, limit: int = 500) -> DeliveryResult:
        result = DeliveryResult()
        rows = self.claim(now, limit)
        notifiers = self.engine.notifiers()
        for row in rows:
            notifier = notifiers.get(row.channel)
            if notifier is None:
                # An unconfigured channel (e.g. the shipped workflows' "sms" before a gateway is
                # set up) is logged rather than lost; `estateflow status` lists such channels.
                if row.channel not in self._warned:
                    self._warned.add(row.channel)
                    log.warning("channel %r is not configured; its messages go to the log channel", row.channel)
                notifier = notifiers["log"]
            limit_rule = getattr(notifier, "rate_limit", None)
            if limit_rule is not None and not self._take_rate(row.channel, limit_rule, now):
                self._defer(row, now + timedelta(seconds=limit_rule.per_seconds / max(limit_rule.count, 1)), result)
                continue
            try:
                notifier.send(self._message(row))
            except DeliveryError as exc:
                self._record(row, now, result, exc)
                continue
            except Exception as exc:  # a broken plugin is a failed attempt, not a crashed daemon
                self._record(row, now, result, DeliveryError(row.channel, f"{type(exc).__name__}: {exc}"))
                continue
            self._record(row, now, result, None)
        return result

    @staticmethod
    def _message(row: Any) -> Any:
        from ..notifiers import Message

        payload = dict(row.payload or {})
        return Message(channel=row.channel, recipient=row.recipient, subject=row.subject, body=row.body,
                       idempotency_key=row.idempotency_key, html=row.html, language=row.language,
                       data=payload, sms_template=payload.get("template"),
                       sms_params={k: str(v) for k, v in payload.items() if v is not None and k in ("case", "due_at")})

    def _take_rate(self, channel: str, rule: Any, now: datetime) -> bool:
        key = f"channel:{channel}"
        window = timedelta(seconds=rule.per_seconds)
        with self.engine.db.begin() as conn:
            query = sa.select(rate_windows).where(rate_windows.c.key == key)
            if conn.dialect.name == "postgresql":
                conn.execute(sa.text("SELECT pg_advisory_xact_lock(hashtext(:k))"), {"k": key})
            row = conn.execute(query).first()
            if row is None:
                conn.execute(rate_windows.insert().values(key=key, window_start=now, count=1))
                return True
            if now - row.window_start >= window:
                conn.execute(rate_windows.update().where(rate_windows.c.key == key).values(window_start=now, count=1))
                return True
            if row.count >= rule.count:
                return False
            conn.execute(rate_windows.update().where(rate_windows.c.key == key).values(count=row.count + 1))
            return True

    def _defer(self, row: Any, when: datetime, result: DeliveryResult) -> None:
        with self.engine.db.begin() as conn:
            conn.execute(outbox.update().where(outbox.c.id == row.id, outbox.c.claimed_by == self.worker)
                         .values(next_attempt_at=when, claimed_by=None, lease_until=None))
        result.deferred.append(row.id)

    def backoff(self, attempts: int) -> timedelta:
        """Exponential backoff with full jitter in [delay/2, delay], capped at ``max_delay``."""
        delay = min(self.base_delay * (2 ** max(attempts - 1, 0)), self.max_delay)
        return delay * (0.5 + random.random() / 2)

    def _record(self, row: Any, now: datetime, result: DeliveryResult, error: DeliveryError | None) -> None:
        attempts = row.attempts + 1
        values: dict[str, Any] = {"attempts": attempts, "claimed_by": None, "lease_until": None}
        if error is None:
            values.update(status="sent", sent_at=now, last_error=None)
            result.sent.append(row.id)
        elif not error.retryable or (attempts >= self.max_attempts
                                     and now - row.created_at >= self.give_up_after):
            values.update(status="dead", last_error=str(error)[:2000])
            result.dead.append(row.id)
            log.error("outbox %d dead after %d attempts: %s", row.id, attempts, error)
        else:
            wait = getattr(error, "retry_after", None)
            delay = timedelta(seconds=wait) if wait else self.backoff(attempts)
            values.update(next_attempt_at=now + delay, last_error=str(error)[:2000])
            result.retried.append(row.id)
            log.warning("outbox %d attempt %d failed, retry in %s: %s", row.id, attempts, delay, error)
        with self.engine.db.begin() as conn:
            conn.execute(outbox.update().where(outbox.c.id == row.id, outbox.c.claimed_by == self.worker)
                         .values(**values))
