"""What every report builder needs besides the connection: the engine, scope, masking, words.

Why a small object: each report asks the same questions (which workflows are in scope, which of
their clocks are soft, what a state or clock is called, who an actor id is), and answering
them once per report keeps the builders to their queries.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from ..engine._errors import WorkflowNotFound
from ._labels import label_of
from ._mask import Masking
from ._period import Period
from ._sql import Scope

if TYPE_CHECKING:
    from ..engine._engine import Engine

__all__ = ["ReportContext"]


@dataclass
class ReportContext:
    engine: Engine
    conn: sa.Connection
    period: Period
    scope: Scope
    masking: Masking
    lang: str
    now: datetime
    calendar: str  # the calendar the period was cut by (its zone, its working days)
    _specs: dict[str, Any] = field(default_factory=dict)

    @property
    def dialect(self) -> str:
        return self.conn.dialect.name

    @property
    def cutoff(self) -> datetime:
        """The end of the period, or now when the period has not ended yet (figures 'at the end')."""
        return min(self.period.end_utc, self.now)

    def workflows(self) -> list[str]:
        names = self.engine.workflows().names
        return [self.scope.workflow] if self.scope.workflow else list(names)

    def spec(self, workflow: str) -> Any:
        """The newest revision's spec (labels and clock kinds), or None for an unknown name."""
        if workflow not in self._specs:
            try:
                self._specs[workflow] = self.engine.workflows().get(self.conn, workflow).spec
            except (WorkflowNotFound, LookupError):
                self._specs[workflow] = None
        return self._specs[workflow]

    def soft_clocks(self) -> set[tuple[str, str]]:
        found = set()
        for name in self.workflows():
            spec = self.spec(name)
            for clock_name, clock in (spec.clocks.items() if spec else ()):
                if clock.soft:
                    found.add((name, clock_name))
        return found

    def workflow_title(self, workflow: str | None) -> str:
        spec = self.spec(workflow) if workflow else None
        return label_of(spec.title if spec else None, self.lang, workflow or "")

    def clock_label(self, workflow: str, clock: str) -> str:
        spec = self.spec(workflow)
        declared = spec.clocks.get(clock) if spec else None
        return label_of(declared.label if declared else None, self.lang, clock)

    def state_label(self, workflow: str, state: str) -> str:
        spec = self.spec(workflow)
        declared = spec.states.get(state) if spec else None
        return label_of(declared.label if declared else None, self.lang, state)

    def person(self, actor_id: str | None) -> str | None:
        """``li 李工``: the id people type plus the name they know, when the directory has one."""
        if actor_id is None:
            return None
        directory = self.engine.directory
        found = directory.get(actor_id) if directory is not None else None
        name = getattr(found, "name", "") if found is not None else ""
        return f"{actor_id} {name}" if name else actor_id
