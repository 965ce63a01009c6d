"""Shared set-up for engine tests: actors, a test workflow directory, row snapshots."""

from __future__ import annotations

import shutil
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import sqlalchemy as sa

from estateflow import Actor, Engine, StaticDirectory

SH = ZoneInfo("Asia/Shanghai")
DATA = Path(__file__).parent / "data" / "workflows"
SHIPPED = Path(__file__).resolve().parents[1] / "estateflow" / "workflows"
TABLES = ("cases", "case_events", "sla_clocks", "timers", "outbox", "case_links", "attachments", "sequences")

ACTORS = [
    Actor("clerk", frozenset({"clerk"}), frozenset({"east"}), frozenset({"cs"})),
    Actor("west_clerk", frozenset({"clerk"}), frozenset({"west"}), frozenset({"cs"})),
    Actor("worker", frozenset({"worker"}), frozenset({"east"}), frozenset({"eng"})),
    Actor("other_worker", frozenset({"worker"}), frozenset({"east"}), frozenset({"security"})),
    Actor("boss", frozenset({"boss"})),
    Actor("deputy", frozenset()),
    Actor("admin", frozenset({"admin"})),
]


def at(*args: int) -> datetime:
    return datetime(*args, tzinfo=SH)


def ticket_dir(tmp_path: Path) -> Path:
    target = tmp_path / "workflows"
    target.mkdir(exist_ok=True)
    shutil.copy(DATA / "ticket.yaml", target / "ticket.yaml")
    return target


def make_engine(db_url: str, workflows: Path | list[Path], **kwargs) -> Engine:
    return Engine(db_url, workflows, create=True, directory=StaticDirectory(ACTORS), **kwargs)


def snapshot(engine: Engine) -> dict[str, list[tuple]]:
    """Every row of every case table, to assert that a refused call wrote nothing."""
    with engine.db.connect() as conn:
        return {t: sorted(tuple(map(str, r)) for r in conn.execute(sa.text(f"SELECT * FROM {t}")).all())
                for t in TABLES}


def open_ticket(engine: Engine, now: datetime, **data) -> object:
    values = {"community": "east", "summary": "lift noise", "customer_name": "张三",
              "phone": "13800138000", "unit": "3-1201"}
    values.update(data)
    return engine.open("ticket", values, actor="clerk", now=now)


def start_ticket(engine: Engine, now: datetime, **data) -> object:
    case = open_ticket(engine, now, **data)
    return engine.fire(case.id, "start", actor="clerk", data={"assignee": "worker", "department": "eng"}, now=now)
