"""Delivering the outbox: at-least-once, with backoff, dead letters and shared rate limits.

Rows are claimed with a lease exactly like timers, so several daemons never send the same row
concurrently; the send happens outside any transaction (a slow SMTP server must not hold
database locks), and the result is recorded afterwards. A crash between a receiver's
acknowledgement and that record may resend the row: every message carries its idempotency
key for receivers to de-duplicate, and ``uncertain_sends`` on the row counts such possible repeats.
Rate limits are counted in ``rate_windows`` rows, so four daemons together still respect a
robot's 20 messages a minute.
"""

from __future__ import annotations

import hashlib
import logging
import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from ._errors import DeliveryError
from ._mail_layout import render_html
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
    digested: list[int] = field(default_factory=list)  # rows folded into a digest row (in ``sent``)


class OutboxDelivery:
    def __init__(self, engine: Engine, worker: str, *, max_attempts: int | None = None,
                 give_up_after: timedelta | None = None,
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
        """Lease up to ``batch`` due rows, plus every due row sharing a digest key with them.

        A row whose previous lease expired while still claimed was being sent by a worker that
        died: it may already have reached its receiver, so ``uncertain_sends`` counts it (SMTP
        has no idempotency key; these are the repeats `estateflow status` reports).
        """
        free = sa.or_(outbox.c.lease_until.is_(None), outbox.c.lease_until < now)
        due = (sa.select(outbox.c.id).where(outbox.c.status == "pending", outbox.c.next_attempt_at <= now, free)
               .order_by(outbox.c.next_attempt_at, outbox.c.id).limit(batch))
        with self.engine.db.begin() as conn:
            locking = conn.dialect.name == "postgresql"
            ids = conn.execute(due.with_for_update(skip_locked=True) if locking else due).scalars().all()
            if not ids:
                return []
            keys = conn.execute(sa.select(outbox.c.digest_key).distinct().where(
                outbox.c.id.in_(ids), outbox.c.digest_key.is_not(None))).scalars().all()
            if keys:
                siblings = sa.select(outbox.c.id).where(
                    outbox.c.digest_key.in_(keys), outbox.c.status == "pending", outbox.c.next_attempt_at <= now,
                    free, outbox.c.id.not_in(ids))
                ids = [*ids, *conn.execute(siblings.with_for_update(skip_locked=True) if locking
                                           else siblings).scalars().all()]
            conn.execute(outbox.update().where(outbox.c.id.in_(ids)).values(
                claimed_by=self.worker, lease_until=now + self.lease,
                uncertain_sends=outbox.c.uncertain_sends + sa.case((outbox.c.claimed_by.is_not(None), 1), else_=0)))
            return conn.execute(sa.select(outbox).where(outbox.c.id.in_(ids)).order_by(outbox.c.id)).all()

    def deliver(self, now: datetime, *, limit: int = 500) -> DeliveryResult:
        result = DeliveryResult()
        notifiers = self.engine.notifiers()  # a bad configuration fails before anything is claimed
        self.engine.delivery_policy()
        rows = self.claim(now, limit)
        for row in self._apply_policy(rows, now, result):
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
                self._defer([row], now + timedelta(seconds=limit_rule.per_seconds / max(limit_rule.count, 1)),
                            result)
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

    # -- quiet hours and digests -----------------------------------------------------------------
    def _apply_policy(self, rows: list[Any], now: datetime, result: DeliveryResult) -> list[Any]:
        """The rows to send now: quiet ones deferred to the end of their quiet period, digest
        groups folded into one new row (or deferred until their window closes)."""
        policy = self.engine.delivery_policy()
        ready: list[Any] = []
        groups: dict[str, list[Any]] = {}
        for row in rows:
            payload = row.payload or {}
            if not payload.get("urgent"):
                until = policy.quiet_until(row.channel, row.recipient, payload.get("who"), now)
                if until is not None:
                    self._defer([row], until, result)
                    continue
            if row.digest_key and policy.digest is not None:
                groups.setdefault(row.digest_key, []).append(row)
            else:
                ready.append(row)
        for key, members in groups.items():
            window_end = self._digest_window_end(key, policy.digest.window, now)
            if window_end is not None:
                self._defer(members, window_end, result)
                continue
            if len(members) == 1:
                ready.append(members[0])
            else:
                size = policy.digest.max_items
                ready.extend(self._fold(members[i:i + size], now, result) for i in range(0, len(members), size))
        return sorted(ready, key=lambda r: r.id)

    def _digest_window_end(self, key: str, window: timedelta, now: datetime) -> datetime | None:
        """None when the recipient may be messaged now (and the window restarts now); otherwise
        when the open window closes: a digest window is a budget of one message per window."""
        return self._take_slot(f"digest:{key}"[:200], 1, window, now)

    def _fold(self, members: list[Any], now: datetime, result: DeliveryResult) -> Any:
        """One digest row (claimed by us) replacing ``members``, which become ``digested``."""
        first = members[0]
        language = first.language
        items = [m.subject for m in members]
        context = {"count": len(members), "items": items}
        subject, body = self.engine.notices.render(None, "digest", language, context)
        page = render_html(subject, "", language, items=items) if self.engine.channel_wants_html(first.channel) \
            else None
        key = "digest:" + hashlib.sha256("|".join(m.idempotency_key for m in members).encode()).hexdigest()[:40]
        payload = {"event": "digest", "members": [m.id for m in members],
                   "cases": sorted({str((m.payload or {}).get("case")) for m in members}),
                   "who": (first.payload or {}).get("who"), "count": len(members)}
        with self.engine.db.begin() as conn:
            digest_id = conn.execute(outbox.insert().values(
                case_id=None, event="digest", channel=first.channel, recipient=first.recipient, language=language,
                subject=subject, body=body, html=page, payload=payload, idempotency_key=key, status="pending",
                attempts=0, next_attempt_at=now, claimed_by=self.worker, lease_until=now + self.lease,
                created_at=now, digest_key=None).returning(outbox.c.id)).scalar_one()
            conn.execute(outbox.update().where(outbox.c.id.in_([m.id for m in members]),
                                               outbox.c.claimed_by == self.worker)
                         .values(status="digested", sent_at=now, claimed_by=None, lease_until=None,
                                 last_error=f"sent in digest #{digest_id}"))
            row = conn.execute(sa.select(outbox).where(outbox.c.id == digest_id)).one()
        result.digested.extend(m.id for m in members)
        return row

    @staticmethod
    def _message(row: Any) -> Any:
        from ..notifiers import Message

        payload = dict(row.payload or {})
        return Message(channel=row.channel, recipient=row.recipient, subject=row.subject, body=row.body,
                       idempotency_key=row.idempotency_key, html=row.html, language=row.language,
                       data=payload, sms_template=payload.get("template"),
                       sms_params={k: str(v) for k, v in payload.items() if v is not None and k in ("case", "due_at")})

    def _take_rate(self, channel: str, rule: Any, now: datetime) -> bool:
        return self._take_slot(f"channel:{channel}", rule.count,
                               timedelta(seconds=rule.per_seconds), now) is None

    def _take_slot(self, key: str, budget: int, window: timedelta, now: datetime) -> datetime | None:
        """Take one of ``budget`` slots of the window kept in ``rate_windows`` under ``key``
        (a window opens at the first use after the last one ended); None when taken, else when
        the full window ends. Shared by every daemon, serialised per key on PostgreSQL."""
        with self.engine.db.begin() as conn:
            if conn.dialect.name == "postgresql":
                conn.execute(sa.text("SELECT pg_advisory_xact_lock(hashtext(:k))"), {"k": key})
            row = conn.execute(sa.select(rate_windows).where(rate_windows.c.key == key)).first()
            if row is None:
                conn.execute(rate_windows.insert().values(key=key, window_start=now, count=1))
            elif now - row.window_start >= window:
                conn.execute(rate_windows.update().where(rate_windows.c.key == key).values(window_start=now, count=1))
            elif row.count >= budget:
                return row.window_start + window
            else:
                conn.execute(rate_windows.update().where(rate_windows.c.key == key).values(count=row.count + 1))
            return None

    def _defer(self, rows: list[Any], when: datetime, result: DeliveryResult) -> None:
        ids = [row.id for row in rows]
        with self.engine.db.begin() as conn:
            conn.execute(outbox.update().where(outbox.c.id.in_(ids), outbox.c.claimed_by == self.worker)
                         .values(next_attempt_at=when, claimed_by=None, lease_until=None))
        result.deferred.extend(ids)

    def _exhausted(self, row: Any, attempts: int, now: datetime) -> bool:
        """Dead only after ``max_attempts`` *and* ``give_up_after`` (both from ``defaults:`` unless
        set here): eight attempts with backoff span only about an hour, and a receiver down for
        an hour must not turn the messages queued when it went down into dead letters."""
        defaults = self.engine.delivery_policy().defaults
        limit = self.max_attempts if self.max_attempts is not None else defaults.max_attempts
        patience = self.give_up_after if self.give_up_after is not None else defaults.give_up_after
        return attempts >= limit and now - row.created_at >= patience

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
        elif not error.retryable or self._exhausted(row, attempts, now):
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
