"""``estateflow demo``: the four shipped workflows walked end to end on SQLite.

The demo runs on a virtual clock starting Friday 2025-09-26 10:00 in Shanghai — the week before
the 2025 National Day holiday, with a make-up working Sunday — so its deadlines show the
working-day rules at work. It recreates its own database file each run.
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from estateflow.engine._directory import StaticDirectory
from estateflow.engine._engine import Engine
from estateflow.engine._types import Actor

__all__ = ["DEMO_ACTORS", "run_demo", "walk_all"]

SHANGHAI = ZoneInfo("Asia/Shanghai")
START = datetime(2025, 9, 26, 10, 0, tzinfo=SHANGHAI)
C = frozenset({"lakeside"})


def _actor(actor_id: str, name: str, *roles: str, departments: tuple[str, ...] = ()) -> Actor:
    return Actor(actor_id, frozenset(roles), C, frozenset(departments), name)


DEMO_ACTORS = [
    _actor("wang", "王客服", "cs_clerk", departments=("customer_service",)),
    _actor("zhao", "赵资料员", "records_clerk", departments=("customer_service",)),
    _actor("li", "李工", "handler", "repair_lead", "engineer", departments=("engineering",)),
    _actor("chen", "陈部长", "department_head", departments=("engineering",)),
    _actor("sun", "孙经理", "cs_manager", departments=("customer_service",)),
    Actor("zhou", frozenset({"deputy_chief_engineer"}), frozenset(), frozenset(), "周副总工"),
    Actor("wu", frozenset({"deputy_gm"}), frozenset(), frozenset(), "吴副总"),
    Actor("zheng", frozenset({"gm"}), frozenset(), frozenset(), "郑总"),
    Actor("qian", frozenset({"finance"}), frozenset(), frozenset(), "钱会计"),
    Actor("feng", frozenset({"auditor"}), frozenset(), frozenset(), "冯审计"),
    Actor("he", frozenset({"contractor"}), frozenset(), frozenset(), "何施工"),
    _actor("lin", "林巡查", "patrol"),
    Actor("owner", frozenset({"applicant"}), frozenset(), frozenset(), "业主"),
]


class _Clock:
    def __init__(self) -> None:
        self.now = START

    def step(self, **delta: float) -> datetime:
        self.now += timedelta(**delta)
        return self.now


def walk_complaint(engine: Engine, clock: _Clock) -> list[str]:
    f = engine.fire
    ordinary = engine.open("complaint", {"channel": "hotline", "customer_name": "张三", "phone": "13800138000",
                                         "community": "lakeside", "building": "3", "unit": "3-1201",
                                         "summary": "电梯噪音大"}, actor="wang", now=clock.now)
    f(ordinary.id, "assign", actor="wang", data={"category": "property_management", "severity": "ordinary",
                                                   "department": "engineering", "assignee": "li"}, now=clock.step(hours=1))
    f(ordinary.id, "report_back", actor="li", data={"feedback": "已联系电梯公司"}, now=clock.step(days=1))
    f(ordinary.id, "resolve", actor="li", data={"resolution": "更换导轨垫片"}, now=clock.step(days=1))
    f(ordinary.id, "confirm", actor="wang", now=clock.step(hours=2))
    f(ordinary.id, "callback", actor="zhao", data={"callback_rating": "satisfied"}, now=clock.step(hours=3))
    major = engine.open("complaint", {"channel": "consumer_association", "customer_name": "李四",
                                      "phone": "13900139000", "community": "lakeside", "unit": "5-0801",
                                      "summary": "交房面积与合同不符，多户联名"}, actor="wang", now=clock.step(hours=1))
    f(major.id, "escalate_major", actor="wang", now=clock.step(minutes=10))
    f(major.id, "set_measures", actor="wu", data={"measures": "成立专项小组复测面积", "meeting_minutes": "专题会议纪要 2025-09",
                                                 "department": "engineering", "assignee": "li"}, now=clock.step(hours=5))
    return [ordinary.number, major.number]


def walk_repair(engine: Engine, clock: _Clock) -> list[str]:
    f = engine.fire
    case = engine.open("repair", {"channel": "hotline", "customer_name": "王五", "phone": "13700137000",
                                  "community": "lakeside", "building": "2", "unit": "2-0302",
                                  "summary": "卫生间渗水到楼下", "category": "leak", "component": "bathroom",
                                  "handover_date": "2023-06-30"}, actor="wang", now=clock.now)
    f(case.id, "survey", actor="li", data={"survey_participants": ["wang", "li", "contractor"],
                                           "responsible_party": "contractor", "estimated_cost": "3200"},
      now=clock.step(hours=3))
    f(case.id, "dispatch_request", actor="li", data={"trades": ["waterproofing", "tiling"]}, now=clock.step(hours=1))
    f(case.id, "review", actor="zhou", data={"reviewer": "zhou"}, now=clock.step(hours=2))
    f(case.id, "approve", actor="wu", data={"approver": "wu", "approved_amount": "3200"}, now=clock.step(hours=2))
    f(case.id, "dispatch", actor="li", data={"assignee": "li", "contractor": "何施工"}, now=clock.step(hours=1))
    f(case.id, "complete", actor="he", data={"final_cost": "3100"}, now=clock.step(days=3))
    f(case.id, "reject_work", actor="wang", data={"customer_comment": "墙角仍有渗水"}, now=clock.step(hours=2))
    f(case.id, "complete", actor="he", data={"final_cost": "3150"}, now=clock.step(days=1))
    f(case.id, "accept", actor="wang", data={"customer_signoff": True, "customer_comment": "满意"}, now=clock.step(hours=2))
    f(case.id, "callback", actor="zhao", data={"callback_rating": "satisfied", "quality_score": 5,
                                               "attitude_score": 5}, now=clock.step(hours=4))
    f(case.id, "audit_done", actor="sun", data={"audited_amount": "3150", "auditor": "sun"}, now=clock.step(days=1))
    for trigger, actor in (("settle", "sun"), ("contractor_confirm", "he"), ("certify", "zhou"), ("deduct", "qian")):
        f(case.id, trigger, actor=actor, now=clock.step(hours=4))
    return [case.number]


def walk_move_in(engine: Engine, clock: _Clock) -> list[str]:
    f = engine.fire
    case = engine.open("move_in", {"customer_name": "赵六", "phone": "13600136000", "community": "lakeside",
                                   "building": "7", "unit": "7-1502"}, actor="wang", now=clock.now)
    f(case.id, "notify_owner", actor="wang", data={"handover_date": "2025-10-15"}, now=clock.step(hours=2))
    f(case.id, "start_inspection", actor="wang", now=clock.step(days=2))
    f(case.id, "record_defects", actor="li", data={"defects": ["客厅墙面开裂", "主卧窗户关不严"]}, now=clock.step(hours=2))
    f(case.id, "hand_keys_early", actor="wang", now=clock.step(hours=1))
    f(case.id, "hand_over", actor="wang", data={"keys_handed": True, "documents_handed": True}, now=clock.step(hours=1))
    f(case.id, "file_created", actor="zhao", data={"owner_file": "YZ-7-1502"}, now=clock.step(hours=1))
    spawned = [link.case_id for link in engine.links(case.id) if link.other_id == case.id]
    return [case.number] + [engine.get(i).number for i in spawned]


def walk_renovation(engine: Engine, clock: _Clock) -> list[str]:
    f = engine.fire
    case = engine.open("renovation", {"customer_name": "钱七", "phone": "13500135000", "community": "lakeside",
                                      "building": "9", "unit": "9-0601"}, actor="wang", now=clock.now)
    f(case.id, "preliminary_ok", actor="wang", data={"drawings": ["平面图", "水电图"], "decorator": "美家装饰"},
      now=clock.step(hours=3))
    f(case.id, "approve", actor="sun", now=clock.step(hours=3))
    f(case.id, "reject", actor="li", data={"review_comment": "拆改承重墙，不予通过"}, now=clock.step(days=1))
    f(case.id, "resubmit", actor="owner", data={"drawings": ["平面图（修改）", "水电图"]}, now=clock.step(days=1))
    f(case.id, "preliminary_ok", actor="wang", now=clock.step(hours=2))
    f(case.id, "approve", actor="sun", now=clock.step(hours=2))
    f(case.id, "drawings_ok", actor="li", data={"review_comment": "同意"}, now=clock.step(hours=3))
    f(case.id, "sign", actor="wang", data={"tenant_signed": True, "decorator_signed": True}, now=clock.step(hours=1))
    f(case.id, "issue_permit", actor="qian", data={"fee": "800", "deposit": "3000", "permit_number": "ZX-0601"},
      now=clock.step(hours=1))
    f(case.id, "record_violation", actor="lin", data={"last_violation": "中午施工噪音"}, now=clock.step(days=5))
    f(case.id, "corrected", actor="lin", now=clock.step(days=1))
    f(case.id, "finish_works", actor="owner", now=clock.step(days=20))
    f(case.id, "accept", actor="li", data={"fire_accepted": True}, now=clock.step(days=1))
    f(case.id, "refund_deposit", actor="qian", data={"deductions": "200"}, now=clock.step(days=2))
    return [case.number]


def walk_all(engine: Engine) -> list[str]:
    numbers: list[str] = []
    for walk in (walk_complaint, walk_repair, walk_move_in, walk_renovation):
        numbers += walk(engine, _Clock())
    return numbers


def run_demo(url: str, console: Any, *, as_json: bool = False) -> None:
    from estateflow._cli_cases import case_json, register_table
    from estateflow.cli import emit_json

    if url == "sqlite:///estateflow-demo.db":
        for suffix in ("", "-wal", "-shm"):
            if os.path.exists("estateflow-demo.db" + suffix):
                os.remove("estateflow-demo.db" + suffix)
    with Engine(url, create=True, directory=StaticDirectory(DEMO_ACTORS)) as engine:
        walk_all(engine)
        cases = engine.find(limit=100)
        if as_json:
            emit_json([case_json(c) for c in cases])
            return
        console.print(register_table(cases, title="登记表 Register — estateflow demo"))
        console.print(f"{len(cases)} cases in {engine.url.database}; try: estateflow --db "
                      f"sqlite:///{engine.url.database} history {cases[0].number}")
