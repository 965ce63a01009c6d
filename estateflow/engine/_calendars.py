"""Named calendars with the admin overrides stored in the database.

Why the overrides live in the database and not in a file: the app, cron's ``tick`` and every
daemon must count the same working days. When an admin loads next year's official schedule,
the change and the recomputation of running deadlines commit in one transaction, and every
process picks the new data up from the same rows (checked by a cheap stamp query).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from datetime import date, datetime
from typing import Any

import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict

from ._calendar import BusinessCalendar
from ._schema import calendar_overrides, calendar_years

__all__ = ["CalendarOptions", "CalendarSet"]

log = logging.getLogger(__name__)

# One prebuilt query: how many overrides, their newest time, how many complete years.
_OVERRIDES = (sa.select(sa.func.count().label("n"), sa.func.max(calendar_overrides.c.created_at).label("newest"))
              .where(calendar_overrides.c.calendar == sa.bindparam("w_name")).subquery())
_STAMP = sa.select(_OVERRIDES, sa.select(sa.func.count()).where(
    calendar_years.c.calendar == sa.bindparam("w_name")).scalar_subquery().label("years"))


class CalendarOptions(BaseModel):
    """One named calendar in ``estateflow.yaml``'s ``calendars:`` section."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    country: str | None = "CN"
    timezone: str = "Asia/Shanghai"
    business_hours: list[tuple[str, str]] = [("09:00", "18:00")]
    fallback_weekends: bool = False

    def build(self, name: str) -> BusinessCalendar:
        return BusinessCalendar(name, timezone=self.timezone, business_hours=self.business_hours,
                                country=self.country, fallback_weekends=self.fallback_weekends)


class CalendarSet:
    """The named base calendars plus their database overrides, cached per data stamp."""

    def __init__(self, calendars: Mapping[str, BusinessCalendar] | Iterable[BusinessCalendar] | None = None) -> None:
        if calendars is None:
            calendars = [BusinessCalendar("cn")]
        if isinstance(calendars, Mapping):
            self.base = dict(calendars)
        else:
            self.base = {c.name: c for c in calendars}
        self._cache: dict[str, tuple[Any, BusinessCalendar]] = {}

    @property
    def names(self) -> list[str]:
        return sorted(self.base)

    def zone_of(self, name: str) -> str:
        base = self.base.get(name) or next(iter(self.base.values()))
        return str(base.timezone)

    def _stamp(self, conn: sa.Connection, name: str) -> Any:
        return tuple(conn.execute(_STAMP, {"w_name": name}).one())

    def get(self, conn: sa.Connection, name: str) -> BusinessCalendar:
        """The calendar ``name`` with every stored override applied."""
        if name not in self.base:
            raise LookupError(f"no calendar named {name!r}; known: {', '.join(self.names)}")
        stamp = self._stamp(conn, name)
        cached = self._cache.get(name)
        if cached is not None and cached[0] == stamp:
            return cached[1]
        rows = conn.execute(sa.select(calendar_overrides.c.day, calendar_overrides.c.working)
                            .where(calendar_overrides.c.calendar == name)).all()
        years = conn.execute(sa.select(calendar_years.c.year).where(calendar_years.c.calendar == name)).scalars().all()
        calendar = self.base[name].with_overrides({r.day: r.working for r in rows}, covered_years=years) \
            if rows or years else self.base[name]
        self._cache[name] = (stamp, calendar)
        return calendar

    def store_overrides(self, conn: sa.Connection, name: str, days: Mapping[date, bool], *,
                        covered_years: Iterable[int] = (), source: str, note: str, now: datetime) -> int:
        """Write overrides (replacing any for the same days); returns how many were written."""
        if name not in self.base:
            raise LookupError(f"no calendar named {name!r}; known: {', '.join(self.names)}")
        if days:
            conn.execute(calendar_overrides.delete().where(calendar_overrides.c.calendar == name,
                                                           calendar_overrides.c.day.in_(list(days))))
            conn.execute(calendar_overrides.insert(), [
                {"calendar": name, "day": d, "working": bool(w), "note": note, "source": source, "created_at": now}
                for d, w in sorted(days.items())])
        for year in covered_years:
            conn.execute(calendar_years.delete().where(calendar_years.c.calendar == name,
                                                       calendar_years.c.year == year))
            conn.execute(calendar_years.insert().values(calendar=name, year=year, source=source, created_at=now))
        self._cache.pop(name, None)
        return len(days)

    def reach(self, conn: sa.Connection, name: str) -> date | None:
        """The last date the calendar has data for (None: unbounded, e.g. weekends only)."""
        return self.get(conn, name).data_range()[1]
