"""Report periods: weeks, months, quarters, years and explicit ranges, in a calendar's zone.

Why local dates: a CS office's week runs Monday 00:00 to Sunday 24:00 *in Shanghai*, so a
case received on Sunday 23:30 local (15:30 UTC) belongs to that week, not to the next one.
Boundaries are computed on local dates and only then turned into UTC instants for the
database, which stores UTC. Every period is half-open: ``start <= t < end``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

__all__ = ["Period", "resolve_period"]

_WEEK = re.compile(r"^(\d{4})-?W(\d{1,2})$", re.IGNORECASE)
_MONTH = re.compile(r"^(\d{4})-(\d{1,2})$")
_QUARTER = re.compile(r"^(\d{4})-?Q([1-4])$", re.IGNORECASE)
_YEAR = re.compile(r"^(\d{4})$")
KINDS = ("week", "month", "quarter", "year")


@dataclass(frozen=True)
class Period:
    """A half-open interval ``[start, end)`` of local time in ``zone``, with a label for people."""

    start: datetime
    end: datetime
    zone: str
    label: str
    kind: str = "range"

    @property
    def start_utc(self) -> datetime:
        return self.start.astimezone(timezone.utc)

    @property
    def end_utc(self) -> datetime:
        return self.end.astimezone(timezone.utc)

    @property
    def first_day(self) -> date:
        return self.start.date()

    @property
    def last_day(self) -> date:
        """The last local date inside the period (its end is exclusive)."""
        return (self.end - timedelta(microseconds=1)).date()

    def days(self) -> list[date]:
        day, result = self.first_day, []
        while day <= self.last_day:
            result.append(day)
            day += timedelta(days=1)
        return result

    def to_dict(self) -> dict[str, str]:
        return {"label": self.label, "kind": self.kind, "zone": self.zone, "start": self.start.isoformat(),
                "end": self.end.isoformat(), "first_day": self.first_day.isoformat(),
                "last_day": self.last_day.isoformat()}


def _midnight(day: date, zone: ZoneInfo) -> datetime:
    return datetime.combine(day, time(0), tzinfo=zone)


def week(year: int, number: int, zone: str) -> Period:
    try:
        monday = date.fromisocalendar(year, number, 1)
    except ValueError:
        raise ValueError(f"{year}-W{number:02d} is not an ISO week (weeks run 1..52 or 53)") from None
    tz = ZoneInfo(zone)
    return Period(_midnight(monday, tz), _midnight(monday + timedelta(days=7), tz), zone,
                  f"{year}-W{number:02d}", "week")


def month(year: int, number: int, zone: str) -> Period:
    if not 1 <= number <= 12:
        raise ValueError(f"{year}-{number:02d} is not a month")
    tz = ZoneInfo(zone)
    following = date(year + (number == 12), number % 12 + 1, 1)
    return Period(_midnight(date(year, number, 1), tz), _midnight(following, tz), zone, f"{year}-{number:02d}",
                  "month")


def quarter(year: int, number: int, zone: str) -> Period:
    tz = ZoneInfo(zone)
    first = date(year, 3 * number - 2, 1)
    following = date(year + (number == 4), (3 * number) % 12 + 1, 1)
    return Period(_midnight(first, tz), _midnight(following, tz), zone, f"{year}-Q{number}", "quarter")


def year(number: int, zone: str) -> Period:
    tz = ZoneInfo(zone)
    return Period(_midnight(date(number, 1, 1), tz), _midnight(date(number + 1, 1, 1), tz), zone, str(number),
                  "year")


def parse(kind: str, text: str, zone: str) -> Period:
    """``2025-W40``, ``2025-09``, ``2025-Q3`` or ``2025`` as a period of ``kind``."""
    text = text.strip()
    patterns = {"week": (_WEEK, "2025-W40"), "month": (_MONTH, "2025-09"), "quarter": (_QUARTER, "2025-Q3"),
                "year": (_YEAR, "2025")}
    pattern, example = patterns[kind]
    found = pattern.match(text)
    if not found:
        raise ValueError(f"{text!r} is not a {kind}; write it like {example}")
    numbers = [int(g) for g in found.groups()]
    if kind == "week":
        return week(numbers[0], numbers[1], zone)
    if kind == "month":
        return month(numbers[0], numbers[1], zone)
    if kind == "quarter":
        return quarter(numbers[0], numbers[1], zone)
    return year(numbers[0], zone)


def last_full(kind: str, now: datetime, zone: str) -> Period:
    """The last complete week (Mon–Sun), month, quarter or year before ``now``, in ``zone``."""
    today = now.astimezone(ZoneInfo(zone)).date()
    if kind == "week":
        iso = (today - timedelta(days=today.weekday() + 7)).isocalendar()
        return week(iso.year, iso.week, zone)
    if kind == "month":
        first = today.replace(day=1) - timedelta(days=1)
        return month(first.year, first.month, zone)
    if kind == "quarter":
        current = (today.month - 1) // 3 + 1
        return quarter(today.year, current - 1, zone) if current > 1 else quarter(today.year - 1, 4, zone)
    if kind == "year":
        return year(today.year - 1, zone)
    raise ValueError(f"unknown period kind {kind!r}; one of {', '.join(KINDS)}")


def _bound(value: date | datetime | str, zone: ZoneInfo, *, end: bool) -> datetime:
    """A local date means its midnight (the day after, for an inclusive end date)."""
    if isinstance(value, str):
        text = value.strip()
        try:
            value = date.fromisoformat(text) if len(text) <= 10 else datetime.fromisoformat(text)
        except ValueError:
            raise ValueError(f"{text!r} is neither a date (2025-09-29) nor a time with offset "
                             f"(2025-09-29T09:00+08:00)") from None
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError(f"{value.isoformat()} has no UTC offset; give a date or an aware time")
        return value.astimezone(zone)
    return _midnight(value + timedelta(days=1) if end else value, zone)


def resolve_period(default: str, zone: str, now: datetime, *, week: str | None = None,
                   month: str | None = None, quarter: str | None = None, year: str | int | None = None,
                   start: date | datetime | str | None = None, end: date | datetime | str | None = None,
                   period: Period | None = None) -> Period:
    """The one period a report covers, from at most one way of naming it.

    ``start``/``end`` are local dates (both inclusive) or aware times (end exclusive); with
    only ``start`` the period runs to ``now``. Without anything, the last full ``default``
    (week, month, quarter or year) before ``now``.
    """
    named = {k: v for k, v in (("week", week), ("month", month), ("quarter", quarter), ("year", year))
             if v is not None}
    ways = len(named) + (start is not None or end is not None) + (period is not None)
    if ways > 1:
        raise ValueError("name the period one way only: a week, month, quarter, year, or from/to")
    if period is not None:
        return period
    if named:
        kind, text = next(iter(named.items()))
        return parse(kind, str(text), zone)
    if start is None and end is None:
        return last_full(default, now, zone)
    if start is None:
        raise ValueError("a period with an end needs a start (--from)")
    tz = ZoneInfo(zone)
    lo = _bound(start, tz, end=False)
    hi = _bound(end, tz, end=True) if end is not None else now.astimezone(tz)
    if hi <= lo:
        raise ValueError(f"the period ends ({hi.isoformat()}) before it starts ({lo.isoformat()})")
    last = (hi - timedelta(microseconds=1)).date()
    label = lo.date().isoformat() if last == lo.date() else f"{lo.date().isoformat()}..{last.isoformat()}"
    return Period(lo, hi, zone, label, "range")
