"""Timers fired as a batch (one statement per table) keep each timer's effects all or nothing.

Faults are real: a clock row pointing at a calendar that does not exist (fails while the
batch is computed) and a database trigger refusing one timer's history row (fails while the
batch is written), on SQLite and PostgreSQL.
"""

from __future__ import annotations

import sqlalchemy as sa

from tests.engine_helpers import at, make_engine, start_ticket, ticket_dir

FRI = at(2025, 9, 26, 10)  # the response clock is due Tue 09-30 18:00
WARNED = at(2025, 9, 30, 9)  # the warnings (at 50%) are due, the breaches not yet
AFTER_DUE = at(2025, 10, 1, 9)


def rows(engine, sql, **params):
    with engine.db.connect() as conn:
        return conn.execute(sa.text(sql), params).all()


def clock_history(engine, case_id):
    return [k for (k,) in rows(engine, "SELECT kind FROM case_events WHERE case_id=:c AND kind IN "
                                       "('clock_warning', 'clock_breach', 'escalation') ORDER BY id", c=case_id)]


def test_a_timer_failing_inside_a_batch_fails_alone_and_the_rest_of_the_batch_fires(db_url, tmp_path):
    engine = make_engine(db_url, ticket_dir(tmp_path))
    cases = [start_ticket(engine, FRI) for _ in range(5)]
    bad = cases[2]
    with engine.db.begin() as conn:
        conn.execute(sa.text("UPDATE sla_clocks SET calendar='nowhere' WHERE case_id=:c"), {"c": bad.id})
    assert engine.tick(now=WARNED).count == 5  # so each breach is the first timer of its case in its batch
    results = [engine.tick(now=AFTER_DUE.replace(minute=m)) for m in (0, 5, 10, 15)]
    failed = [t for r in results for t, _ in r.failed]
    assert len(failed) == 3 and len(set(failed)) == 1 and "nowhere" in results[0].failed[0][1]
    assert results[2].parked == failed[:1]
    for case in cases:
        expected = ["clock_warning"] if case is bad else ["clock_warning", "clock_breach", "escalation"]
        assert clock_history(engine, case.id) == expected  # each once, in due order
    [(breached, level)] = rows(engine, "SELECT breached_at, escalation_level FROM sla_clocks WHERE case_id=:c",
                               c=bad.id)
    assert breached is None and level == 0
    assert rows(engine, "SELECT count(*) FROM outbox WHERE case_id=:c AND event='breach'", c=bad.id) == [(0,)]
    assert rows(engine, "SELECT count(*) FROM outbox WHERE event='breach'") == [(4,)]
    engine.close()


def _refuse_breach_history(engine, case_id: int) -> None:
    with engine.db.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(sa.text(
                "CREATE FUNCTION refuse_breach() RETURNS trigger AS $$ BEGIN "
                f"IF NEW.case_id = {case_id} AND NEW.kind = 'clock_breach' THEN "
                "RAISE EXCEPTION 'refused by test trigger'; END IF; RETURN NEW; END $$ LANGUAGE plpgsql"))
            conn.execute(sa.text("CREATE TRIGGER refuse BEFORE INSERT ON case_events "
                                 "FOR EACH ROW EXECUTE FUNCTION refuse_breach()"))
        else:
            conn.execute(sa.text(
                f"CREATE TRIGGER refuse BEFORE INSERT ON case_events WHEN NEW.case_id = {case_id} "
                "AND NEW.kind = 'clock_breach' BEGIN SELECT RAISE(ABORT, 'refused by test trigger'); END"))


def test_a_write_refused_for_one_timer_redoes_the_batch_one_by_one_and_only_that_timer_fails(
        db_url, tmp_path, caplog):
    engine = make_engine(db_url, ticket_dir(tmp_path))
    cases = [start_ticket(engine, FRI) for _ in range(6)]
    bad = cases[3]
    _refuse_breach_history(engine, bad.id)
    assert engine.tick(now=WARNED).count == 6
    with caplog.at_level("WARNING", logger="estateflow.engine._timers"):
        result = engine.tick(now=AFTER_DUE)
    assert "firing them one by one" in caplog.text  # the batch write failed as a whole first
    assert [t for t, _ in result.failed] == [t for (t,) in rows(
        engine, "SELECT id FROM timers WHERE case_id=:c AND kind='breach'", c=bad.id)]
    assert "refused by test trigger" in result.failed[0][1]
    fired = [(number, kind) for _, kind, number in result.fired]
    assert len(fired) == len(set(fired)) == 5 * 2  # 5 breaches and their first escalations
    for case in cases:
        expected = ["clock_warning"] if case is bad else ["clock_warning", "clock_breach", "escalation"]
        assert clock_history(engine, case.id) == expected
    [(status, attempts, claimed)] = rows(engine, "SELECT status, attempts, claimed_by FROM timers "
                                                 "WHERE case_id=:c AND kind='breach'", c=bad.id)
    assert (status, attempts, claimed) == ("pending", 1, None)
    [(breached,)] = rows(engine, "SELECT breached_at FROM sla_clocks WHERE case_id=:c", c=bad.id)
    assert breached is None  # the clock update of the refused timer rolled back with it
    assert rows(engine, "SELECT count(*) FROM outbox WHERE case_id=:c AND event='breach'", c=bad.id) == [(0,)]
    assert rows(engine, "SELECT count(*) FROM timers WHERE case_id=:c AND kind='escalate'", c=bad.id) == [(0,)]
    engine.close()


def test_two_due_timers_of_one_case_in_one_batch_fire_in_due_order_with_the_second_seeing_the_first(
        db_url, tmp_path):
    engine = make_engine(db_url, ticket_dir(tmp_path))
    case = start_ticket(engine, FRI)
    result = engine.tick(now=AFTER_DUE)
    assert [k for _, k, _ in result.fired] == ["warn", "breach", "escalate#0"]
    assert clock_history(engine, case.id) == ["clock_warning", "clock_breach", "escalation"]
    [(breached, level)] = rows(engine, "SELECT breached_at, escalation_level FROM sla_clocks WHERE case_id=:c",
                               c=case.id)
    assert breached is not None and level == 1
    assert engine.tick(now=AFTER_DUE).fired == []  # nothing twice
    engine.close()
