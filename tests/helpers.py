"""Shared test helpers: the cast of actors and a desk that drives an engine on a virtual clock.

The actors are the demo's (``estateflow._demo.DEMO_ACTORS``, community ``lakeside``) plus a few
outsiders used to check refusals: a handler of another department and the CS staff of another
community.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from estateflow import Actor, Case, Engine, Event, StaticDirectory
from estateflow._demo import DEMO_ACTORS

__all__ = ["ACTORS", "COMMUNITY", "SHANGHAI", "Desk", "Step", "cli_runner", "local", "make_engine", "years_before"]

SHANGHAI = ZoneInfo("Asia/Shanghai")
COMMUNITY = "lakeside"

# Who is who (DEMO_ACTORS): wang cs_clerk, zhao records_clerk, li handler/repair_lead/engineer
# (engineering), chen department_head (engineering), sun cs_manager, zhou deputy chief engineer,
# wu deputy GM, zheng GM, qian finance, feng auditor, he contractor, lin patrol, owner applicant.
ACTORS = [
    *DEMO_ACTORS,
    Actor("ma", frozenset({"handler"}), frozenset({COMMUNITY}), frozenset({"security"}), "马保安队长"),
    Actor("gao", frozenset({"cs_clerk"}), frozenset({"hillside"}), frozenset({"customer_service"}), "高客服"),
    Actor("tang", frozenset({"cs_manager"}), frozenset({"hillside"}), frozenset({"customer_service"}), "唐经理"),
]


def cli_runner() -> Any:
    """``run(*args, code=0)``: the command line as a user runs it; asserts the exit code and that
    no traceback leaked, returns the output."""
    from click.testing import CliRunner

    from estateflow.cli import main

    runner = CliRunner()

    def run(*args: str, code: int = 0) -> str:
        result = runner.invoke(main, list(args), catch_exceptions=False)
        assert result.exit_code == code, result.output
        assert "Traceback" not in result.output
        return result.output
    return run


def local(*args: int) -> datetime:
    """An aware datetime in Asia/Shanghai: ``local(2025, 9, 26, 10)``."""
    return datetime(*args, tzinfo=SHANGHAI)


def years_before(day: date, years: int) -> date:
    return day.replace(year=day.year - years)


def make_engine(db_url: str) -> Engine:
    return Engine(db_url, create=True, directory=StaticDirectory(ACTORS))


@dataclass(frozen=True)
class Step:
    """One transition row of a case's history, as the register shows it."""

    trigger: str
    source: str
    dest: str
    actor: str
    on_behalf_of: str | None = None

    @classmethod
    def of(cls, event: Event) -> Step:
        return cls(event.trigger, event.from_state, event.to_state, event.actor, event.on_behalf_of)


class Desk:
    """An engine and a virtual clock: every call happens a little after the previous one."""

    def __init__(self, engine: Engine, start: datetime) -> None:
        self.engine = engine
        self.now = start

    def tick(self, **delta: float) -> datetime:
        self.now += timedelta(**(delta or {"minutes": 10}))
        return self.now

    def open(self, workflow: str, actor: str = "wang", **data: Any) -> Case:
        data.setdefault("community", COMMUNITY)
        return self.engine.open(workflow, data, actor=actor, now=self.tick())

    def fire(self, case: Case | int, trigger: str, actor: str, **data: Any) -> Case:
        return self.engine.fire(_id(case), trigger, actor=actor, data=data, now=self.tick())

    def get(self, case: Case | int) -> Case:
        return self.engine.get(_id(case))

    def steps(self, case: Case | int) -> list[Step]:
        """The transition rows of the history, oldest first."""
        return [Step.of(e) for e in self.engine.history(_id(case)) if e.kind == "transition"]

    def events(self, case: Case | int, kind: str) -> list[Event]:
        return [e for e in self.engine.history(_id(case)) if e.kind == kind]

    def last(self, case: Case | int, kind: str = "transition") -> Event:
        """The newest history row of ``kind`` (clocks add rows of their own around each step)."""
        return self.events(case, kind)[-1]

    def can(self, case: Case | int, actor: str) -> list[str]:
        return sorted(self.engine.available_triggers(_id(case), actor, now=self.now))

    def refused(self, case: Case | int, trigger: str, actor: str, error: type[Exception],
                **data: Any) -> Exception:
        """Fire and expect ``error``; assert nothing at all was written."""
        before = self._snapshot(case)
        with pytest.raises(error) as caught:
            self.fire(case, trigger, actor, **data)
        assert self._snapshot(case) == before, f"{trigger} by {actor} was refused but wrote something"
        return caught.value

    def _snapshot(self, case: Case | int) -> tuple[Any, ...]:
        current = self.get(case)
        history = self.engine.history(current.id)
        every_case = self.engine.find(limit=10_000)
        return (current.version, current.state, dict(current.data), current.updated_at, len(history),
                history[-1].id, len(every_case), len(self.engine.links(current.id)))


def _id(case: Case | int) -> int:
    return case if isinstance(case, int) else case.id
