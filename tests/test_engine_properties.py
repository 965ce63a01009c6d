"""Invariants under random use (hypothesis) and under concurrent use (threads on PostgreSQL)."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from estateflow import ConflictError, EstateflowError, TriggerNotAllowed
from tests.engine_helpers import ACTORS, at, make_engine, open_ticket, snapshot, start_ticket, ticket_dir

TRIGGERS = ["start", "park", "unpark", "finish", "nonsense"]
FIELD_VALUES = st.fixed_dictionaries({}, optional={
    "assignee": st.sampled_from(["worker", "", "x" * 3]),
    "department": st.sampled_from(["eng", "security"]),
    "amount": st.sampled_from(["0", "999.99", "1000", "1000.01", "-5", "abc", 12, None]),
    "note": st.text(max_size=5),
    "bogus": st.just(1),
})


def run_machine(db_url, tmp_path):
    engine = make_engine(db_url, ticket_dir(tmp_path))
    spec = engine.workflows().get(None, "ticket").spec

    class Random(RuleBasedStateMachine):
        @initialize()
        def setup(self):
            self.now = at(2025, 9, 26, 10)
            self.case = open_ticket(engine, self.now)

        @rule(trigger=st.sampled_from(TRIGGERS), actor=st.sampled_from([a.id for a in ACTORS]), data=FIELD_VALUES,
              minutes=st.integers(0, 3000))
        def fire(self, trigger, actor, data, minutes):
            self.now += timedelta(minutes=minutes)
            before = snapshot(engine)
            try:
                self.case = engine.fire(self.case.id, trigger, actor=actor, data=data, now=self.now)
            except EstateflowError:
                assert snapshot(engine) == before, "a refused call wrote something"

        @rule(minutes=st.integers(0, 10_000))
        def tick(self, minutes):
            self.now += timedelta(minutes=minutes)
            engine.tick(now=self.now)

        @invariant()
        def state_exists_and_history_replays(self):
            case = engine.get(self.case.id)
            assert case.state in spec.states
            state = None
            for event in engine.history(case.id):
                if event.kind in ("opened", "transition", "force_state"):
                    assert event.from_state in (None, state)
                    state = event.to_state
            assert state == case.state

    Random.TestCase.settings = settings(max_examples=50, stateful_step_count=12, deadline=None,
                                        suppress_health_check=list(HealthCheck))
    try:
        Random.TestCase().runTest()
    finally:
        engine.close()


def test_random_triggers_keep_state_valid_and_refusals_write_nothing(db_url, tmp_path):
    run_machine(db_url, tmp_path)


def run_threads(count: int, target) -> None:
    threads = [threading.Thread(target=target, args=(i,)) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def transitions_of(engine, case) -> int:
    with engine.db.connect() as conn:
        return conn.execute(sa.text("SELECT count(*) FROM case_events WHERE case_id=:c AND kind='transition'"),
                            {"c": case.id}).scalar()


def test_eight_threads_on_one_case_one_winner_no_lost_update(pg_url, tmp_path):
    engine = make_engine(pg_url, ticket_dir(tmp_path))
    case = start_ticket(engine, at(2025, 9, 26, 10))
    barrier = threading.Barrier(8)
    outcomes: list[object] = []

    def worker(i: int) -> None:
        barrier.wait()
        try:
            done = engine.fire(case.id, "park" if i % 2 else "finish", actor="worker",
                               data={"amount": str(i), "note": f"thread {i}"}, expected_version=case.version,
                               now=at(2025, 9, 26, 11))
            outcomes.append(done)
        except (ConflictError, TriggerNotAllowed) as exc:
            outcomes.append(exc)

    run_threads(8, worker)
    winners = [o for o in outcomes if not isinstance(o, Exception)]
    assert len(outcomes) == 8 and len(winners) == 1
    final = engine.get(case.id)
    assert final.version == case.version + 1 and final.data["note"] == winners[0].data["note"]
    assert transitions_of(engine, case) == 2  # start + the one winner
    engine.close()


def test_eight_threads_without_expected_version_serialise_without_losing_updates(pg_url, tmp_path):
    engine = make_engine(pg_url, ticket_dir(tmp_path))
    case = start_ticket(engine, at(2025, 9, 26, 10))
    errors: list[Exception] = []

    def worker(i: int) -> None:
        for _ in range(5):
            try:
                current = engine.get(case.id)
                engine.fire(case.id, "park" if current.state == "working" else "unpark", actor="worker",
                            now=at(2025, 9, 26, 11))
            except (ConflictError, TriggerNotAllowed):
                continue
            except Exception as exc:  # pragma: no cover - any other error fails the test
                errors.append(exc)

    run_threads(8, worker)
    assert errors == []
    assert engine.get(case.id).version == transitions_of(engine, case) + 1  # every committed move bumped the version exactly once
    engine.close()
