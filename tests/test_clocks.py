"""SLA clocks and timers on a virtual clock (``now=``), on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
import sqlalchemy as sa

from estateflow import ClockError, Engine, StaticDirectory
from estateflow._demo import DEMO_ACTORS
from estateflow.engine._calendar import BusinessCalendar
from tests.engine_helpers import SH, at, make_engine, open_ticket, snapshot, start_ticket, ticket_dir

FRI = at(2025, 9, 26, 10)  # 3 working days later is Tue 09-30 18:00 (Sun 09-28 was a make-up day)


@pytest.fixture
def engine(db_url, tmp_path):
    eng = make_engine(db_url, ticket_dir(tmp_path))
    yield eng
    eng.close()


def clock(engine, case, name="response", now=None):
    [status] = [c for c in engine.clocks(case.id, now=now) if c.name == name and c.status != "stopped"] or [None]
    return status


def kinds(engine, case):
    return [e.kind for e in engine.history(case.id) if e.kind.startswith(("clock", "escalation"))]


def outbox(engine):
    with engine.db.connect() as conn:
        return conn.execute(sa.text("SELECT event, recipient, subject, status FROM outbox ORDER BY id")).all()


def test_working_day_clock_due_at_close_of_business_with_make_up_sunday(engine):
    case = start_ticket(engine, FRI)
    status = clock(engine, case, now=FRI)
    assert status.due_at.astimezone(SH) == at(2025, 9, 30, 18)
    assert status.status == "running" and not status.breached


def test_warning_breach_and_each_ladder_step_fire_once_in_order(engine):
    case = start_ticket(engine, FRI)
    assert engine.tick(now=at(2025, 9, 29, 9)).fired == []
    warned = engine.tick(now=at(2025, 9, 29, 13, 31))  # 50% of 27 business hours after Fri: Mon 13:30
    assert [k for _, k, _ in warned.fired] == ["warn"]
    breach = engine.tick(now=at(2025, 9, 30, 18))
    assert [k for _, k, _ in breach.fired] == ["breach", "escalate#0"]
    assert engine.tick(now=at(2025, 9, 30, 18, 5)).fired == []
    # next step: 1 working day after the breach; 10-01..10-08 National Day holiday
    assert engine.tick(now=at(2025, 10, 8, 23)).fired == []
    last = engine.tick(now=at(2025, 10, 9, 18))
    assert [k for _, k, _ in last.fired] == ["escalate#1"]
    assert kinds(engine, case) == ["clock_start", "clock_warning", "clock_breach", "escalation", "escalation"]
    refreshed = engine.get(case.id)
    assert refreshed.priority == "high"
    status = clock(engine, case, now=at(2025, 10, 9, 18))
    assert status.breached and status.escalation_level == 2
    events = [(e, s) for e, _, _, s in outbox(engine)]
    assert events == [("warning", "sent"), ("breach", "sent"), ("escalation", "sent"), ("escalation", "sent")]
    assert outbox(engine)[-1].recipient == "boss"


def test_pause_moves_due_time_by_working_days_closed_inside_the_pause(engine):
    case = start_ticket(engine, FRI)
    engine.fire(case.id, "park", actor="worker", now=at(2025, 9, 29, 10))  # Monday
    assert engine.tick(now=at(2025, 10, 20)).fired == []  # no timers while paused
    engine.fire(case.id, "unpark", actor="worker", now=at(2025, 9, 30, 10))  # Tuesday: Mon's close fell inside
    status = clock(engine, case, now=at(2025, 9, 30, 10))
    assert status.due_at.astimezone(SH) == at(2025, 10, 9, 18)  # one working day later: Thu 10-09
    assert "clock_pause" in kinds(engine, case) and "clock_resume" in kinds(engine, case)


def test_extension_needs_recorded_consent_and_moves_the_timers(engine):
    case = start_ticket(engine, FRI)
    before = snapshot(engine)
    with pytest.raises(ClockError, match="consent"):
        engine.extend(case.id, "response", actor="clerk", approved_by="", add="2 working days")
    with pytest.raises(ClockError):
        engine.extend(case.id, "response", actor="clerk", approved_by="owner 张三")
    assert snapshot(engine) == before
    status = engine.extend(case.id, "response", actor="clerk", approved_by="owner 张三 by phone",
                           add="2 working days", now=at(2025, 9, 29, 9))
    assert status.due_at.astimezone(SH) == at(2025, 10, 10, 18)
    assert "breach" not in [k for _, k, _ in engine.tick(now=at(2025, 9, 30, 18, 1)).fired]
    assert [k for _, k, _ in engine.tick(now=at(2025, 10, 10, 18)).fired][-2:] == ["breach", "escalate#0"]
    event = [e for e in engine.history(case.id) if e.kind == "clock_extend"][0]
    assert event.data["approved_by"] == "owner 张三 by phone"
    assert event.data["old_due_at"].startswith("2025-09-30T10:00")


def test_stop_cancels_timers_and_records_met(engine):
    case = start_ticket(engine, FRI)
    engine.fire(case.id, "finish", actor="worker", data={"amount": "10"}, now=at(2025, 9, 29, 10))
    assert engine.tick(now=at(2025, 12, 1)).fired == []
    [status] = engine.clocks(case.id)
    assert status.status == "stopped" and status.extra["met"] is True


def test_reassign_restarts_the_clock_as_a_new_cycle(engine):
    case = start_ticket(engine, FRI)
    engine.reassign(case.id, assignee="other_worker", department="security", actor="clerk", now=at(2025, 9, 29, 10))
    cycles = engine.clocks(case.id, now=at(2025, 9, 29, 10))
    assert [(c.cycle, c.status) for c in cycles] == [(1, "stopped"), (2, "running")]
    assert cycles[1].due_at.astimezone(SH) == at(2025, 10, 10, 18)  # Mon + 3 WD: 09-30, 10-09, 10-10


def test_catch_up_after_a_week_of_downtime_fires_everything_once_in_due_order(engine):
    cases = [start_ticket(engine, FRI + timedelta(minutes=i)) for i in range(5)]
    result = engine.tick(now=at(2025, 10, 20))
    per_case = {c.number: [k for _, k, n in result.fired if n == c.number] for c in cases}
    assert all(v == ["warn", "breach", "escalate#0", "escalate#1"] for v in per_case.values())
    order = [(n, k) for _, k, n in result.fired]
    assert order.index((cases[0].number, "breach")) < order.index((cases[0].number, "escalate#1"))
    assert engine.tick(now=at(2025, 10, 21)).fired == []


def test_missing_calendar_year_registers_case_and_completes_the_clock_later(db_url, tmp_path):
    calendar = BusinessCalendar("cn", data_until=2025)
    engine = make_engine(db_url, ticket_dir(tmp_path), calendars=[calendar])
    case = start_ticket(engine, at(2025, 12, 30, 10))  # 3 WD would reach into 2026
    status = clock(engine, case)
    assert status.status == "awaiting_calendar" and status.due_at is None
    assert any(e == "calendar" for e, *_ in outbox(engine))
    # the admin loads 2026 (official: Jan 1 off, Jan 4 (Sunday) a make-up working day)
    days = {date(2026, 1, 1): False, date(2026, 1, 2): False, date(2026, 1, 3): False, date(2026, 1, 4): True}
    changed = engine.set_calendar_days("cn", days, covered_years=[2026], source="notice")
    assert changed == 1
    status = clock(engine, case)
    assert status.status == "running" and status.due_at.astimezone(SH) == at(2026, 1, 5, 18)  # Wed 12-31, Sun 01-04, Mon 01-05
    assert "clock_recomputed" in kinds(engine, case)
    engine.close()


def test_override_day_off_pushes_running_deadline_and_is_recorded(engine):
    case = start_ticket(engine, FRI)
    engine.set_calendar_days("cn", {date(2025, 9, 29): False}, note="typhoon closure")
    assert clock(engine, case).due_at.astimezone(SH) == at(2025, 10, 9, 18)


def test_shipped_repair_clock_three_or_seven_working_days_pauses_for_inspection(db_url):
    engine = Engine(db_url, create=True, directory=StaticDirectory(DEMO_ACTORS))
    case = engine.open("repair", {"channel": "hotline", "community": "lakeside", "summary": "漏水",
                                  "component": "bathroom", "handover_date": "2024-01-01"}, actor="wang", now=FRI)
    survey = clock(engine, case, "survey")
    assert survey.due_at.astimezone(SH) == at(2025, 9, 28, 18)  # next working day is the make-up Sunday
    f = engine.fire
    f(case.id, "survey", actor="li", data={"survey_participants": ["wang", "li"], "responsible_party": "contractor",
                                           "estimated_cost": "300"}, now=FRI)
    f(case.id, "dispatch_request", actor="li", data={"trades": ["plumbing", "tiling"]}, now=FRI)
    assert engine.get(case.id).data["work_order_type"] == "A"
    f(case.id, "approve", actor="sun", data={"approver": "sun", "approved_amount": "300"}, now=FRI)
    f(case.id, "dispatch", actor="li", data={"assignee": "li"}, now=FRI)
    repair = clock(engine, case, "repair")
    assert repair.target == "7 working days" and repair.due_at.astimezone(SH) == at(2025, 10, 13, 18)
    f(case.id, "complete", actor="li", data={"final_cost": "280"}, now=at(2025, 9, 29, 10))
    assert clock(engine, case, "repair").status == "paused"
    f(case.id, "reject_work", actor="wang", data={"customer_comment": "still leaking"}, now=at(2025, 9, 30, 10))
    assert clock(engine, case, "repair").due_at.astimezone(SH) == at(2025, 10, 14, 18)
    with pytest.raises(ClockError, match="customer"):
        engine.extend(case.id, "repair", actor="wang", approved_by=None, add="3 working days")
    engine.close()


def test_calendar_running_out_alerts_once_per_data_end_from_a_recurring_timer_row(db_url, tmp_path):
    engine = make_engine(db_url, ticket_dir(tmp_path), calendars=[BusinessCalendar("cn", data_until=2025)])
    first = engine.tick(now=at(2025, 11, 15, 9))  # data ends 2025-12-31, within 60 days: alert
    assert [k for _, k in first.system] == ["calendar_check"]
    assert engine.tick(now=at(2025, 11, 15, 12)).system == []  # next check is a day later
    second = engine.tick(now=at(2025, 11, 16, 9, 1))
    assert [k for _, k in second.system] == ["calendar_check"]
    with engine.db.connect() as conn:
        alerts = conn.execute(sa.text("SELECT recipient, subject FROM outbox WHERE event='system'")).all()
        pending = conn.execute(sa.text(
            "SELECT count(*) FROM timers WHERE kind='calendar_check' AND status='pending'")).scalar()
    assert sorted(r for r, _ in alerts) == ["role:admin", "role:cs_manager"]  # not repeated the next day
    assert "2025-12-31" in alerts[0].subject and pending == 1
    engine.close()


def test_a_failing_timer_is_retried_alone_then_parked_with_an_alert(db_url, tmp_path):
    workflows = ticket_dir(tmp_path)
    text = (workflows / "ticket.yaml").read_text(encoding="utf-8")
    (workflows / "ticket.yaml").write_text(  # the first ladder step fires 'finish', which needs an amount
        text.replace("{after: 0 minutes, notify: [assignee]}", "{after: 0 minutes, notify: [assignee], fire: finish}"),
        encoding="utf-8")
    engine = make_engine(db_url, workflows)
    bad = start_ticket(engine, FRI)
    good = start_ticket(engine, FRI, amount="5")
    results = [engine.tick(now=at(2025, 10, 20, 9, minute)) for minute in (0, 5, 10, 15)]
    failed = [t for r in results for t, _ in r.failed]
    assert len(failed) == 3 and len(set(failed)) == 1  # the same timer, tried alone three times
    assert results[2].parked == failed[:1] and results[3].failed == []
    assert engine.get(good.id).state == "done" and engine.get(bad.id).state == "working"
    with engine.db.connect() as conn:
        status = conn.execute(sa.text("SELECT status, last_error FROM timers WHERE id=:i"), {"i": failed[0]}).one()
        alert = conn.execute(sa.text("SELECT recipient FROM outbox WHERE event='system'")).scalars().all()
    assert status.status == "parked" and "amount" in status.last_error
    assert alert == ["role:admin"]
    engine.close()
