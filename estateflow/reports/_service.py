"""Reports as the Engine offers them: period, scope, masking and a read-only connection.

Why one entry point per report with the same keywords: the CLI, the scheduled weekly mail and
embedding code all build a report the same way, so they cannot disagree on what a week, a
community filter or masking means.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime, timezone
from typing import TYPE_CHECKING, Any, TypeVar

import sqlalchemy as sa

from ..engine._types import Actor
from ._context import ReportContext
from ._labels import LANGUAGES
from ._mask import Masking
from ._period import Period, resolve_period
from ._sql import Scope

if TYPE_CHECKING:
    from ..engine._engine import Engine

__all__ = ["Reports"]

T = TypeVar("T")
When = date | datetime | str | None


class Reports:
    def __init__(self, engine: Engine) -> None:
        from ._mail import ReportMailer

        self.engine = engine
        self.mailer = ReportMailer(engine)
        engine.timer_handlers["report"] = self.mailer.fire

    def calendar_name(self, calendar: str | None = None, workflow: str | None = None) -> str:
        """The calendar periods are cut by: the named one, else the workflow's, else ``cn``."""
        names = self.engine.calendar_set.names
        if calendar is None and workflow is not None:
            calendar = self.engine.workflows().get(None, workflow).spec.calendar
        if calendar is None:
            calendar = "cn" if "cn" in names else names[0]
        if calendar not in names:
            raise LookupError(f"no calendar named {calendar!r}; known: {', '.join(names)}")
        return calendar

    def zone(self, calendar: str | None = None, workflow: str | None = None) -> str:
        """The time zone of :meth:`calendar_name`'s calendar."""
        return self.engine.calendar_set.zone_of(self.calendar_name(calendar, workflow))

    def build(self, builder: Callable[[ReportContext], T], default_period: str, *, conn: sa.Connection | None = None,
              week: str | None = None, month: str | None = None, quarter: str | None = None,
              year: str | int | None = None, start: When = None, end: When = None, period: Period | None = None,
              community: str | None = None, department: str | None = None, workflow: str | None = None,
              actor: Actor | str | None = None, unmasked: bool = False, lang: str = "zh",
              calendar: str | None = None, now: datetime | None = None) -> T:
        if lang not in LANGUAGES:
            raise ValueError(f"language {lang!r} is not supported; one of {', '.join(LANGUAGES)}")
        now = now or datetime.now(timezone.utc)
        if now.tzinfo is None:
            raise ValueError(f"now={now!r} is naive; pass a timezone-aware datetime")
        engine = self.engine
        engine.workflows()
        if workflow is not None and workflow not in engine.workflows().names:
            engine.workflows().get(None, workflow)  # raises WorkflowNotFound naming the known ones
        calendar = self.calendar_name(calendar, workflow)
        zone = engine.calendar_set.zone_of(calendar)
        chosen = resolve_period(default_period, zone, now, week=week, month=month, quarter=quarter, year=year,
                                start=start, end=end, period=period)
        who = engine.resolve_actor(actor) if actor is not None else None
        scope = Scope(community, department, workflow,
                      frozenset(who.communities) if who is not None and who.communities else None)
        masking = Masking(engine, who, unmasked)

        def run(connection: sa.Connection) -> T:
            if connection.dialect.name == "postgresql":
                # JIT compilation cost ~1 s per report query on 1M cases (bench/README.md), more
                # than the queries themselves: a report is a handful of index-driven aggregates.
                connection.exec_driver_sql("SET LOCAL jit = off")
            ctx = ReportContext(engine, connection, chosen, scope, masking, lang, now, calendar)
            masking.check(connection, ctx.workflows())
            return builder(ctx)

        if conn is not None:
            return run(conn)
        with engine._read_db.connect() as connection:
            return run(connection)

    def weekly(self, *, limit: int = 200, **kwargs: Any) -> Any:
        from ._weekly import build_weekly

        return self.build(lambda ctx: build_weekly(ctx, limit=limit), "week", **kwargs)

    def register(self, **kwargs: Any) -> Any:
        from ._register import build_register

        return self.build(build_register, "week", **kwargs)

    def sla(self, **kwargs: Any) -> Any:
        from ._sla import build_sla

        return self.build(build_sla, "month", **kwargs)

    def ratings(self, **kwargs: Any) -> Any:
        from ._ratings import build_ratings

        return self.build(build_ratings, "quarter", **kwargs)
