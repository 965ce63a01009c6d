"""Every shipped workflow walked through every branch, on SQLite and PostgreSQL.

DOMAIN.md §1 complaint, §2 repair, §4 move-in, §5 renovation. Each test names the business
rule it checks; refusals are checked to write nothing (row version, data and history as before).
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest

from estateflow import (
    ConditionFailed,
    MissingFields,
    RoleNotAllowed,
    TransitionError,
    TriggerNotAllowed,
)

from .helpers import Desk, Step, local, make_engine, years_before

START = local(2025, 9, 26, 10)  # a Friday in Shanghai


@pytest.fixture
def engine(db_url):
    with make_engine(db_url) as engine:
        yield engine


@pytest.fixture
def desk(engine) -> Desk:
    return Desk(engine, START)


# =====================================================================================
# Complaint (投诉) — DOMAIN.md §1
# =====================================================================================

COMPLAINT = {"channel": "hotline", "customer_name": "张三", "phone": "13800138000", "building": "3",
             "unit": "3-1201", "summary": "电梯噪音大"}
ASSIGNMENT = {"category": "property_management", "department": "engineering", "assignee": "li"}
MEASURES = {"measures": "成立专项小组复测面积", "meeting_minutes": "专题会议纪要 2025-09"}


def open_complaint(desk, **overrides):
    return desk.open("complaint", **{**COMPLAINT, **overrides})


def assigned_complaint(desk, severity="ordinary"):
    return desk.fire(open_complaint(desk), "assign", "wang", severity=severity, **ASSIGNMENT)


def complaint_in_progress(desk, severity="ordinary"):
    return desk.fire(assigned_complaint(desk, severity), "report_back", "li", feedback="已联系电梯公司")


def complaint_resolved(desk):
    return desk.fire(complaint_in_progress(desk), "resolve", "li", resolution="更换导轨垫片")


def complaint_callback_due(desk):
    return desk.fire(complaint_resolved(desk), "confirm", "wang")


def test_ordinary_complaint_walks_from_registration_to_closed(desk):
    case = open_complaint(desk)
    assert (case.number, case.state, case.is_open) == ("TS-2025-000001", "registered", True)
    opened = desk.last(case, "opened")
    assert (opened.to_state, opened.actor, opened.at) == ("registered", "wang", desk.now)

    walk = [("assign", "wang", ASSIGNMENT | {"severity": "ordinary"}, "assigned"),
            ("report_back", "li", {"feedback": "已联系电梯公司"}, "in_progress"),
            ("resolve", "li", {"resolution": "更换导轨垫片"}, "resolved"),
            ("confirm", "wang", {}, "callback_due"),
            ("callback", "zhao", {"callback_rating": "satisfied"}, "closed")]
    for trigger, actor, data, state in walk:
        assert desk.fire(case, trigger, actor, **data).state == state
        event = desk.last(case)
        assert (event.trigger, event.to_state, event.actor, event.at) == (trigger, state, actor, desk.now)

    case = desk.get(case)
    assert (case.department, case.assignee, case.category) == ("engineering", "li", "property_management")
    assert case.data["feedback"] == "已联系电梯公司"
    assert case.data["resolution"] == "更换导轨垫片"
    assert case.data["customer_confirmed"] is True
    assert case.data["callback_rating"] == "satisfied"
    assert (case.closed_at, case.is_open, case.major, case.priority) == (desk.now, False, False, "normal")
    assert desk.steps(case) == [
        Step("assign", "registered", "assigned", "wang"),
        Step("report_back", "assigned", "in_progress", "li"),
        Step("resolve", "in_progress", "resolved", "li"),
        Step("confirm", "resolved", "callback_due", "wang"),
        Step("callback", "callback_due", "closed", "zhao"),
    ]
    assert desk.last(case).data["changed"] == {"callback_rating": "satisfied"}


def test_case_numbers_count_up_per_workflow(desk):
    first, second = open_complaint(desk), open_complaint(desk)
    repair = open_repair(desk)
    assert [first.number, second.number, repair.number] == ["TS-2025-000001", "TS-2025-000002", "BX-2025-000001"]
    assert desk.engine.get("TS-2025-000002").id == second.id


def test_case_numbers_restart_at_local_midnight_on_new_year(engine):
    utc = timezone.utc
    opened_at = [
        (local(2025, 12, 31, 23, 30), "TS-2025-000001"),
        (datetime(2025, 12, 31, 15, 59, 59, tzinfo=utc), "TS-2025-000002"),  # 23:59:59 in Shanghai
        (local(2026, 1, 1, 0, 10), "TS-2026-000001"),
        (datetime(2025, 12, 31, 16, 30, tzinfo=utc), "TS-2026-000002"),  # 00:30 on 1 Jan in Shanghai
    ]
    for now, number in opened_at:
        case = engine.open("complaint", dict(COMPLAINT, community="lakeside"), actor="wang", now=now)
        assert case.number == number


def test_case_number_follows_the_time_received_not_the_time_typed_in(engine):
    late_entry = engine.open("complaint", dict(COMPLAINT, community="lakeside"), actor="wang",
                             now=local(2026, 1, 1, 0, 20), received_at=local(2025, 12, 31, 23, 50))
    next_one = engine.open("complaint", dict(COMPLAINT, community="lakeside"), actor="wang",
                           now=local(2026, 1, 1, 0, 25))
    assert (late_entry.number, next_one.number) == ("TS-2025-000001", "TS-2026-000001")
    assert late_entry.received_at == local(2025, 12, 31, 23, 50)


@pytest.mark.parametrize("reach, stage", [
    (open_complaint, "registered"),
    (assigned_complaint, "assigned"),
    (complaint_in_progress, "in_progress"),
])
def test_escalating_to_major_marks_the_case_major_and_urgent(desk, reach, stage):
    case = reach(desk)
    case = desk.fire(case, "escalate_major", "wang")
    assert case.state == "major_review"
    assert (case.major, case.priority) == (True, "urgent")
    assert (case.data["major"], case.data["severity"], case.data["priority"]) == (True, "major", "urgent")
    assert desk.steps(case)[-1] == Step("escalate_major", stage, "major_review", "wang")
    stored = desk.get(case)
    assert (stored.major, stored.priority, stored.data["severity"]) == (True, "urgent", "major")


@pytest.mark.parametrize("actor", ["wang", "sun", "chen", "li", "zhou"])
def test_only_deputy_gm_or_gm_may_set_major_complaint_measures(desk, actor):
    case = assigned_complaint(desk)
    desk.fire(case, "escalate_major", "chen")
    error = desk.refused(case, "set_measures", actor, RoleNotAllowed, **MEASURES)
    assert error.needed == ["deputy_gm", "gm"]


@pytest.mark.parametrize("leader", ["wu", "zheng"])
def test_major_complaint_closes_only_with_a_special_report(desk, leader):
    case = open_complaint(desk)
    desk.fire(case, "escalate_major", "wang")
    error = desk.refused(case, "set_measures", leader, MissingFields)
    assert set(error.fields) == {"measures", "meeting_minutes", "department", "assignee"}
    desk.fire(case, "set_measures", leader, **MEASURES, department="engineering", assignee="li")
    assert desk.get(case).state == "in_progress"

    error = desk.refused(case, "resolve", "li", MissingFields, resolution="复测完成，差额补偿")
    assert error.fields == ["special_report"]
    desk.fire(case, "resolve", "li", resolution="复测完成，差额补偿", special_report="专题报告第1号")
    desk.fire(case, "confirm", "wang")
    case = desk.fire(case, "callback", "zhao", callback_rating="basically_satisfied")
    assert case.state == "closed"
    assert desk.steps(case) == [
        Step("escalate_major", "registered", "major_review", "wang"),
        Step("set_measures", "major_review", "in_progress", leader),
        Step("resolve", "in_progress", "resolved", "li"),
        Step("confirm", "resolved", "callback_due", "wang"),
        Step("callback", "callback_due", "closed", "zhao"),
    ]
    assert case.data["special_report"] == "专题报告第1号"


def test_hard_complaint_needs_a_special_report_to_resolve(desk):
    case = complaint_in_progress(desk, severity="hard")
    error = desk.refused(case, "resolve", "li", MissingFields, resolution="已协调")
    assert error.fields == ["special_report"]
    # the step cannot downgrade the severity its own condition is judged on
    error = desk.refused(case, "resolve", "li", MissingFields, resolution="已协调", severity="ordinary")
    assert error.fields == ["severity"]
    case = desk.fire(case, "resolve", "li", resolution="已协调", special_report="处理困难专题报告")
    assert (case.state, case.data["severity"]) == ("resolved", "hard")


def test_ordinary_complaint_resolves_without_a_special_report(desk):
    case = desk.fire(complaint_in_progress(desk), "resolve", "chen", resolution="已处理")
    assert case.state == "resolved"
    assert case.data.get("special_report") is None


def test_customer_rejecting_the_resolution_sends_the_complaint_back(desk):
    case = complaint_resolved(desk)
    case = desk.fire(case, "reject", "wang")
    assert (case.state, case.data["customer_confirmed"]) == ("in_progress", False)
    desk.fire(case, "resolve", "li", resolution="更换整套导轨")
    case = desk.fire(case, "confirm", "wang")
    assert (case.state, case.data["customer_confirmed"]) == ("callback_due", True)
    assert desk.steps(case)[-4:] == [
        Step("resolve", "in_progress", "resolved", "li"),
        Step("reject", "resolved", "in_progress", "wang"),
        Step("resolve", "in_progress", "resolved", "li"),
        Step("confirm", "resolved", "callback_due", "wang"),
    ]


def test_dissatisfied_callback_reopens_the_complaint(desk):
    case = complaint_callback_due(desk)
    error = desk.refused(case, "callback", "zhao", MissingFields, callback_rating="dissatisfied")
    assert error.fields == ["callback_comment"]
    case = desk.fire(case, "callback", "zhao", callback_rating="dissatisfied", callback_comment="噪音依旧")
    assert (case.state, case.is_open) == ("in_progress", True)
    desk.fire(case, "resolve", "li", resolution="更换电梯曳引机减震垫")
    desk.fire(case, "confirm", "wang")
    case = desk.fire(case, "callback", "zhao", callback_rating="satisfied")
    assert case.state == "closed"
    assert desk.steps(case)[-4:] == [
        Step("callback", "callback_due", "in_progress", "zhao"),
        Step("resolve", "in_progress", "resolved", "li"),
        Step("confirm", "resolved", "callback_due", "wang"),
        Step("callback", "callback_due", "closed", "zhao"),
    ]


@pytest.mark.parametrize("reach, stage", [(open_complaint, "registered"), (assigned_complaint, "assigned")])
def test_customer_may_withdraw_before_the_department_reports_back(desk, reach, stage):
    case = reach(desk)
    error = desk.refused(case, "withdraw", "sun", MissingFields)
    assert error.fields == ["resolution"]
    case = desk.fire(case, "withdraw", "sun", resolution="客户撤诉")
    assert (case.state, case.closed_at, case.is_open) == ("withdrawn", desk.now, False)
    assert desk.steps(case)[-1] == Step("withdraw", stage, "withdrawn", "sun")
    desk.refused(case, "assign", "wang", TriggerNotAllowed, **ASSIGNMENT)


def test_complaint_in_progress_can_no_longer_be_withdrawn(desk):
    # As shipped: withdraw only from registered/assigned (see the report: doubtful rule).
    desk.refused(complaint_in_progress(desk), "withdraw", "sun", TriggerNotAllowed, resolution="客户撤诉")


def test_handler_of_another_department_may_not_report_back(desk):
    case = assigned_complaint(desk)
    error = desk.refused(case, "report_back", "ma", RoleNotAllowed, feedback="不归我们管")
    assert error.actor == "ma"
    assert desk.fire(case, "report_back", "chen", feedback="部门负责人已安排").state == "in_progress"
    desk.refused(case, "resolve", "ma", RoleNotAllowed, resolution="已处理")


def test_clerk_of_another_community_is_refused_everywhere(desk):
    with pytest.raises(RoleNotAllowed):
        desk.open("complaint", actor="gao", **COMPLAINT)
    assert desk.engine.find(limit=100) == []
    case = open_complaint(desk)
    error = desk.refused(case, "assign", "gao", RoleNotAllowed, severity="ordinary", **ASSIGNMENT)
    assert error.actor == "gao"
    desk.refused(case, "withdraw", "tang", RoleNotAllowed, resolution="撤诉")
    assert desk.can(case, "gao") == []


@pytest.mark.parametrize("reach, trigger, actor, data", [
    (open_complaint, "assign", "li", ASSIGNMENT | {"severity": "ordinary"}),  # classifying is CS's job
    (complaint_in_progress, "resolve", "wang", {"resolution": "已处理"}),
    (complaint_resolved, "confirm", "zhao", {}),                               # the CS clerk confirms
    (complaint_callback_due, "callback", "wang", {"callback_rating": "satisfied"}),  # the records clerk calls back
])
def test_steps_belong_to_their_roles(desk, reach, trigger, actor, data):
    desk.refused(reach(desk), trigger, actor, RoleNotAllowed, **data)


def test_trigger_from_the_wrong_state_names_the_allowed_ones(desk):
    case = open_complaint(desk)
    error = desk.refused(case, "confirm", "wang", TriggerNotAllowed)
    assert (error.state, error.allowed) == ("registered", ["assign", "escalate_major", "withdraw"])
    closed = complaint_callback_due(desk)
    desk.fire(closed, "callback", "zhao", callback_rating="satisfied")
    desk.refused(closed, "callback", "zhao", TriggerNotAllowed, callback_rating="dissatisfied",
                 callback_comment="再来一次")


def test_available_triggers_follow_state_role_department_and_community(desk):
    case = open_complaint(desk)
    assert desk.can(case, "wang") == desk.can(case, "sun") == ["assign", "escalate_major", "withdraw"]
    assert desk.can(case, "zhao") == desk.can(case, "li") == desk.can(case, "gao") == []
    assert desk.can(case, "chen") == []  # department-scoped and no department assigned yet

    desk.fire(case, "assign", "wang", severity="ordinary", **ASSIGNMENT)
    assert desk.can(case, "chen") == ["escalate_major", "report_back"]
    assert desk.can(case, "li") == ["report_back"]
    assert desk.can(case, "ma") == []
    assert desk.can(case, "wang") == ["escalate_major", "withdraw"]

    desk.fire(case, "report_back", "li", feedback="已联系")
    assert desk.can(case, "li") == ["resolve"]
    assert desk.can(case, "sun") == ["escalate_major", "resolve"]
    assert desk.can(case, "wu") == desk.can(case, "zhao") == []

    desk.fire(case, "resolve", "li", resolution="已处理")
    assert desk.can(case, "wang") == ["confirm", "reject"]
    desk.fire(case, "confirm", "wang")
    assert desk.can(case, "zhao") == ["callback"]
    assert desk.can(case, "wang") == []
    desk.fire(case, "callback", "zhao", callback_rating="satisfied")
    assert all(desk.can(case, who) == [] for who in ("wang", "zhao", "sun", "li", "zheng"))


# =====================================================================================
# Repair (报修 / 保修) — DOMAIN.md §2
# =====================================================================================

REPAIR = {"channel": "hotline", "customer_name": "王五", "phone": "13700137000", "building": "2",
          "unit": "2-0302", "summary": "卫生间渗水到楼下", "category": "leak", "component": "bathroom"}
WITH_CONTRACTOR = ["wang", "li", "contractor"]
# Who approves an estimated cost (DOMAIN.md §2.3): the steps in order, as (trigger, actor, state after).
CS_MANAGER = (("approve", "sun", "approved"),)
DEPUTY_GM = (("review", "zhou", "awaiting_deputy_gm"), ("approve", "wu", "approved"))
GM = (("approve", "zheng", "approved"),)


def approval_chain(amount):
    amount = Decimal(amount)
    return CS_MANAGER if amount <= 1000 else DEPUTY_GM if amount <= 10000 else GM


def open_repair(desk, **overrides):
    return desk.open("repair", **{**REPAIR, "handover_date": years_before(desk.now.date(), 3), **overrides})


def survey(desk, case, cost, participants=WITH_CONTRACTOR):
    return desk.fire(case, "survey", "li", survey_participants=list(participants),
                     responsible_party="contractor", estimated_cost=cost)


def repair_awaiting_approval(desk, cost, **overrides):
    case = survey(desk, open_repair(desk, **overrides), cost)
    return desk.fire(case, "dispatch_request", "li", trades=["waterproofing"])


def approval_data(trigger, actor, cost):
    return {"reviewer": actor} if trigger == "review" else {"approver": actor, "approved_amount": cost}


def approve(desk, case, cost):
    for trigger, actor, _ in approval_chain(cost):
        case = desk.fire(case, trigger, actor, **approval_data(trigger, actor, cost))
    return case


def repair_in_repair(desk, cost, **overrides):
    case = approve(desk, repair_awaiting_approval(desk, cost, **overrides), cost)
    return desk.fire(case, "dispatch", "li", assignee="li", contractor="何施工")


def repair_callback_due(desk, cost, final_cost, **overrides):
    case = desk.fire(repair_in_repair(desk, cost, **overrides), "complete", "he", final_cost=final_cost)
    return desk.fire(case, "accept", "wang", customer_signoff=True, customer_comment="满意")


def satisfied_callback(desk, case):
    return desk.fire(case, "callback", "zhao", callback_rating="satisfied", quality_score=5, attitude_score=4)


def repair_in_audit(desk, cost, final_cost, **overrides):
    case = satisfied_callback(desk, repair_callback_due(desk, cost, final_cost, **overrides))
    assert case.state == "audit"
    return case


def repair_in_chargeback(desk):
    return desk.fire(repair_in_audit(desk, "800", "800"), "audit_done", "sun", audited_amount="780", auditor="sun")


@pytest.mark.parametrize("cost, participants, allowed", [
    ("499.99", ["wang", "li"], True),
    ("500", ["wang", "li"], True),
    ("500.01", ["wang", "li"], False),
    ("500.01", WITH_CONTRACTOR, True),
    ("20000", WITH_CONTRACTOR, True),
])
def test_contractor_must_attend_surveys_above_500_yuan(desk, cost, participants, allowed):
    case = open_repair(desk)
    if not allowed:
        desk.refused(case, "survey", "li", ConditionFailed, survey_participants=participants,
                     responsible_party="contractor", estimated_cost=cost)
        return
    case = survey(desk, case, cost, participants)
    assert (case.state, case.data["estimated_cost"]) == ("surveyed", Decimal(cost))
    assert case.data["survey_participants"] == participants
    assert desk.steps(case) == [Step("survey", "registered", "surveyed", "li")]


def test_survey_lists_every_missing_field(desk):
    case = open_repair(desk)
    error = desk.refused(case, "survey", "li", MissingFields)
    assert set(error.fields) == {"survey_participants", "responsible_party", "estimated_cost"}
    desk.refused(case, "survey", "zhao", RoleNotAllowed, survey_participants=WITH_CONTRACTOR,
                 responsible_party="contractor", estimated_cost="300")


@pytest.mark.parametrize("component, age, given, expected", [
    ("bathroom", (3, 0), None, "A"),        # 5-year warranty, still covered
    ("electrical", (3, 0), None, "B"),      # 2-year warranty, expired
    ("electrical", (3, 0), "A", "A"),       # an explicit type wins
    ("bathroom", (3, 0), "B", "B"),
    ("electrical", (2, 1), None, "A"),      # handed over 2 years minus a day ago: last day covered
    ("electrical", (2, 0), None, "B"),      # exactly 2 years ago: warranty over
    ("structure", (40, 0), None, "A"),      # design life
    ("other", (1, 0), None, "B"),           # not in the warranty table: company pays
])
def test_work_order_type_defaults_from_the_warranty_table(desk, component, age, given, expected):
    years, days_later = age
    handover = years_before(START.date(), years) + timedelta(days=days_later)
    case = open_repair(desk, component=component, handover_date=handover)
    survey(desk, case, "300")
    data = {"trades": ["electrical"]} | ({"work_order_type": given} if given else {})
    case = desk.fire(case, "dispatch_request", "li", **data)
    assert (case.state, case.data["work_order_type"]) == ("awaiting_approval", expected)
    assert desk.last(case).data["changed"]["work_order_type"] == expected


@pytest.mark.parametrize("cost, chain", [
    ("999.99", CS_MANAGER), ("1000", CS_MANAGER),
    ("1000.01", DEPUTY_GM), ("9999.99", DEPUTY_GM), ("10000", DEPUTY_GM),
    ("10000.01", GM),
])
def test_cost_approval_goes_to_the_band_of_the_estimate(desk, cost, chain):
    case = repair_awaiting_approval(desk, cost)
    source, expected = case.state, []
    for trigger, actor, dest in chain:
        assert desk.can(case, actor) == [trigger]
        assert all(desk.can(case, other) == [] for other in {"sun", "zhou", "wu", "zheng"} - {actor})
        case = desk.fire(case, trigger, actor, **approval_data(trigger, actor, cost))
        assert case.state == dest
        expected.append(Step(trigger, source, dest, actor))
        source = dest
    assert desk.steps(case)[-len(expected):] == expected
    assert (case.data["approver"], case.data["approved_amount"]) == (chain[-1][1], Decimal(cost))
    assert case.data.get("reviewer") == ("zhou" if chain == DEPUTY_GM else None)


@pytest.mark.parametrize("cost, trigger, actor, error", [
    ("999.99", "approve", "zheng", RoleNotAllowed),
    ("1000", "approve", "wu", RoleNotAllowed),
    ("1000", "approve", "zheng", RoleNotAllowed),
    ("1000", "review", "zhou", ConditionFailed),
    ("1000.01", "approve", "sun", ConditionFailed),
    ("1000.01", "approve", "wu", ConditionFailed),     # the deputy GM may not skip the review
    ("1000.01", "approve", "zheng", ConditionFailed),
    ("10000", "approve", "zheng", ConditionFailed),
    ("10000", "approve", "sun", ConditionFailed),
    ("10000.01", "approve", "sun", RoleNotAllowed),
    ("10000.01", "approve", "wu", RoleNotAllowed),
    ("10000.01", "review", "zhou", ConditionFailed),
])
def test_wrong_approver_is_refused_and_nothing_is_written(desk, cost, trigger, actor, error):
    case = repair_awaiting_approval(desk, cost)
    desk.refused(case, trigger, actor, error, **approval_data(trigger, actor, cost))
    assert desk.get(case).state == "awaiting_approval"


@pytest.mark.parametrize("actor", ["sun", "zheng", "zhou"])
def test_after_review_only_the_deputy_gm_approves(desk, actor):
    case = repair_awaiting_approval(desk, "5000")
    desk.fire(case, "review", "zhou", reviewer="zhou")
    desk.refused(case, "approve", actor, RoleNotAllowed, approver=actor, approved_amount="5000")
    assert desk.can(case, "wu") == ["approve"]


def test_cs_manager_of_another_community_may_not_approve(desk):
    case = repair_awaiting_approval(desk, "800")
    desk.refused(case, "approve", "tang", RoleNotAllowed, approver="tang", approved_amount="800")


def test_deputy_approves_for_an_absent_cs_manager_only_within_the_delegation(desk):
    case = repair_awaiting_approval(desk, "800")
    tomorrow = local(2025, 9, 27, 0)
    desk.engine.delegate("wang", "sun", starts_at=tomorrow, ends_at=tomorrow + timedelta(days=2),
                         actor="sun", now=desk.tick())
    desk.refused(case, "approve", "wang", RoleNotAllowed, approver="wang", approved_amount="800")
    desk.now = tomorrow + timedelta(hours=9)
    case = desk.fire(case, "approve", "wang", approver="wang", approved_amount="800")
    assert case.state == "approved"
    assert desk.steps(case)[-1] == Step("approve", "awaiting_approval", "approved", "wang", on_behalf_of="sun")
    assert desk.last(case).actor_display == "wang for sun"


def test_failed_inspection_sends_the_work_back_until_the_customer_signs(desk):
    case = repair_in_repair(desk, "800")
    desk.fire(case, "complete", "he", final_cost="780")
    case = desk.fire(case, "reject_work", "wang", customer_comment="墙角仍有渗水")
    assert (case.state, case.data["customer_signoff"]) == ("in_repair", False)
    desk.fire(case, "complete", "he", final_cost="800")
    desk.refused(case, "accept", "wang", ConditionFailed, customer_comment="满意")
    desk.refused(case, "accept", "wang", ConditionFailed, customer_signoff=False, customer_comment="不满意")
    case = desk.fire(case, "accept", "wang", customer_signoff=True, customer_comment="满意")
    assert (case.state, case.data["final_cost"], case.data["customer_signoff"]) == ("callback_due", Decimal(800), True)
    assert desk.steps(case)[-5:] == [
        Step("dispatch", "approved", "in_repair", "li"),
        Step("complete", "in_repair", "awaiting_inspection", "he"),
        Step("reject_work", "awaiting_inspection", "in_repair", "wang"),
        Step("complete", "in_repair", "awaiting_inspection", "he"),
        Step("accept", "awaiting_inspection", "callback_due", "wang"),
    ]


def test_dissatisfied_repair_callback_reopens_the_repair(desk):
    case = repair_callback_due(desk, "800", "800")
    desk.refused(case, "callback", "wang", RoleNotAllowed, callback_rating="satisfied",
                 quality_score=5, attitude_score=5)
    case = desk.fire(case, "callback", "zhao", callback_rating="dissatisfied", callback_comment="又漏了")
    assert case.state == "in_repair"
    desk.fire(case, "complete", "li", final_cost="850")
    desk.fire(case, "accept", "wang", customer_signoff=True, customer_comment="这次好了")
    case = satisfied_callback(desk, case)
    assert (case.state, case.data["quality_score"], case.data["attitude_score"]) == ("audit", 5, 4)
    assert desk.steps(case)[-4:] == [
        Step("callback", "callback_due", "in_repair", "zhao"),
        Step("complete", "in_repair", "awaiting_inspection", "li"),
        Step("accept", "awaiting_inspection", "callback_due", "wang"),
        Step("callback", "callback_due", "audit", "zhao"),
    ]


@pytest.mark.parametrize("estimate, final, approver, refused", [
    ("800", "1000", None, ()),
    ("800", "1000.01", "wu", ("zheng", "sun", "zhou")),
    ("800", "10000.01", "zheng", ("wu",)),
    ("5000", "10000", None, ()),
    ("5000", "10000.01", "zheng", ("wu",)),
    ("5000", "900", None, ()),
    ("15000", "50000", None, ()),
])
def test_final_cost_in_a_higher_band_needs_the_higher_approver_before_audit(desk, estimate, final, approver, refused):
    case = repair_callback_due(desk, estimate, final)
    case = satisfied_callback(desk, case)
    if approver is None:
        assert case.state == "audit"
        return
    assert case.state == "final_cost_approval"
    desk.refused(case, "audit_done", "sun", TriggerNotAllowed, audited_amount=final, auditor="sun")
    for actor in refused:
        desk.refused(case, "approve_final", actor, RoleNotAllowed, approver=actor)
    assert desk.can(case, approver) == ["approve_final"]
    case = desk.fire(case, "approve_final", approver, approver=approver)
    assert (case.state, case.data["approver"]) == ("audit", approver)
    assert desk.steps(case)[-2:] == [Step("callback", "callback_due", "final_cost_approval", "zhao"),
                                     Step("approve_final", "final_cost_approval", "audit", approver)]


@pytest.mark.parametrize("final, auditor, refused", [("20000", "sun", "feng"), ("20000.01", "feng", "sun")])
@pytest.mark.parametrize("component, after_audit", [("bathroom", "chargeback"), ("electrical", "closed")],
                         ids=["type-A", "type-B"])
def test_cost_audit_is_by_cs_up_to_20000_and_by_the_audit_department_above(
        desk, final, auditor, refused, component, after_audit):
    case = repair_in_audit(desk, "15000", final, component=component)
    desk.refused(case, "audit_done", refused, RoleNotAllowed, audited_amount=final, auditor=refused)
    assert desk.can(case, auditor) == ["audit_done"]
    assert desk.can(case, refused) == []
    case = desk.fire(case, "audit_done", auditor, audited_amount=final, auditor=auditor)
    assert (case.state, case.data["audited_amount"]) == (after_audit, Decimal(final))
    assert desk.steps(case)[-1] == Step("audit_done", "audit", after_audit, auditor)


CHARGEBACK = [("settle", "sun", "settlement"), ("contractor_confirm", "he", "contractor_confirmed"),
              ("certify", "zhou", "certified"), ("deduct", "qian", "deducted")]


def test_type_a_chargeback_runs_in_order_to_the_quality_deposit(desk):
    case = repair_in_chargeback(desk)
    assert (case.state, case.data["work_order_type"], case.data["chargeback_step"]) == \
        ("chargeback", "A", "final_statement")
    for index, (trigger, actor, step) in enumerate(CHARGEBACK):
        for other, other_actor, _ in CHARGEBACK[:index] + CHARGEBACK[index + 1:]:
            desk.refused(case, other, other_actor, ConditionFailed)
        assert desk.can(case, actor) == [trigger]
        case = desk.fire(case, trigger, actor)
        assert case.data["chargeback_step"] == step
    assert (case.state, case.closed_at) == ("closed", desk.now)
    assert desk.steps(case)[-4:] == [
        Step("settle", "chargeback", "chargeback", "sun"),
        Step("contractor_confirm", "chargeback", "chargeback", "he"),
        Step("certify", "chargeback", "chargeback", "zhou"),
        Step("deduct", "chargeback", "closed", "qian"),
    ]


def test_chargeback_step_in_turn_still_needs_its_role(desk):
    case = repair_in_chargeback(desk)
    desk.fire(case, "settle", "sun")
    desk.fire(case, "contractor_confirm", "he")
    desk.refused(case, "certify", "qian", RoleNotAllowed)
    desk.refused(case, "certify", "he", RoleNotAllowed)


def test_type_b_audit_closes_the_repair(desk):
    case = repair_in_audit(desk, "800", "800", component="electrical")
    assert desk.get(case).data["work_order_type"] == "B"
    case = desk.fire(case, "audit_done", "sun", audited_amount="800", auditor="sun")
    assert (case.state, case.closed_at, case.data.get("chargeback_step")) == ("closed", desk.now, None)
    assert all(desk.can(case, who) == [] for who in ("sun", "qian", "zhou", "he"))


def test_full_type_a_repair_history(desk):
    case = repair_in_chargeback(desk)
    assert [(s.trigger, s.actor) for s in desk.steps(case)] == [
        ("survey", "li"), ("dispatch_request", "li"), ("approve", "sun"), ("dispatch", "li"),
        ("complete", "he"), ("accept", "wang"), ("callback", "zhao"), ("audit_done", "sun"),
    ]
    case = desk.get(case)
    assert (case.number, case.assignee, case.department) == ("BX-2025-000001", "li", "engineering")


def test_repair_outside_our_responsibility_is_declined(desk):
    case = open_repair(desk)
    assert desk.refused(case, "decline", "sun", MissingFields).fields == ["callback_comment"]
    desk.refused(case, "decline", "li", RoleNotAllowed, callback_comment="业主自行装修造成")
    case = desk.fire(case, "decline", "sun", callback_comment="业主自行装修造成")
    assert (case.state, case.closed_at, case.is_open) == ("rejected", desk.now, False)
    assert desk.steps(case) == [Step("decline", "registered", "rejected", "sun")]

    surveyed = open_repair(desk)
    survey(desk, surveyed, "300")
    desk.refused(surveyed, "decline", "sun", TriggerNotAllowed, callback_comment="太晚了")


# =====================================================================================
# Move-in (交楼 / 收楼 / 入伙) — DOMAIN.md §4
# =====================================================================================

MOVE_IN = {"customer_name": "赵六", "phone": "13600136000", "building": "7", "unit": "7-1502"}
DEFECTS = ["客厅墙面开裂", "主卧窗户关不严"]


def move_in_at_inspection(desk, **overrides):
    case = desk.open("move_in", **{**MOVE_IN, **overrides})
    assert desk.fire(case, "notify_owner", "wang", handover_date="2025-10-15").data["notice_sent"] is True
    return desk.fire(case, "start_inspection", "li")


def move_in_in_rectification(desk, **overrides):
    return desk.fire(move_in_at_inspection(desk, **overrides), "record_defects", "li", defects=DEFECTS)


def finish_move_in(desk, case):
    desk.fire(case, "hand_over", "wang", keys_handed=True, documents_handed=True)
    return desk.fire(case, "file_created", "zhao", owner_file="YZ-7-1502")


def test_each_defect_spawns_a_linked_repair_case(desk):
    case = move_in_in_rectification(desk)
    assert (case.number, desk.get(case).state) == ("JF-2025-000001", "rectification")
    links = desk.engine.links(case.id)
    assert [(link.other_id, link.kind, link.actor) for link in links] == [(case.id, "spawned_from", "li")] * 2
    repairs = [desk.get(link.case_id) for link in links]
    assert [r.number for r in repairs] == ["BX-2025-000001", "BX-2025-000002"]
    for repair, defect in zip(repairs, DEFECTS):
        assert (repair.workflow, repair.state) == ("repair", "registered")
        assert (repair.community, repair.building, repair.unit) == ("lakeside", "7", "7-1502")
        assert repair.data["summary"] == defect
        assert repair.data["channel"] == "handover_inspection"
        assert (repair.data["customer_name"], repair.data["phone"]) == ("赵六", "13600136000")
        assert str(repair.data["handover_date"]) == "2025-10-15"
        assert desk.engine.links(repair.id) == [links[repairs.index(repair)]]
        opened = desk.last(repair, "opened")
        assert (opened.actor, opened.to_state, opened.at) == ("li", "registered", desk.now)
    assert survey(desk, repairs[0], "300").state == "surveyed"  # spawned cases are real repair cases


def test_unit_without_defects_goes_straight_to_keys_and_completes(desk):
    case = move_in_at_inspection(desk)
    desk.fire(case, "no_defects", "li")
    assert desk.refused(case, "hand_over", "wang", MissingFields).fields == ["keys_handed", "documents_handed"]
    case = finish_move_in(desk, case)
    assert (case.state, case.closed_at, case.data["owner_file"]) == ("completed", desk.now, "YZ-7-1502")
    assert desk.engine.links(case.id) == []
    assert desk.steps(case) == [
        Step("notify_owner", "scheduled", "notified", "wang"),
        Step("start_inspection", "notified", "inspection", "li"),
        Step("no_defects", "inspection", "keys", "li"),
        Step("hand_over", "keys", "owner_file", "wang"),
        Step("file_created", "owner_file", "completed", "zhao"),
    ]


def test_keys_may_be_handed_over_before_rectification_when_defects_do_not_block(desk):
    case = move_in_in_rectification(desk)
    assert desk.can(case, "wang") == ["dispute", "hand_keys_early", "rectified"]
    case = desk.fire(case, "hand_keys_early", "wang")
    assert (case.state, case.data["defects_closed"]) == ("keys", False)
    assert finish_move_in(desk, case).state == "completed"


def test_open_defects_block_the_keys_when_the_company_says_so(desk):
    case = move_in_in_rectification(desk, defects_block_keys=True)
    desk.refused(case, "hand_keys_early", "wang", ConditionFailed)
    assert desk.can(case, "wang") == ["dispute", "rectified"]
    case = desk.fire(case, "rectified", "li")
    assert (case.state, case.data["defects_closed"]) == ("keys", True)
    assert finish_move_in(desk, case).state == "completed"


@pytest.mark.parametrize("reach, stage", [(move_in_at_inspection, "inspection"),
                                          (move_in_in_rectification, "rectification")])
def test_dispute_is_a_branch_that_returns_to_inspection_once_settled(desk, reach, stage):
    case = reach(desk)
    assert desk.refused(case, "dispute", "wang", MissingFields).fields == ["dispute_reason"]
    case = desk.fire(case, "dispute", "wang", dispute_reason="实测面积与合同不符")
    assert case.state == "disputed"
    desk.refused(case, "settle_dispute", "wang", RoleNotAllowed, resolution="补差价")
    desk.refused(case, "settle_dispute", "tang", RoleNotAllowed, resolution="补差价")
    case = desk.fire(case, "settle_dispute", "sun", resolution="按实测面积补差价")
    assert (case.state, case.data["resolution"]) == ("inspection", "按实测面积补差价")
    desk.fire(case, "no_defects", "wang")
    assert finish_move_in(desk, case).state == "completed"
    assert [s for s in desk.steps(case) if s.trigger in ("dispute", "settle_dispute")] == [
        Step("dispute", stage, "disputed", "wang"),
        Step("settle_dispute", "disputed", "inspection", "sun"),
    ]


# =====================================================================================
# Renovation (二次装修) — DOMAIN.md §5
# =====================================================================================

RENOVATION = {"customer_name": "钱七", "phone": "13500135000", "building": "9", "unit": "9-0601"}
REVIEWS = [  # (trigger, reviewer, data, state under review) — the three reviews in order
    ("preliminary_ok", "wang", {"drawings": ["平面图", "水电图"], "decorator": "美家装饰"}, "applied"),
    ("approve", "sun", {}, "manager_review"),
    ("drawings_ok", "li", {"review_comment": "同意"}, "drawing_review"),
]


def review(desk, case, start=0, through=None):
    """Pass the reviews REVIEWS[start:through] (all of them by default)."""
    for trigger, actor, data, _ in REVIEWS[start:through]:
        case = desk.fire(case, trigger, actor, **data)
    return case


def renovation_with_permit(desk, deposit="3000"):
    case = review(desk, desk.open("renovation", **RENOVATION))
    desk.fire(case, "sign", "wang", tenant_signed=True, decorator_signed=True)
    return desk.fire(case, "issue_permit", "qian", fee="800", deposit=deposit, permit_number="ZX-0601")


def renovation_awaiting_refund(desk, deposit="3000"):
    case = renovation_with_permit(desk, deposit)
    desk.fire(case, "finish_works", "owner")
    return desk.fire(case, "accept", "li", fire_accepted=True)


@pytest.mark.parametrize("stage", range(len(REVIEWS)), ids=[r[3] for r in REVIEWS])
def test_rejection_at_any_review_returns_the_application_to_the_applicant(desk, stage):
    _, rejecter, _, state = REVIEWS[stage]
    case = review(desk, desk.open("renovation", **RENOVATION), through=stage)
    assert case.state == state
    assert desk.refused(case, "reject", rejecter, MissingFields).fields == ["review_comment"]
    case = desk.fire(case, "reject", rejecter, review_comment="拆改承重墙，不予通过")
    assert (case.state, case.data["review_comment"]) == ("returned", "拆改承重墙，不予通过")
    case = desk.fire(case, "resubmit", "owner", drawings=["平面图（修改）", "水电图"], decorator="美家装饰")
    assert case.state == "applied"
    desk.fire(case, "preliminary_ok", "wang")  # the resubmitted drawings are on file
    case = review(desk, case, start=1)
    assert (case.state, case.data["drawings"]) == ("signing", ["平面图（修改）", "水电图"])
    steps = desk.steps(case)
    assert steps[stage:stage + 2] == [Step("reject", state, "returned", rejecter),
                                      Step("resubmit", "returned", "applied", "owner")]


def test_returned_application_may_be_withdrawn(desk):
    case = desk.open("renovation", **RENOVATION)
    desk.fire(case, "reject", "wang", review_comment="缺少图纸")
    desk.refused(case, "withdraw", "lin", RoleNotAllowed)
    case = desk.fire(case, "withdraw", "owner")
    assert (case.state, case.closed_at) == ("withdrawn", desk.now)


def test_review_steps_belong_to_their_reviewers(desk):
    case = desk.open("renovation", **RENOVATION)
    desk.refused(case, "preliminary_ok", "owner", RoleNotAllowed, **REVIEWS[0][2])
    assert desk.refused(case, "preliminary_ok", "wang", MissingFields).fields == ["drawings", "decorator"]
    review(desk, case, through=1)
    desk.refused(case, "approve", "wang", RoleNotAllowed)
    desk.refused(case, "approve", "tang", RoleNotAllowed)
    desk.fire(case, "approve", "sun")
    desk.refused(case, "drawings_ok", "sun", RoleNotAllowed, review_comment="同意")


def test_comments_must_be_signed_by_tenant_and_decorator(desk):
    case = review(desk, desk.open("renovation", **RENOVATION))
    desk.refused(case, "sign", "wang", ConditionFailed, tenant_signed=True, decorator_signed=False)
    error = desk.refused(case, "sign", "wang", MissingFields, tenant_signed=True)  # a missing signature
    assert error.fields == ["decorator_signed"]
    case = desk.fire(case, "sign", "wang", tenant_signed=True, decorator_signed=True)
    assert case.state == "payment"


def test_permit_is_issued_once_fees_and_deposit_are_recorded(desk):
    case = review(desk, desk.open("renovation", **RENOVATION))
    desk.fire(case, "sign", "wang", tenant_signed=True, decorator_signed=True)
    error = desk.refused(case, "issue_permit", "qian", MissingFields)
    assert set(error.fields) == {"fee", "deposit", "permit_number"}
    case = desk.fire(case, "issue_permit", "qian", fee="800", deposit="3000", permit_number="ZX-0601")
    assert case.state == "works"
    assert (case.data["fee"], case.data["deposit"], case.data["violations"]) == (Decimal(800), Decimal(3000), 0)
    assert case.number == "ZX-2025-000001"


def test_every_patrol_violation_is_counted(desk):
    case = renovation_with_permit(desk)
    assert (desk.can(case, "lin"), desk.can(case, "owner")) == (["record_violation"], ["finish_works"])
    for count, what in enumerate(["中午施工噪音", "楼道堆放垃圾"], start=1):
        case = desk.fire(case, "record_violation", "lin", last_violation=what)
        assert (case.state, case.data["violations"], case.data["last_violation"]) == ("violation", count, what)
        desk.refused(case, "finish_works", "owner", TriggerNotAllowed)
        case = desk.fire(case, "corrected", "lin")
        assert case.state == "works"
    assert desk.steps(case)[-4:] == [
        Step("record_violation", "works", "violation", "lin"),
        Step("corrected", "violation", "works", "lin"),
        Step("record_violation", "works", "violation", "lin"),
        Step("corrected", "violation", "works", "lin"),
    ]
    recorded = [e.data["changed"] for e in desk.events(case, "transition") if e.trigger == "record_violation"]
    assert recorded == [{"violations": 1, "last_violation": "中午施工噪音"},
                        {"violations": 2, "last_violation": "楼道堆放垃圾"}]


def test_acceptance_needs_fire_acceptance_and_loops_through_rectification(desk):
    case = renovation_with_permit(desk)
    desk.fire(case, "finish_works", "owner")
    assert desk.refused(case, "accept", "li", MissingFields).fields == ["fire_accepted"]  # not recorded yet
    desk.refused(case, "accept", "li", ConditionFailed, fire_accepted=False)
    case = desk.fire(case, "needs_rectification", "li", review_comment="消防喷淋头被吊顶遮挡")
    assert case.state == "rectification"
    desk.refused(case, "accept", "li", TriggerNotAllowed, fire_accepted=True)
    assert desk.fire(case, "rectified", "li").state == "acceptance"
    case = desk.fire(case, "accept", "li", fire_accepted=True)
    assert (case.state, case.data["fire_accepted"]) == ("refund", True)
    assert desk.steps(case)[-4:] == [
        Step("finish_works", "works", "acceptance", "owner"),
        Step("needs_rectification", "acceptance", "rectification", "li"),
        Step("rectified", "rectification", "acceptance", "li"),
        Step("accept", "acceptance", "refund", "li"),
    ]


@pytest.mark.parametrize("deposit, deductions, refund", [
    ("3000", "200", "2800"),
    ("3000", None, "3000"),          # no deductions recorded: the default 0
    ("2500.50", "0.75", "2499.75"),
    ("3000", "3000", "0"),
])
def test_deposit_refund_is_the_deposit_minus_deductions(desk, deposit, deductions, refund):
    case = renovation_awaiting_refund(desk, deposit)
    desk.refused(case, "refund_deposit", "wang", RoleNotAllowed)
    data = {} if deductions is None else {"deductions": deductions}
    case = desk.fire(case, "refund_deposit", "qian", **data)
    assert (case.state, case.closed_at) == ("closed", desk.now)
    for amount in (case.data["refund_amount"], desk.get(case).data["refund_amount"]):  # returned and stored
        assert isinstance(amount, Decimal)
        assert amount == Decimal(refund)
    assert desk.steps(case)[-1] == Step("refund_deposit", "refund", "closed", "qian")


def test_deductions_above_the_deposit_are_refused(desk):
    case = renovation_awaiting_refund(desk, "3000")
    error = desk.refused(case, "refund_deposit", "qian", MissingFields, deductions="3000.01")
    assert error.fields == ["refund_amount"]


# =====================================================================================
# Regressions: reproductions of defects found while writing this suite, now fixed.
# =====================================================================================

def test_approver_cannot_rewrite_the_estimate_into_their_own_band(desk):
    case = repair_awaiting_approval(desk, "50000")
    desk.refused(case, "approve", "sun", TransitionError, approver="sun", approved_amount="50000",
                 estimated_cost="1000")


def test_clerk_cannot_switch_off_the_defects_block_while_handing_keys(desk):
    case = move_in_in_rectification(desk, defects_block_keys=True)
    desk.refused(case, "hand_keys_early", "wang", TransitionError, defects_block_keys=False)


def test_recording_defects_again_after_a_dispute_does_not_duplicate_repairs(desk):
    case = move_in_in_rectification(desk)
    desk.fire(case, "dispute", "wang", dispute_reason="业主不认可整改方案")
    desk.fire(case, "settle_dispute", "sun", resolution="重新验房")
    desk.fire(case, "record_defects", "li")  # the list on file still satisfies 'requires'
    assert len(desk.engine.links(case.id)) == len(DEFECTS)


def test_available_triggers_see_a_delegation_valid_at_the_virtual_time(desk):
    case = repair_awaiting_approval(desk, "800")
    desk.engine.delegate("wang", "sun", starts_at=desk.now, ends_at=desk.now + timedelta(days=1),
                         actor="sun", now=desk.now)
    assert desk.fire(case, "approve", "wang", approver="wang", approved_amount="800").state == "approved"
    other = repair_awaiting_approval(desk, "800")
    assert desk.can(other, "wang") == ["approve"]
