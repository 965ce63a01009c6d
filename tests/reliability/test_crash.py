"""Crash: SIGKILL a daemon at random moments under load, restart it, compare with the oracle.

While a client opens and moves cases through the API, a real ``estateflow run`` process ticks
timers on a virtual clock (8 virtual hours per real second, so warnings, breaches and
escalations keep falling due) and delivers the outbox to a real webhook receiver and a real
SMTP server, both honouring the idempotency key. Each trial starts a daemon, waits for its
scheduler to run, kills it with SIGKILL after a random delay and checks the database at once;
the next trial's daemon inherits whatever the kill left (leased timers, claimed messages, a
half-sent batch). At the end a last daemon drains everything and the receivers are compared
with the outbox.

Oracle: no transition lost (every call that returned is in history exactly once, in order;
no refused call is), no timer effect doubled or torn (history and outbox rows per fired timer,
notices per transition), no outbox row doubled, no key processed twice at a receiver, and
every message eventually processed. Repeats that reached a receiver (at-least-once delivery
after a kill between the receiver's answer and the database record) are counted and reported.
"""

from __future__ import annotations

import time
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from tests.engine_helpers import make_engine
from tests.reliability._client import Client
from tests.reliability._oracle import (outbox_stats, pending_work, timer_effect_problems, transition_log,
                                       transition_notice_problems)
from tests.reliability._procs import Daemon, VirtualClock, relay_workflows, write_config
from tests.receivers import Ledger, SmtpReceiver, WebhookReceiver
from tests.reliability.conftest import SIZES, sized

SH = ZoneInfo("Asia/Shanghai")
START = datetime(2025, 10, 9, 9, 0, tzinfo=SH)  # a Thursday after the National Day week
RATE = timedelta(hours=8)  # virtual time per real second


class Run:
    """Client, clock and receivers of one crash run; time follows the real clock at RATE."""

    def __init__(self, db_url: str, tmp_path, rng) -> None:
        self.db_url = db_url
        self.tmp_path = tmp_path
        self.rng = rng
        self.workflows = relay_workflows(tmp_path)
        self.engine = make_engine(db_url, self.workflows)
        self.clock = VirtualClock(tmp_path / "clock", START)
        self.hooks, self.mails = Ledger(), Ledger()
        self.webhook = WebhookReceiver(self.hooks).start()
        self.smtp = SmtpReceiver(self.mails).start()
        self.config = write_config(tmp_path / "estateflow.yaml", webhook_port=self.webhook.port,
                                   smtp_port=self.smtp.port)
        self.client = Client(self.engine, rng)
        self._t0 = time.monotonic()

    def work(self, seconds: float) -> None:
        """Let the client work (about 100 calls a second) while virtual time runs."""
        until = time.monotonic() + seconds
        while time.monotonic() < until:
            self.iteration()

    def iteration(self) -> None:
        now = self.clock.set(START + RATE * (time.monotonic() - self._t0))
        self.client.step(now)
        time.sleep(0.005)

    def daemon(self, name: str) -> Daemon:
        return Daemon(self.db_url, self.workflows, self.clock, self.tmp_path / f"{name}.log", config=self.config)

    def start_under_load(self, name: str) -> Daemon:
        daemon = self.daemon(name)
        deadline = time.monotonic() + 60
        while " started " not in daemon.output():
            assert daemon.alive(), daemon.output()[-3000:]
            assert time.monotonic() < deadline, f"{name} did not start"
            self.iteration()
        return daemon

    def leases_left(self, pid: int) -> int:
        """Timers and messages the killed daemon had claimed and not finished."""
        from tests.reliability._oracle import _rows

        pattern = f"%:{pid}:%"
        timers = _rows(self.db_url, "SELECT count(*) FROM timers WHERE status = 'pending' AND claimed_by LIKE :p",
                       p=pattern)[0][0]
        messages = _rows(self.db_url, "SELECT count(*) FROM outbox WHERE status = 'pending' AND claimed_by LIKE :p",
                         p=pattern)[0][0]
        return timers + messages

    def lost_and_doubled(self) -> tuple[int, int, list[str]]:
        """Compare the client's log with history; return (lost, doubled, descriptions)."""
        history = transition_log(self.db_url)
        lost = doubled = 0
        problems = []
        for case_id in set(self.client.log) | set(history):
            want, have = self.client.log.get(case_id, []), history.get(case_id, [])
            if want != have:
                missing = [e for e in want if e not in have]
                extra = len(have) - (len(want) - len(missing))
                lost += len(missing)
                doubled += max(extra, 0)
                problems.append(f"case {case_id}: client {want} != history {have}")
        return lost, doubled, problems

    def close(self) -> None:
        self.webhook.stop()
        self.smtp.stop()
        self.engine.close()


def drain(run: Run, daemon: Daemon, timeout: float = 180) -> None:
    """Until no due timer and no unsent message is left (twice in a row)."""
    deadline = time.monotonic() + timeout
    quiet = 0
    while quiet < 2:
        assert daemon.alive(), daemon.output()[-3000:]
        assert time.monotonic() < deadline, f"not drained: {pending_work(run.db_url, run.clock.now)} left"
        quiet = quiet + 1 if pending_work(run.db_url, run.clock.now) == 0 else 0
        time.sleep(0.3)


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_sigkill_at_random_moments_loses_and_doubles_nothing(backend, size, request, tmp_path, rng, figures):
    trials = sized(size, 10, 100)  # per backend: 20 in CI, 200 in the full run
    db_url = request.getfixturevalue("sqlite_url" if backend == "sqlite" else "pg_url")
    run = Run(db_url, tmp_path, rng)
    seed = rng.seed_value
    mid_batch = 0
    try:
        run.work(0.5)
        for trial in range(trials):
            daemon = run.start_under_load(f"trial{trial}")
            run.work(rng.uniform(0.0, 1.5))
            daemon.kill()
            if run.leases_left(daemon.pid):
                mid_batch += 1
            lost, doubled, problems = run.lost_and_doubled()
            torn = timer_effect_problems(db_url) + transition_notice_problems(db_url)
            assert not (problems or torn), f"seed {seed}, trial {trial}:\n" + "\n".join((problems + torn)[:20])
        # the end: no more calls; far in the future every ladder has run out
        run.clock.advance(timedelta(days=40))
        final = run.daemon("final")
        try:
            drain(run, final)
        finally:
            assert final.stop() == 0, final.output()[-3000:]
        lost, doubled, problems = run.lost_and_doubled()
        torn = timer_effect_problems(db_url) + transition_notice_problems(db_url)
        stats = outbox_stats(db_url)
        sent = stats["sent"]
        webhook_keys = {k for k, channel in sent.items() if channel != "email"}
        mail_keys = {k for k, channel in sent.items() if channel == "email"}
        figures(backend=backend, seed=seed, trials=trials, sigkills=trials, kills_mid_batch=mid_batch,
                calls=run.client.calls, refused=run.client.refused,
                timers_fired=sum(1 for k in sent if k.startswith("t")), messages=stats["total"],
                webhook_repeats=run.hooks.repeats, smtp_repeats=run.mails.repeats, lost=lost,
                doubled=doubled + stats["total"] - stats["distinct"] + len(run.hooks.changed) + len(run.mails.changed))
        assert not problems and not torn, f"seed {seed}:\n" + "\n".join((problems + torn)[:20])
        assert stats["total"] == stats["distinct"]
        assert set(stats["by_status"]) == {"sent"}, stats["by_status"]
        assert run.hooks.keys() == webhook_keys, f"seed {seed}: webhook receiver and outbox differ"
        assert run.mails.keys() == mail_keys, f"seed {seed}: SMTP receiver and outbox differ"
        assert not run.hooks.changed and not run.mails.changed, "a repeated key carried another message"
        assert mail_keys, "no closing notice was mailed: the workload is too small"
        assert mid_batch >= 1, f"seed {seed}: no kill landed mid-batch in {trials} trials"
    finally:
        run.close()
