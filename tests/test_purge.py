"""Purging personal data of old closed cases: on real SQLite and real PostgreSQL.

The check that matters is a grep: after the purge, a purged customer's phone number, name and
unit appear in no row of any table, while everything reports count is exactly as before.
"""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa

from estateflow import Actor, RoleNotAllowed
from estateflow.engine._schema import metadata
from tests.engine_helpers import snapshot
from tests.helpers import Desk, local, make_engine

DATA = Path(__file__).parent / "data" / "import"
CUTOFF = date(2025, 10, 1)
LATER = local(2026, 1, 5, 9)
ADMIN = Actor("admin", frozenset({"admin"}))
# personal values of the cases that must be purged, and of those that must not
PURGED = ("18800188000", "刘一", "11-1101", "13700137000", "王五", "13500135000", "钱七", "7-1102", "13300000000")
KEPT = ("13900000000", "13600000000", "赵六", "13600136000", "13800138000", "张三", "3-1201")
REPORT_COLUMNS = ("id", "number", "workflow", "revision", "state", "community", "building", "category", "department",
                  "assignee", "priority", "major", "received_at", "created_at", "updated_at", "closed_at", "voided")


@pytest.fixture
def engine(db_url):
    with make_engine(db_url) as e:
        yield e


def grep(engine, text: str) -> list[tuple[str, object]]:
    """Every (table, id) whose row, JSON decoded, contains ``text`` anywhere."""
    hits = []
    with engine.db.connect() as conn:
        for table in metadata.sorted_tables:
            for row in conn.execute(sa.select(table)):
                if text in str(tuple(row)):
                    hits.append((table.name, row[0]))
    return hits


def rows(engine, table: str, *columns: str) -> list[tuple]:
    with engine.db.connect() as conn:
        t = metadata.tables[table]
        selected = [t.c[c] for c in columns] if columns else list(t.c)
        return [tuple(r) for r in conn.execute(sa.select(*selected).order_by(*t.primary_key.columns))]


def build(engine) -> dict[str, str]:
    """A walked complaint closed in September (SMS to the customer, a note quoting the phone),
    two closed cases imported from the old register, an open case, a case voided before and one
    voided after the cut-off."""
    desk = Desk(engine, local(2025, 9, 26, 10))
    walked = desk.open("complaint", channel="hotline", summary="电梯噪音，刘一 来电 18800188000",
                       customer_name="刘一", phone="18800188000", unit="11-1101", building="11")
    desk.fire(walked, "assign", "wang", category="service", severity="ordinary", department="engineering",
              assignee="li")
    desk.fire(walked, "report_back", "li", feedback="已联系业主")
    engine.note(walked.id, "回电 18800188000 无人接听，刘一 稍后回电", actor="wang", now=desk.tick())
    desk.fire(walked, "resolve", "li", resolution="已更换电梯导轨")
    desk.fire(walked, "confirm", "wang")
    desk.fire(walked, "callback", "zhao", callback_rating="satisfied")
    engine.tick(now=desk.tick())
    _import_register(engine)
    still_open = desk.open("complaint", channel="hotline", summary="停车位", customer_name="赵六",
                           phone="13900000000", unit="9-0909")
    early = desk.open("complaint", channel="hotline", summary="重复登记", phone="13300000000")
    engine.void(early.id, "duplicate", actor="wang", now=desk.tick())
    late = desk.open("complaint", channel="hotline", summary="重复登记", phone="13600000000")
    engine.void(late.id, "duplicate", actor="wang", now=local(2025, 10, 5, 9))
    return {"walked": walked.number, "open": still_open.number, "early": early.number, "late": late.number}


def _import_register(engine) -> None:
    """The register's two closed cases (and its open ones: those must keep their data)."""
    report = engine.import_cases(DATA / "complaints.csv", workflow="complaint", now=local(2025, 10, 20, 10),
                                 value_map={"channel": {"电话": "hotline", "来访": "walk_in"},
                                            "category": {"服务": "service", "质量": "quality"}})
    assert report.ok, report.problems


def test_purge_removes_personal_data_everywhere_and_keeps_what_reports_count(engine):
    cases = build(engine)
    for value in PURGED + KEPT:
        assert grep(engine, value), f"fixture should contain {value}"
    assert {t for t, _ in grep(engine, "18800188000")} == {"cases", "case_events", "outbox"}
    before_cases = rows(engine, "cases", *REPORT_COLUMNS)
    before_clocks, before_timers = rows(engine, "sla_clocks"), rows(engine, "timers")
    before_events = rows(engine, "case_events", "id", "case_id", "kind", "trigger", "from_state", "to_state",
                         "actor", "at")

    report = engine.purge(CUTOFF, actor="sun", now=LATER)
    assert report.committed
    assert sorted(report.cases) == sorted([cases["walked"], "TS-2025-000120", "TS-2024-000890", cases["early"]])
    assert report.fields == {"complaint": ["customer_name", "email", "phone", "unit"]}
    assert report.outbox == 3  # the walked case's SMS acknowledgement and result, the voided one's acknowledgement

    for value in PURGED:
        assert grep(engine, value) == [], f"{value} survived the purge"
    for value in KEPT:
        assert grep(engine, value), f"{value} belongs to a case that must not be purged"
    walked = engine.get(cases["walked"])
    assert walked.data["phone"] == "***" and walked.data["customer_name"] == "***" and walked.unit == "***"
    assert walked.data["summary"] == "电梯噪音，*** 来电 ***"
    assert walked.data["resolution"] == "已更换电梯导轨" and walked.data["category"] == "service"
    assert engine.find(text="18800188000") == [] and [c.number for c in engine.find(text=cases["walked"])] == \
        [cases["walked"]]
    [note] = [e for e in engine.history(walked.id) if e.kind == "note"]
    assert note.data["text"] == "回电 *** 无人接听，*** 稍后回电"

    # numbers, states, times, categories, handlers, clocks and timers: untouched
    assert rows(engine, "cases", *REPORT_COLUMNS) == before_cases
    assert rows(engine, "sla_clocks") == before_clocks and rows(engine, "timers") == before_timers
    after_events = rows(engine, "case_events", "id", "case_id", "kind", "trigger", "from_state", "to_state",
                        "actor", "at")
    assert after_events[:len(before_events)] == before_events
    added = after_events[len(before_events):]
    assert [(kind, actor, at) for _i, _c, kind, _t, _f, _s, actor, at in added] == [("purged", "sun", LATER)] * 4
    [purged] = [e for e in engine.history(walked.id) if e.kind == "purged"]
    assert purged.data["closed_before"] == "2025-10-01" and purged.data["outbox"] == 2
    sent = rows(engine, "outbox", "case_id", "recipient", "status", "body")
    assert [(r[1], r[2]) for r in sent if r[0] == walked.id] == [("***", "sent"), ("***", "sent")]
    assert all(walked.number in r[3] for r in sent if r[0] == walked.id)  # the number stays readable


def test_purge_twice_is_harmless_and_dry_run_writes_nothing(engine):
    build(engine)
    before = snapshot(engine)
    dry = engine.purge(CUTOFF, actor=ADMIN, now=LATER, dry_run=True)
    assert dry.dry_run and not dry.committed and dry.count == 4
    assert snapshot(engine) == before
    for value in PURGED:
        assert grep(engine, value)
    real = engine.purge(CUTOFF, actor=ADMIN, now=LATER)
    assert (real.cases, real.events, real.outbox, real.fields) == (dry.cases, dry.events, dry.outbox, dry.fields)
    after = snapshot(engine)
    again = engine.purge(CUTOFF, actor=ADMIN, now=local(2026, 2, 1))
    assert again.count == 0 and snapshot(engine) == after
    wider = engine.purge(date(2025, 11, 1), actor=ADMIN, now=local(2026, 2, 1))
    assert wider.count == 1  # only the case voided on 10-05 is new
    assert grep(engine, "13600000000") == []
    assert engine.get("TS-2025-000153").data["phone"] == "13800138000"  # still open: kept


def test_only_admin_and_personal_data_roles_may_purge_within_their_communities(engine):
    build(engine)
    before = snapshot(engine)
    with pytest.raises(RoleNotAllowed, match="purge personal data of complaint"):
        engine.purge(CUTOFF, actor="li", now=LATER)  # a handler does not see personal data
    assert snapshot(engine) == before
    # li is also a repair_lead, one of the repair workflow's personal_data_roles
    assert engine.purge(CUTOFF, workflow="repair", actor="li", now=LATER).count == 0
    assert engine.purge(CUTOFF, workflow="complaint", actor="gao", now=LATER).count == 0  # serves hillside only
    assert engine.purge(CUTOFF, workflow="complaint", actor="wang", now=LATER).count == 4  # cs_clerk of lakeside
    with pytest.raises(ValueError, match="naive"):
        engine.purge(datetime(2025, 10, 1), actor=ADMIN, now=LATER)
