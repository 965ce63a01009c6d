"""Outage: the webhook receiver and the SMTP server are down for two hours, then come back.

A daemon runs on a virtual clock with both channels configured. Cases are started so that
their 50% warnings fall due during the outage; the client keeps moving and closing cases, so
transition notices (webhook) and closing notices (e-mail) are queued during the outage too.
Both receivers are stopped (connection refused) for 120 virtual minutes, then started again on
the same ports. The outbox retries with backoff; afterwards every message must have reached its
receiver exactly once (processed once per idempotency key, no repeats, none dead), and the
daemon must still be the same process.
"""

from __future__ import annotations

import time
from datetime import timedelta

import sqlalchemy as sa

from tests.engine_helpers import at, make_engine
from tests.reliability._client import Client
from tests.reliability._oracle import _rows, outbox_stats, pending_work, timer_effect_problems
from tests.reliability._procs import Daemon, VirtualClock, relay_workflows, write_config
from tests.receivers import Ledger, SmtpReceiver, WebhookReceiver

OUTAGE = timedelta(hours=2)  # longer than 8 attempts with backoff (32-64 min)


def test_receivers_down_for_two_hours_lose_and_double_nothing(sqlite_url, tmp_path, rng, figures):
    workflows = relay_workflows(tmp_path)
    engine = make_engine(sqlite_url, workflows)
    client = Client(engine, rng)
    for i in range(30):  # started a minute apart: their warnings fall due a minute apart
        case_id = client.open(at(2025, 10, 13, 9, i))
        client.fire(case_id, "start", "clerk", at(2025, 10, 13, 9, i, 30), assignee="worker", department="eng")
    from estateflow.engine._schema import timers

    with engine.db.connect() as conn:
        first_warning = conn.execute(sa.select(sa.func.min(timers.c.due_at)).where(timers.c.kind == "warn")).scalar()
    clock = VirtualClock(tmp_path / "clock", first_warning - timedelta(minutes=15))
    hooks, mails = Ledger(), Ledger()
    webhook, smtp = WebhookReceiver(hooks).start(), SmtpReceiver(mails).start()
    config = write_config(tmp_path / "estateflow.yaml", webhook_port=webhook.port, smtp_port=smtp.port)
    daemon = Daemon(sqlite_url, workflows, clock, tmp_path / "daemon.log", config=config)
    seed = rng.seed_value

    def minutes(n: int, pause: float = 0.03) -> None:
        """n virtual minutes, one client call each (real time lets the daemon tick)."""
        for _ in range(n):
            client.step(clock.advance(timedelta(minutes=1)))
            time.sleep(pause)
            assert daemon.alive(), daemon.output()[-3000:]

    try:
        daemon.wait_started()
        minutes(10)
        webhook.stop()
        smtp.stop()
        time.sleep(0.2)  # a request that was in flight when the receivers stopped
        before = hooks.processed + mails.processed
        outage_start = clock.now
        minutes(int(OUTAGE.total_seconds() // 60))
        during = hooks.processed + mails.processed - before
        queued = _rows(sqlite_url, "SELECT count(*) FROM outbox WHERE status = 'pending' AND attempts >= 1")[0][0]
        webhook.start()
        smtp.start()
        # back: retries come at their backoff times (at most an hour apart)
        deadline = time.monotonic() + 120
        while pending_work(sqlite_url, clock.now) or clock.now < outage_start + OUTAGE + timedelta(minutes=30):
            assert time.monotonic() < deadline, f"seed {seed}: {pending_work(sqlite_url, clock.now)} left"
            clock.advance(timedelta(minutes=2))
            time.sleep(0.05)
            assert daemon.alive(), daemon.output()[-3000:]
        time.sleep(0.5)
    finally:
        code = daemon.stop()
        webhook.stop()
        smtp.stop()
        engine.close()
    assert code == 0, daemon.output()[-3000:]

    stats = outbox_stats(sqlite_url)
    sent = stats["sent"]
    retried, max_attempts = _rows(sqlite_url, "SELECT count(*), max(attempts) FROM outbox WHERE attempts > 1")[0]
    lost = len(set(sent) - hooks.keys() - mails.keys()) + stats["by_status"].get("dead", 0) \
        + stats["by_status"].get("pending", 0)
    doubled = stats["total"] - stats["distinct"] + len(hooks.changed) + len(mails.changed)
    figures(seed=seed, outage_minutes=int(OUTAGE.total_seconds() // 60), messages=stats["total"],
            queued_during_outage=queued, retried=retried, max_attempts=max_attempts,
            webhook_repeats=hooks.repeats, smtp_repeats=mails.repeats, lost=lost, doubled=doubled)
    assert during == 0, "a receiver got messages while it was down"
    assert queued >= 20 and retried >= 20, "the outage did not hold up enough messages to mean anything"
    assert any(k.startswith("t") for k in sent) and any(ch == "email" for ch in sent.values())
    assert set(stats["by_status"]) == {"sent"}, stats["by_status"]
    assert hooks.keys() == {k for k, ch in sent.items() if ch != "email"}
    assert mails.keys() == {k for k, ch in sent.items() if ch == "email"}
    assert hooks.repeats == mails.repeats == 0 and doubled == 0
    assert timer_effect_problems(sqlite_url) == []
    assert "attempt" in daemon.output() and "failed" in daemon.output()
