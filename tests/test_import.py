"""Moving in from the old register: every test runs on real SQLite and real PostgreSQL.

The fixtures under tests/data/import/ are registers as Chinese Excel writes them: a title row
above the header, Chinese column titles, dates in three notations, a GB18030 file.
"""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa

from estateflow.engine._import import clocks_in_state
from estateflow.engine._import_rows import parse_local
from estateflow.engine._schema import case_events, outbox, sequences
from tests.engine_helpers import snapshot
from tests.helpers import SHANGHAI, local, make_engine

DATA = Path(__file__).parent / "data" / "import"
NOW = local(2025, 10, 20, 10)  # the import happens on Monday 20 October 2025
COMPLAINT_VALUES = {"channel": {"电话": "hotline", "来访": "walk_in"},
                    "category": {"服务": "service", "质量": "quality"}}
REPAIR_VALUES = {"channel": {"电话": "hotline", "来访": "walk_in"},
                 "category": {"漏水": "leak", "门窗": "door_window", "电路": "electrical"}}


@pytest.fixture
def engine(db_url):
    with make_engine(db_url) as e:
        yield e


def import_complaints(engine, **kwargs):
    kwargs.setdefault("value_map", COMPLAINT_VALUES)
    return engine.import_cases(DATA / "complaints.csv", workflow="complaint", actor="sun", now=NOW, **kwargs)


def clock(engine, number, name, now=NOW):
    [found] = [c for c in engine.clocks(number, now=now) if c.name == name]
    return found


def test_import_keeps_numbers_received_times_and_states_and_moves_the_sequence(engine):
    report = import_complaints(engine)
    assert report.ok and report.committed and report.encoding == "utf-8-sig"
    assert report.numbers == ["TS-2025-000153", "TS-2025-000154", "TS-2025-000120", "TS-2025-000155",
                              "TS-2024-000890", "TS-2025-000140"]
    assert report.generated == ["TS-2025-000155"]  # the row without a number, after the highest given
    assert (report.imported, report.open, report.closed) == (6, 4, 2)
    assert report.sequences == {"TS-2024-{seq}": 890, "TS-2025-{seq}": 155}

    first = engine.get("TS-2025-000153")
    assert first.state == "assigned" and first.assignee == "li" and first.department == "engineering"
    assert first.received_at == local(2025, 9, 26, 14, 30) and first.created_at == NOW
    assert first.data["customer_name"] == "张三" and first.data["channel"] == "hotline"
    assert first.data["category"] == "service" and first.unit == "3-1201"
    assert engine.get("TS-2025-000154").received_at == local(2025, 10, 17, 9, 0)  # 2025/10/17 9:00
    assert engine.get("TS-2025-000120").received_at == local(2025, 9, 1, 10, 0)   # 2025年9月1日 10:00
    assert engine.get("TS-2025-000140").state == "in_progress"                     # label 处理中
    assert engine.get("TS-2025-000155").state == "registered"

    opened = engine.open("complaint", {"channel": "hotline", "community": "lakeside", "summary": "新投诉"},
                         actor="wang", now=local(2025, 10, 20, 11))
    assert opened.number == "TS-2025-000156"  # no collision with any imported number
    [event] = [e for e in engine.history("TS-2025-000153") if e.kind == "imported"]
    assert event.data["source"] == "complaints.csv" and event.data["line"] == 3  # title row is line 1
    assert event.actor == "sun" and event.at == NOW and event.to_state == "assigned"
    assert event.data["received_at"] == "2025-09-26T14:30:00+08:00"


def test_closed_cases_come_in_closed_with_no_clocks(engine):
    import_complaints(engine)
    for number, closed_at in (("TS-2025-000120", local(2025, 9, 5, 16)), ("TS-2024-000890", local(2025, 1, 3, 11, 20))):
        case = engine.get(number)
        assert case.state == "closed" and case.closed_at == closed_at and not case.is_open
        assert engine.clocks(number, now=NOW) == []
        assert [e.kind for e in engine.history(number)] == ["imported"]
    assert engine.get("TS-2025-000120").data["resolution"] == "已开具发票"
    assert {c.number for c in engine.find(open=False)} == {"TS-2025-000120", "TS-2024-000890"}


def test_overdue_imported_case_is_overdue_at_once_without_a_message_per_case(engine):
    report = import_complaints(engine)
    assert report.overdue == ["TS-2025-000153", "TS-2025-000140"]
    # Received Fri 09-26 14:30 + 3 working days (Sun 09-28 was a make-up working day) = Tue 09-30 18:00.
    feedback = clock(engine, "TS-2025-000153", "feedback")
    assert feedback.started_at == local(2025, 9, 26, 14, 30) and feedback.due_at == local(2025, 9, 30, 18)
    assert feedback.breached and feedback.breached_at == local(2025, 9, 30, 18)
    # every ladder step (due, +1 and +2 working days over the National Day holiday) had passed
    assert feedback.escalation_level == 3 and engine.get("TS-2025-000153").priority == "high"
    fresh = clock(engine, "TS-2025-000154", "feedback")
    assert fresh.due_at == local(2025, 10, 22, 18) and not fresh.breached and fresh.status == "running"

    engine.tick(now=local(2025, 10, 20, 10, 1))
    assert clock(engine, "TS-2025-000153", "feedback").breached
    assert clock(engine, "TS-2025-000140", "resolution").breached  # soft 7 days from 09-15
    assert {c.number for c in engine.find(overdue=True, now=local(2025, 10, 20, 10, 1))} == \
        {"TS-2025-000153", "TS-2025-000140"}
    kinds = [(e.kind, e.data.get("imported"), e.data.get("notified")) for e in engine.history("TS-2025-000153")]
    assert ("clock_breach", True, False) in kinds and kinds.count(("escalation", True, False)) == 3
    with engine.db.connect() as conn:
        rows = conn.execute(sa.select(outbox.c.case_id, outbox.c.recipient, outbox.c.subject)).all()
    # one summary alert for the whole import (CS manager and admin), no catch-up per case
    assert [(r.case_id, r.recipient) for r in rows] == [(None, "role:cs_manager"), (None, "role:admin")]
    assert "2 件已超时" in rows[0].subject

    # the imported clocks go on as usual: 154's own breach is sent when it comes
    result = engine.tick(now=local(2025, 10, 22, 18, 1))
    assert ("breach", "TS-2025-000154") in {(kind, number) for _id, kind, number in result.fired}
    assert clock(engine, "TS-2025-000154", "feedback", now=local(2025, 10, 22, 18, 1)).breached


def test_gb18030_register_of_repairs_with_running_and_paused_clocks(engine):
    report = engine.import_cases(DATA / "repairs-gb18030.csv", workflow="repair", value_map=REPAIR_VALUES,
                                 now=NOW)
    assert report.ok and report.encoding == "gb18030", report.problems
    assert report.overdue == ["BX-2025-000032"]
    several = engine.get("BX-2025-000031")
    assert several.data["customer_name"] == "周一" and several.data["trades"] == ["水", "电"]
    assert several.data["summary"] == "卫生间漏水" and several.state == "in_repair"
    # several trades: 7 working days from Tue 10-14 09:00 = Thu 10-23 18:00, still running
    repair = clock(engine, "BX-2025-000031", "repair")
    assert repair.due_at == local(2025, 10, 23, 18) and not repair.breached
    # one trade, received Mon 09-29: 3 working days over the holiday = Fri 10-10 18:00; the
    # ladder's +1 working day is Sat 10-11 (a make-up working day) and +2 is Mon 10-13: all passed
    late = clock(engine, "BX-2025-000032", "repair")
    assert late.due_at == local(2025, 10, 10, 18) and late.breached and late.escalation_level == 3
    waiting = clock(engine, "BX-2025-000033", "repair")
    assert waiting.status == "paused" and not waiting.breached  # awaiting inspection: paused
    assert clock(engine, "BX-2025-000035", "survey").due_at == local(2025, 10, 21, 18)
    assert engine.get("BX-2025-000020").closed_at == local(2025, 9, 12, 17)
    assert engine.open("repair", {"channel": "hotline", "community": "lakeside", "summary": "x"},
                       actor="wang", now=NOW).number == "BX-2025-000036"


def test_xlsx_register_with_a_title_row_and_typed_cells(engine, tmp_path):
    openpyxl = pytest.importorskip("openpyxl")
    book = openpyxl.Workbook()
    sheet = book.active
    sheet.append(["《来电、来访登记表》"])
    sheet.append(["编号", "受理时间", "来源", "客户姓名", "联系电话", "小区", "投诉内容", "状态", "办结时间"])
    sheet.append(["TS-2025-000301", datetime(2025, 10, 13, 9, 15), "电话", "李雷", 13811112222, "lakeside",
                  "车位被占", "已登记", None])
    sheet.append([None] * 9)  # blank rows are skipped, line numbers are kept
    sheet.append(["TS-2025-000302", datetime(2025, 9, 1, 8, 0), "来访", "韩梅梅", 13833334444, "lakeside",
                  "快递丢失", "已办结", datetime(2025, 9, 3, 17, 30)])
    sheet.append(["TS-2025-000303", "2025年10月8日 下午3:00", "电话", "王强", "13855556666", "lakeside",
                  "漏水", "已登记", None])
    path = tmp_path / "register.xlsx"
    book.save(path)
    report = engine.import_cases(path, workflow="complaint", value_map=COMPLAINT_VALUES, now=NOW)
    assert report.ok, report.problems
    assert report.numbers == ["TS-2025-000301", "TS-2025-000302", "TS-2025-000303"]
    first = engine.get("TS-2025-000301")
    assert first.received_at == local(2025, 10, 13, 9, 15) and first.data["phone"] == "13811112222"
    assert engine.get("TS-2025-000302").closed_at == local(2025, 9, 3, 17, 30)
    assert engine.get("TS-2025-000303").received_at == local(2025, 10, 8, 15)
    [event] = [e for e in engine.history("TS-2025-000302") if e.kind == "imported"]
    assert event.data["line"] == 5 and event.data["source"] == "register.xlsx"


def test_a_file_with_bad_rows_reports_every_problem_by_line_and_column_and_writes_nothing(engine):
    engine.open("complaint", {"channel": "hotline", "community": "lakeside", "summary": "已有"},
                actor="wang", now=local(2025, 10, 1, 9), number="TS-2025-000100")
    before = snapshot(engine)
    report = engine.import_cases(DATA / "bad.csv", workflow="complaint", value_map=COMPLAINT_VALUES, now=NOW)
    assert not report.ok and not report.committed and report.imported == 0
    assert [(p.line, p.column) for p in report.problems] == [
        (3, "状态"),        # unknown state 挂起
        (4, "受理时间"),    # 2025-13-40
        (5, "投诉内容"),    # required summary empty
        (6, "来源"),        # 传真 is no channel
        (7, "编号"),        # duplicate of line 2
        (8, "编号"),        # already a case in the database
        (9, "联系电话"),    # does not match the phone pattern
        (10, "办结时间"),   # closed without a closing time
        (11, "办结时间"),   # closed before it was received
        (12, "受理时间"),   # received after the import
        (13, "受理时间"),   # 9月31日 does not exist
        (13, "来源"),       # and 邮寄 is no channel either
    ]
    messages = {(p.line, p.column): p.message for p in report.problems}
    assert "挂起" in messages[(3, "状态")] and "--state-map" in messages[(3, "状态")]
    assert "also on line 2" in messages[(7, "编号")]
    assert "already a case" in messages[(8, "编号")]
    assert "2025-13-40" in messages[(4, "受理时间")]
    assert snapshot(engine) == before


def test_dry_run_writes_nothing_and_reports_what_the_real_run_does(engine):
    before = snapshot(engine)
    dry = import_complaints(engine, dry_run=True)
    assert dry.ok and dry.dry_run and not dry.committed
    assert snapshot(engine) == before
    real = import_complaints(engine)
    assert real.committed
    same = ("rows", "imported", "open", "closed", "overdue", "numbers", "generated", "sequences", "problems",
            "warnings")
    assert {k: getattr(dry, k) for k in same} == {k: getattr(real, k) for k in same}
    bad_dry = engine.import_cases(DATA / "bad.csv", workflow="complaint", value_map=COMPLAINT_VALUES,
                                  now=NOW, dry_run=True)
    bad_real = engine.import_cases(DATA / "bad.csv", workflow="complaint", value_map=COMPLAINT_VALUES, now=NOW)
    assert bad_dry.problems == bad_real.problems and bad_real.problems


def test_mapping_state_map_and_rows_from_an_application(engine):
    rows = [{"Ref": "2024-0153", "When": "2025-10-16 10:00", "Src": "hotline", "Where": "lakeside",
             "What": "噪音", "Status": "完毕", "Done": "2025-10-17 12:00", "Memo": "x"},
            {"Ref": "2024-0154", "When": "2025-10-16 11:00", "Src": "hotline", "Where": "lakeside",
             "What": "漏水", "Status": "待处理", "Done": "", "Memo": ""}]
    mapping = {"Ref": "number", "When": "received_at", "Src": "channel", "Where": "community", "What": "summary",
               "Status": "state", "Done": "closed_at", "Memo": "-"}
    report = engine.import_cases(rows, workflow="complaint", mapping=mapping,
                                 state_map={"完毕": "withdrawn", "待处理": "registered"}, now=NOW)
    assert report.ok and report.warnings == [], report.problems
    assert engine.get("2024-0153").state == "withdrawn" and engine.get("2024-0154").state == "registered"
    with engine.db.connect() as conn:  # numbers outside the pattern can never be generated: no counter
        assert conn.execute(sa.select(sa.func.count()).select_from(sequences)).scalar() == 0
    with pytest.raises(ValueError, match="not a field of complaint"):
        engine.import_cases(rows, workflow="complaint", mapping={"Ref": "reference"}, now=NOW)
    with pytest.raises(ValueError, match="has no state 'done'"):
        engine.import_cases(rows, workflow="complaint", mapping=mapping, state_map={"完毕": "done"}, now=NOW)
    missing = engine.import_cases(rows, workflow="complaint", mapping={"Gone": "number"}, now=NOW)
    assert ("Gone", 1) in {(p.column, p.line) for p in missing.problems}
    assert any("received time" in p.message for p in missing.problems)


def test_an_actor_can_import_only_into_communities_it_serves(engine):
    report = engine.import_cases(DATA / "complaints.csv", workflow="complaint", value_map=COMPLAINT_VALUES,
                                 actor="gao", now=NOW)  # gao serves hillside only
    assert not report.ok and {p.column for p in report.problems} == {"小区"}
    assert len(report.problems) == 6
    with engine.db.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(case_events)).scalar() == 0


def test_register_dates_are_read_in_the_calendar_zone():
    expected = datetime(2025, 9, 26, 14, 30, tzinfo=SHANGHAI)
    for text in ("2025-09-26 14:30", "2025/9/26 14:30", "2025年9月26日 14:30", "2025年9月26日14时30分",
                 "2025.9.26 14:30:00", "２０２５年９月２６日　１４：３０", "2025-09-26T14:30", "2025/9/26 下午2:30",
                 "2025-09-26T06:30Z"):
        assert parse_local(text, SHANGHAI) == expected, text
    assert parse_local("2025-09-26", SHANGHAI) == datetime(2025, 9, 26, tzinfo=SHANGHAI)
    assert parse_local(date(2025, 9, 26), SHANGHAI) == datetime(2025, 9, 26, tzinfo=SHANGHAI)
    assert parse_local(datetime(2025, 9, 26, 14, 30), SHANGHAI) == expected
    for bad in ("26/09/2025", "2025-02-30", "2025-09-26 25:00", "明天", "2025-09-26 14:30 左右"):
        with pytest.raises(ValueError):
            parse_local(bad, SHANGHAI)


def test_clocks_of_a_state_follow_the_shortest_route():
    from estateflow.engine._registry import WorkflowRegistry, default_workflow_dir

    registry = WorkflowRegistry()
    registry.load_paths([default_workflow_dir()])
    repair = registry._files["repair"][0]
    complaint = registry._files["complaint"][0]
    assert clocks_in_state(repair, "registered") == {"survey": "running"}
    assert clocks_in_state(repair, "in_repair") == {"repair": "running"}
    assert clocks_in_state(repair, "awaiting_inspection") == {"repair": "paused"}
    assert clocks_in_state(repair, "callback_due") == {"callback": "running"}
    assert clocks_in_state(repair, "closed") == {}
    assert clocks_in_state(complaint, "assigned") == {"feedback": "running", "resolution": "running"}
    assert clocks_in_state(complaint, "major_review") == {"major_measures": "running", "resolution": "running"}
    assert clocks_in_state(complaint, "resolved") == {}


def test_open_with_a_given_number_moves_the_sequence_past_it(engine):
    given = engine.open("complaint", {"channel": "hotline", "community": "lakeside", "summary": "旧系统转入"},
                        actor="wang", now=NOW, number="TS-2025-000041")
    assert given.number == "TS-2025-000041"
    following = engine.open("complaint", {"channel": "hotline", "community": "lakeside", "summary": "新"},
                            actor="wang", now=NOW)
    assert following.number == "TS-2025-000042"
    engine.open("complaint", {"channel": "hotline", "community": "lakeside", "summary": "更早的号"},
                actor="wang", now=NOW, number="TS-2025-000007")  # a lower number never moves it back
    assert engine.open("complaint", {"channel": "hotline", "community": "lakeside", "summary": "再新"},
                       actor="wang", now=NOW).number == "TS-2025-000043"
