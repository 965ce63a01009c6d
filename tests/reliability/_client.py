"""A client that opens and moves cases through the public API and remembers what returned.

The client is the oracle's source of truth for transitions: every ``open()``/``fire()`` that
returned is a committed step and must appear in the case's history exactly once, in order;
every call that raised a refusal must appear nowhere. Calls carry strictly increasing virtual
times, so a history row can be matched to its call.
"""

from __future__ import annotations

import random
from collections import defaultdict
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from estateflow import EstateflowError

__all__ = ["Client"]

Entry = tuple[str, "str | None", "str | None", datetime]


class Client:
    def __init__(self, engine: Any, rng: random.Random, *, workflow: str = "relay") -> None:
        self.engine = engine
        self.rng = rng
        self.workflow = workflow
        self.log: dict[int, list[Entry]] = defaultdict(list)
        self.state: dict[int, str] = {}
        self.calls = 0
        self.refused = 0
        self._last: datetime | None = None
        self._opened = 0

    def _now(self, now: datetime) -> datetime:
        if self._last is not None and now <= self._last:
            now = self._last + timedelta(seconds=1)
        self._last = now
        return now

    def open(self, now: datetime) -> int:
        now = self._now(now)
        self._opened += 1
        n = self._opened
        case = self.engine.open(self.workflow, {
            "community": "east", "summary": f"lift noise {n}", "customer_name": "张三",
            "phone": f"1380013{n % 10000:04d}", "unit": f"{n % 30}-{n % 7}01",
            "owner_email": f"owner{n}@example.com"}, actor="clerk", now=now)
        self.calls += 1
        self.log[case.id].append(("opened", None, case.state, now))
        self.state[case.id] = case.state
        return case.id

    def fire(self, case_id: int, trigger: str, actor: str, now: datetime, **data: Any) -> bool:
        now = self._now(now)
        self.calls += 1
        try:
            case = self.engine.fire(case_id, trigger, actor=actor, data=data, now=now)
        except EstateflowError:
            self.refused += 1
            return False
        self.log[case_id].append(("transition", trigger, case.state, now))
        self.state[case_id] = case.state
        return True

    def step(self, now: datetime) -> None:
        """One random call: open a case, or move one (sometimes a call that must be refused)."""
        active = [c for c, s in self.state.items() if s != "done"]
        if len(active) < 5 or self.rng.random() < 0.25:
            self.open(now)
            return
        case_id = self.rng.choice(active)
        state = self.state[case_id]
        roll = self.rng.random()
        if state == "new":
            self.fire(case_id, "start", "clerk", now, assignee="worker", department="eng")
        elif state == "waiting":
            self.fire(case_id, "unpark", "worker", now)
        elif roll < 0.45:
            self.fire(case_id, "park", "worker", now)
        elif roll < 0.75:
            amount = Decimal(self.rng.randrange(0, 100_000)) / 100
            self.fire(case_id, "finish", "worker", now, amount=amount)
        elif roll < 0.9:
            self.fire(case_id, "finish", "worker", now)  # refused: amount is required
        else:
            self.fire(case_id, "finish", "worker", now, amount=Decimal("5000"))  # refused: boss only
