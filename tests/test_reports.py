"""Report figures against hand-computed fixtures, on both backends.

Cases are walked through the real engine on a virtual clock (``now=``), so every figure comes
from the rows the engine itself wrote: clock cycles, breach and escalation events, closing
times. The expected numbers are worked out by hand in the comments next to each scenario.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from estateflow import RoleNotAllowed

from .helpers import local, make_engine, years_before

UTC = timezone.utc
COMPLAINT = {"channel": "hotline", "customer_name": "张三", "phone": "13800138000", "unit": "3-1201",
             "summary": "电梯噪音大"}
REPAIR = {"channel": "hotline", "customer_name": "王五", "phone": "13700137000", "building": "2",
          "unit": "2-0302", "summary": "卫生间渗水到楼下", "category": "leak", "component": "bathroom"}


@pytest.fixture
def engine(db_url):
    with make_engine(db_url) as engine:
        yield engine


def complaint(engine, when, community="lakeside", actor="wang", **extra):
    return engine.open("complaint", {**COMPLAINT, "community": community, **extra}, actor=actor, now=when)


def assign(engine, case, when, category="service"):
    return engine.fire(case.id, "assign", actor="wang", now=when, data={
        "category": category, "severity": "ordinary", "department": "engineering", "assignee": "li"})


def repair(engine, when):
    data = {**REPAIR, "community": "lakeside", "handover_date": years_before(when.date(), 3)}
    return engine.open("repair", data, actor="wang", now=when)


def survey(engine, case, when):
    return engine.fire(case.id, "survey", actor="li", now=when, data={
        "survey_participants": ["wang", "li"], "responsible_party": "contractor", "estimated_cost": "300"})


# -- the week 2025-W37 (Mon 09-08 .. Sun 09-14 in Shanghai; five working days, no make-up day) -----
NOW = local(2025, 9, 15, 9, 0)  # the Monday after, when the weekly report goes out


@pytest.fixture
def week37(engine):
    """c1 (received Sun 09-07 23:30 = 15:30 UTC, week 36) assigned Monday, never reports back:
    feedback due Thu 09-11 18:00 breaches (tick Fri 09:00, escalation level 1, level 2 Sat).
    c2 received Mon 00:10, assigned Mon 09:00, reported back Tue 10:00 (25 h), resolved and
    closed Wed. r1 (repair) received Tue 10:00, survey due Wed 18:00, breached Thu 09:00 (level
    1), surveyed Thu 10:00 (48 h, late). c5 in hillside Wed. c3 received Sun 09-14 23:30 (15:30
    UTC, still week 37). c4 received Mon 09-15 00:00 (week 38)."""
    e = engine
    cases = {}
    cases["c1"] = c1 = complaint(e, local(2025, 9, 7, 23, 30))
    assign(e, c1, local(2025, 9, 8, 9, 0), category="quality")
    cases["c2"] = c2 = complaint(e, local(2025, 9, 8, 0, 10))
    assign(e, c2, local(2025, 9, 8, 9, 0))
    e.fire(c2.id, "report_back", actor="li", data={"feedback": "已联系电梯公司"}, now=local(2025, 9, 9, 10, 0))
    e.fire(c2.id, "resolve", actor="li", data={"resolution": "更换导轨垫片"}, now=local(2025, 9, 10, 10, 0))
    e.fire(c2.id, "confirm", actor="wang", now=local(2025, 9, 10, 11, 0))
    e.fire(c2.id, "callback", actor="zhao", data={"callback_rating": "satisfied"}, now=local(2025, 9, 10, 15, 0))
    cases["r1"] = r1 = repair(e, local(2025, 9, 9, 10, 0))
    cases["c5"] = complaint(e, local(2025, 9, 10, 11, 0), community="hillside", actor="gao")
    e.tick(now=local(2025, 9, 11, 9, 0))
    survey(e, r1, local(2025, 9, 11, 10, 0))
    e.tick(now=local(2025, 9, 12, 9, 0))
    e.tick(now=local(2025, 9, 13, 10, 0))
    cases["c3"] = complaint(e, local(2025, 9, 14, 23, 30))
    cases["c4"] = complaint(e, local(2025, 9, 15, 0, 0))
    e.tick(now=NOW)
    return cases


def figures(row):
    return (row.opened, row.closed, row.open_at_end, row.overdue_at_end, row.clocks_stopped, row.clocks_met)


def test_weekly_report_of_a_shanghai_week_matches_the_hand_count(engine, week37):
    report = engine.report_weekly(week="2025-W37", now=NOW, lang="en")
    assert report.period.start_utc == datetime(2025, 9, 7, 16, 0, tzinfo=UTC)
    assert report.period.end_utc == datetime(2025, 9, 14, 16, 0, tzinfo=UTC)
    assert [d.day for d in report.working_days] == [8, 9, 10, 11, 12]
    # opened c2 c3 r1 c5; closed c2; open at the end c1 c3 r1 c5; overdue c1 (feedback);
    # clocks stopped: c2 feedback + callback (met), r1 survey (late); the soft resolution clock
    # of c2 is left out of the per-case rates.
    assert figures(report.totals) == (4, 1, 4, 1, 3, 2)
    assert report.totals.on_time_rate == pytest.approx(2 / 3)
    by_handler = {f.key: figures(f) for f in report.by_handler}
    assert by_handler == {"li": (1, 1, 1, 1, 2, 2), None: (3, 0, 3, 0, 1, 0)}
    assert by_handler_label(report)["li"] == "li 李工"
    assert {f.key: figures(f) for f in report.by_department} == {"engineering": (2, 1, 2, 1, 3, 2),
                                                                 None: (2, 0, 2, 0, 0, 0)}
    assert {f.key: figures(f) for f in report.by_category} == {
        "quality": (0, 0, 1, 1, 0, 0), "service": (1, 1, 0, 0, 2, 2), "leak": (1, 0, 1, 0, 1, 0),
        None: (2, 0, 2, 0, 0, 0)}
    assert {f.key: figures(f) for f in report.by_workflow} == {"complaint": (3, 1, 3, 1, 2, 2),
                                                               "repair": (1, 0, 1, 0, 1, 0)}
    clocks = {(c.workflow, c.clock): (c.soft, c.started, c.stopped, c.met, c.breaches, c.overdue_at_end)
              for c in report.by_clock}
    assert clocks == {
        ("complaint", "callback"): (False, 1, 1, 1, 0, 0),
        ("complaint", "feedback"): (False, 2, 1, 1, 1, 1),
        # c1's resolution target (7 days from Sun 09-07 23:30) passed Sun 09-14 23:30: overdue at
        # the end of the week, but soft, so c1 is overdue once (feedback) in the case figures.
        ("complaint", "resolution"): (True, 3, 1, 1, 0, 1),
        ("repair", "survey"): (False, 1, 1, 0, 1, 0),
    }
    assert [(d.day, o, c) for d, o, c in report.per_day] == [(8, 1, 0), (9, 1, 0), (10, 1, 1), (11, 0, 0),
                                                             (12, 0, 0), (13, 0, 0), (14, 1, 0)]
    numbers = {v.id: k for k, v in week37.items()}
    assert report.unresolved_total == 4
    listed = [(numbers[engine.get(c.number).id], c.overdue) for c in report.unresolved]
    assert listed == [("c1", True), ("r1", False), ("c5", False), ("c3", False)]
    first = report.unresolved[0]
    assert first.next_due_at == local(2025, 9, 11, 18, 0)  # feedback, before resolution (09-14 23:30)
    assert first.age_days == pytest.approx(7 + 0.5 / 24)  # Sun 23:30 → Mon 00:00 a week later
    assert first.unit == "***" and report.masked
    assert report.unresolved[3].next_due_at == local(2025, 9, 21, 23, 30)
    assert report.major == []


def by_handler_label(report):
    return {f.key: f.label for f in report.by_handler}


def test_a_case_received_sunday_2330_in_shanghai_belongs_to_that_week(engine, week37):
    # c1 was received Sun 09-07 23:30 local = 15:30 UTC: week 36, though UTC says Sunday too.
    w36 = engine.report_weekly(week="2025-W36", now=NOW)
    assert (w36.totals.opened, w36.totals.open_at_end) == (1, 1)
    w38 = engine.report_weekly(week="2025-W38", now=NOW)  # only c4 so far (Mon 00:00 sharp)
    assert w38.totals.opened == 1
    assert engine.report_weekly(now=NOW).period.label == "2025-W37"  # default: the last full week
    # Half an hour into Monday in Shanghai is still Sunday in UTC: the last full week is W37 all the same.
    assert engine.report_weekly(now=datetime(2025, 9, 14, 16, 30, tzinfo=UTC)).period.label == "2025-W37"
    assert engine.report_weekly(now=datetime(2025, 9, 14, 15, 30, tzinfo=UTC)).period.label == "2025-W36"


def test_weekly_report_filters_by_community_department_and_the_readers_communities(engine, week37):
    lakeside = engine.report_weekly(week="2025-W37", community="lakeside", now=NOW)
    assert figures(lakeside.totals) == (3, 1, 3, 1, 3, 2)
    assert figures(engine.report_weekly(week="2025-W37", department="engineering", now=NOW).totals) == \
        (2, 1, 2, 1, 3, 2)
    assert figures(engine.report_weekly(week="2025-W37", workflow="repair", now=NOW).totals) == (1, 0, 1, 0, 1, 0)
    # gao serves hillside only: the report shows c5 and nothing of lakeside.
    hillside = engine.report_weekly(week="2025-W37", actor="gao", now=NOW)
    assert figures(hillside.totals) == (1, 0, 1, 0, 0, 0)
    assert [c.number for c in hillside.unresolved] == [week37["c5"].number]


def test_sla_report_counts_each_cycle_once_with_hours_and_escalation_levels(engine, week37):
    report = engine.report_sla(week="2025-W37", now=NOW)
    got = {(c.workflow, c.clock): (c.started, c.met, c.breached, c.running, c.median_hours, c.p90_hours,
                                   c.levels) for c in report.clocks}
    assert got == {
        ("complaint", "callback"): (1, 1, 0, 0, 4.0, 4.0, {}),           # Wed 11:00 → 15:00
        ("complaint", "feedback"): (2, 1, 1, 0, 25.0, 25.0, {0: 0, 2: 1}),  # c2 25 h; c1 level 2
        ("complaint", "resolution"): (3, 1, 0, 2, pytest.approx(57 + 50 / 60), pytest.approx(57 + 50 / 60), {}),
        ("repair", "survey"): (1, 0, 1, 0, 48.0, 48.0, {0: 0, 1: 1}),    # Tue 10:00 → Thu 10:00, late
    }
    feedback = [c for c in report.clocks if c.clock == "feedback"][0]
    assert feedback.on_time_rate == 0.5


def test_sla_percentiles_interpolate_and_a_breach_cleared_by_extension_still_counts(engine):
    """Six surveys opened Mon 2025-09-08 09:00 (due Tue 18:00): five done after 1, 2, 3, 4 and 10
    hours; the sixth breaches (tick Wed 09:00, level 1), gets two more working days with the
    customer's consent — which clears ``breached_at`` — and is done Wed 10:00 (49 h), 'in time'
    for its new due date. History keeps the breach: 5 met, 1 breached. Hours [1,2,3,4,10,49]:
    median (3+4)/2 = 3.5, p90 at position 4.5 = 10 + 0.5 × 39 = 29.5 (as percentile_cont)."""
    start = local(2025, 9, 8, 9, 0)
    cases = [repair(engine, start) for _ in range(6)]
    for case, hours in zip(cases, (1, 2, 3, 4, 10)):
        survey(engine, case, start + timedelta(hours=hours))
    engine.tick(now=local(2025, 9, 10, 9, 0))
    status = engine.extend(cases[5].id, "survey", actor="sun", approved_by="王五", add="2 working days",
                           now=local(2025, 9, 10, 9, 30))
    assert status.breached_at is None
    survey(engine, cases[5], local(2025, 9, 10, 10, 0))
    [clock] = [c for c in engine.clocks(cases[5].id) if c.name == "survey"]
    assert clock.extra["met"] is True  # the clock row alone would call it met
    [survey_figures] = engine.report_sla(week="2025-W37", workflow="repair", now=NOW).clocks
    assert (survey_figures.started, survey_figures.met, survey_figures.breached, survey_figures.running) == (6, 5, 1, 0)
    assert survey_figures.median_hours == pytest.approx(3.5)
    assert survey_figures.p90_hours == pytest.approx(29.5)
    assert survey_figures.levels == {0: 0, 1: 1}
    assert survey_figures.on_time_rate == pytest.approx(5 / 6)


def test_sla_counts_a_running_clock_past_its_due_time_as_breached_before_any_tick(engine):
    repair(engine, local(2025, 9, 8, 9, 0))  # survey due Tue 09-09 18:00; no tick ever ran
    before = engine.report_sla(week="2025-W37", now=local(2025, 9, 9, 17, 0)).clocks[0]
    after = engine.report_sla(week="2025-W37", now=local(2025, 9, 9, 18, 30)).clocks[0]
    assert (before.running, before.breached) == (1, 0)
    assert (after.running, after.breached) == (0, 1)


# -- National Day 2025: Oct 1–8 off, Sun 09-28 and Sat 10-11 working --------------------------------
def test_weekly_report_of_the_national_day_week(engine):
    """W40 (Mon 09-29 .. Sun 10-05) has two working days. A complaint assigned Fri 09-26 10:00 is
    due Tue 09-30 18:00 (Sun 09-28 was a working day) and is overdue at the end of the week; one
    assigned Tue 09-30 10:00 is due only Sat 10-11 18:00 (Oct 9, 10 and the make-up Saturday)."""
    early = complaint(engine, local(2025, 9, 26, 9, 0))
    assign(engine, early, local(2025, 9, 26, 10, 0))
    late = complaint(engine, local(2025, 9, 30, 9, 0))
    assign(engine, late, local(2025, 9, 30, 10, 0))
    now = local(2025, 10, 9, 9, 0)
    engine.tick(now=now)
    w40 = engine.report_weekly(week="2025-W40", now=now)
    assert [d.isoformat() for d in w40.working_days] == ["2025-09-29", "2025-09-30"]
    assert figures(w40.totals) == (1, 0, 2, 1, 0, 0)
    due = {c.number: (c.next_due_at, c.overdue) for c in w40.unresolved}
    # The late one's next due time is its soft one-week resolution target (Tue 10-07 09:00).
    assert due == {early.number: (local(2025, 9, 30, 18, 0), True),
                   late.number: (local(2025, 10, 7, 9, 0), False)}
    [feedback_clock] = [c for c in engine.clocks(late.id) if c.name == "feedback"]
    assert feedback_clock.due_at == local(2025, 10, 11, 18, 0)
    w39 = engine.report_weekly(week="2025-W39", now=now)
    assert len(w39.working_days) == 6  # Mon–Fri and the make-up Sunday 09-28
    [feedback] = [c for c in w40.by_clock if c.clock == "feedback"]
    assert (feedback.started, feedback.breaches, feedback.overdue_at_end) == (1, 0, 1)  # breach recorded at the tick


# -- the register -------------------------------------------------------------------------------------
def test_register_lists_the_period_in_order_masked_by_default(engine, week37):
    register = engine.report_register(week="2025-W37", now=NOW)
    assert register.masked
    assert [r.number for r in register.rows] == [week37[k].number for k in ("c2", "r1", "c5", "c3")]
    c2 = register.rows[0]
    assert (c2.channel, c2.customer, c2.phone, c2.unit) == ("来电", "张*", "138****8000", "***")
    assert (c2.state, c2.result, c2.callback, c2.handler, c2.department) == \
        ("已关闭", "更换导轨垫片", "满意", "li 李工", "engineering")
    assert c2.received_at == local(2025, 9, 8, 0, 10)
    lakeside = engine.report_register(week="2025-W37", community="lakeside", lang="en", now=NOW)
    assert [r.number for r in lakeside.rows] == [week37[k].number for k in ("c2", "r1", "c3")]
    assert (lakeside.rows[0].channel, lakeside.rows[0].state, lakeside.rows[0].callback) == \
        ("Hotline", "Closed", "Satisfied")


def test_register_shows_personal_data_only_to_an_allowed_actor_who_asks(engine, week37):
    shown = engine.report_register(week="2025-W37", community="lakeside", actor="wang", unmasked=True, now=NOW)
    assert not shown.masked
    assert (shown.rows[0].customer, shown.rows[0].phone, shown.rows[0].unit) == ("张三", "13800138000", "3-1201")
    # Merely naming an allowed actor is not a request to unmask.
    assert engine.report_register(week="2025-W37", actor="wang", now=NOW).rows[0].customer == "张*"
    # li is a repair lead: repair's personal_data_roles name him, complaint's do not.
    partial = engine.report_register(week="2025-W37", actor="li", unmasked=True, now=NOW)
    assert partial.masked
    assert [(r.number, r.customer) for r in partial.rows][:2] == [(week37["c2"].number, "张*"),
                                                                  (week37["r1"].number, "王五")]
    with pytest.raises(RoleNotAllowed, match="personal data"):  # ma, a security handler: neither
        engine.report_register(week="2025-W37", actor="ma", unmasked=True, now=NOW)
    with pytest.raises(ValueError, match="--as"):
        engine.report_register(week="2025-W37", unmasked=True, now=NOW)


# -- ratings ------------------------------------------------------------------------------------------
def repair_through_callback(engine, when, worker, quality, attitude, rating, rework=False):
    case = repair(engine, when)
    clock = iter(when + timedelta(hours=h) for h in range(1, 20))

    def fire(trigger, actor, **data):
        return engine.fire(case.id, trigger, actor=actor, data=data, now=next(clock))

    survey(engine, case, next(clock))
    fire("dispatch_request", "li", trades=["plumbing"])
    fire("approve", "sun", approver="sun", approved_amount="300")
    fire("dispatch", "li", assignee=worker)
    fire("complete", "he", final_cost="280")
    if rework:
        fire("reject_work", "wang", customer_comment="仍有渗水")
        fire("complete", "he", final_cost="280")
    fire("accept", "wang", customer_signoff=True, customer_comment="修好了")
    return fire("callback", "zhao", callback_rating=rating, quality_score=quality, attitude_score=attitude)


def test_ratings_rank_workers_and_their_department_on_quality_and_attitude(engine):
    """Q3 2025: li has two jobs (quality 5 and 4, attitude 4 and 5, both satisfied); ma one job
    (3, 3, basically satisfied) after one failed inspection. The engineering department (head:
    chen) has all three: quality (5+3+4)/3 = 4, attitude 4."""
    repair_through_callback(engine, local(2025, 9, 1, 9), "li", 5, 4, "satisfied")
    repair_through_callback(engine, local(2025, 9, 2, 9), "ma", 3, 3, "basically_satisfied", rework=True)
    repair_through_callback(engine, local(2025, 9, 3, 9), "li", 4, 5, "satisfied")
    report = engine.report_ratings(quarter="2025-Q3", now=local(2025, 10, 8, 9))
    workers = [(r.key, r.jobs, r.quality, r.attitude, r.satisfied, r.basically_satisfied, r.rework)
               for r in report.workers]
    assert workers == [("li", 2, 4.5, 4.5, 2, 0, 0), ("ma", 1, 3.0, 3.0, 0, 1, 1)]
    [department] = report.managers
    assert (department.key, department.managers, department.jobs, department.quality, department.attitude,
            department.satisfaction_rate, department.rework) == ("engineering", "chen 陈部长", 3, 4.0, 4.0, 1.0, 1)
    assert engine.report_ratings(now=local(2025, 10, 8, 9)).period.label == "2025-Q3"  # default: last quarter
    assert engine.report_ratings(quarter="2025-Q4", now=local(2025, 10, 8, 9)).workers == []


# -- periods ---------------------------------------------------------------------------------------------
def test_periods_are_named_one_way_and_bad_names_say_how_to_write_them(engine):
    year = engine.report_sla(year=2025, now=NOW).period
    assert (year.label, year.start, year.end) == ("2025", local(2025, 1, 1), local(2026, 1, 1))
    quarter = engine.report_sla(quarter="2025-Q4", now=NOW).period
    assert (quarter.start, quarter.end) == (local(2025, 10, 1), local(2026, 1, 1))
    assert engine.report_sla(now=NOW).period.label == "2025-08"  # default: the last full month
    ranged = engine.report_register(start="2025-09-29", end="2025-10-05", now=NOW).period
    assert (ranged.start, ranged.end, ranged.label) == (local(2025, 9, 29), local(2025, 10, 6),
                                                         "2025-09-29..2025-10-05")
    w53 = engine.report_weekly(week="2026-W53", now=NOW).period
    assert (w53.start, w53.end) == (local(2026, 12, 28), local(2027, 1, 4))
    for kwargs, message in (({"week": "2025-40"}, "2025-W40"), ({"week": "2025-W54"}, "ISO week"),
                            ({"week": "2025-W40", "start": "2025-09-01"}, "one way"),
                            ({"start": "2025-10-05", "end": "2025-09-29"}, "before it starts"),
                            ({"start": "2025-09-29T10:00"}, "UTC offset"),
                            ({"lang": "fr"}, "language")):
        with pytest.raises(ValueError, match=message):
            engine.report_weekly(now=NOW, **kwargs)
