"""Working-day arithmetic: which days are worked, and when a deadline in working time falls.

Mainland China's working days come from data, not rules: weekends and public holidays are off
and some Saturdays/Sundays are make-up working days (调休), published each year by the State
Council. ``chinesecalendar`` seeds that data; an admin adds next year's schedule as overrides.
Asking about a day with no data raises :class:`CalendarDataMissing` instead of guessing.

Counting rules (PRC Civil Code art. 201/203 for working days):

- ``N working days``: the start day is not counted; the deadline is the close of business of the
  Nth working day after the start day (24:00 when there are no business hours).
- ``N business hours/minutes``: only time inside business hours on working days counts; a start
  outside them counts from the next business start.
- ``N days``: local dates, keeping the wall time (a nonexistent time moves forward);
  ``N hours/minutes``: absolute time.

All elapsed-time maths is done in UTC and all day maths on local dates, so DST zones work.
"""

from __future__ import annotations

import logging
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import date, datetime, time, timedelta, timezone as _timezone
from functools import lru_cache
from itertools import islice
from types import MappingProxyType
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from ._durations import Duration
from ._errors import CalendarDataMissing

__all__ = ["BusinessCalendar"]

log = logging.getLogger(__name__)

_UTC = _timezone.utc
_DAY_SECONDS = 86_400
_ZERO = timedelta(0)
TimeOfDay = str | time  # "HH:MM" or a datetime.time
_Year = tuple[list[int], int]  # sorted working-day ordinals, last covered ordinal of the year


def _seconds(value: TimeOfDay) -> int:
    """Seconds after midnight of ``"HH:MM"`` (``"24:00"`` allowed) or a ``datetime.time``."""
    if isinstance(value, time):
        return value.hour * 3600 + value.minute * 60 + value.second
    hours, sep, minutes = str(value).strip().partition(":")
    if not (sep and hours.isdigit() and minutes.isdigit() and len(minutes) == 2):
        raise ValueError(f"business hours: {value!r} is not a time of day like '09:00'")
    seconds = int(hours) * 3600 + int(minutes) * 60
    if int(minutes) > 59 or seconds > _DAY_SECONDS:
        raise ValueError(f"business hours: {value!r} is not between 00:00 and 24:00")
    return seconds


def _parse_hours(spec: Sequence[tuple[TimeOfDay, TimeOfDay]]) -> tuple[tuple[int, int], ...]:
    """Validate daily half-open intervals: each start < end, sorted, not overlapping."""
    if any(isinstance(pair, (str, time)) for pair in spec):
        raise ValueError(f"business hours {spec!r}: expected (start, end) pairs")
    intervals = tuple((_seconds(a), _seconds(b)) for a, b in spec)
    previous_end = 0
    for (start, end), raw in zip(intervals, spec):
        if start >= end:
            raise ValueError(f"business hours {raw!r}: the start must be before the end")
        if start < previous_end:
            raise ValueError(f"business hours {raw!r}: intervals must be sorted and not overlap")
        previous_end = end
    return intervals


def _hhmm(seconds: int) -> str:
    return f"{seconds // 3600:02d}:{seconds % 3600 // 60:02d}"


@lru_cache(maxsize=None)
def _china_data() -> tuple[frozenset[int], frozenset[int], int, int]:
    """chinesecalendar's tables as ordinals: (days off, make-up working days, first, last year)."""
    from chinese_calendar import constants

    years = [d.year for d in constants.holidays] + [d.year for d in constants.workdays]
    return (
        frozenset(d.toordinal() for d in constants.holidays),
        frozenset(d.toordinal() for d in constants.workdays),
        min(years),
        max(years),
    )


def _aware(value: datetime, what: str = "time") -> datetime:
    if not isinstance(value, datetime) or value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{what} must be a timezone-aware datetime, got {value!r}")
    return value


class BusinessCalendar:
    """Working days and business hours of one time zone; an immutable, hashable value.

    ``country="CN"`` takes mainland China's days off and make-up working days from
    chinesecalendar; another ISO code uses the ``holidays`` package (Saturday and Sunday off
    plus that country's holidays); ``None`` means weekends only. ``overrides`` (date -> True
    for a working day, False for a day off) win over that data. ``covered_years`` names years
    for which the overrides are the complete official schedule: those years count as covered
    (days without an override follow the weekend rule), while a lone override only settles its
    own day. ``data_until`` (a date or a year) cuts the seed data, and ``fallback_weekends``
    replaces :class:`CalendarDataMissing` with weekends-only days and a logged warning.
    """

    __slots__ = (
        "name", "timezone", "country", "data_until", "fallback_weekends", "covered_years",
        "overrides", "_zone", "_hours", "_override_ords", "_seed_first_year", "_seed_last",
        "_years", "_cobs", "_intervals_cache", "_hash",
    )

    def __init__(
        self,
        name: str = "cn",
        *,
        timezone: str = "Asia/Shanghai",
        business_hours: Iterable[tuple[TimeOfDay, TimeOfDay]] = (("09:00", "18:00"),),
        country: str | None = "CN",
        overrides: Mapping[date | str, bool] | None = None,
        covered_years: Iterable[int] = (),
        data_until: date | int | None = None,
        fallback_weekends: bool = False,
    ) -> None:
        try:
            zone = ZoneInfo(str(timezone))
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"calendar {name!r}: unknown time zone {timezone!r}") from None
        if isinstance(data_until, int) and not isinstance(data_until, bool):
            data_until = date(data_until, 12, 31)
        elif isinstance(data_until, datetime) or not isinstance(data_until, (date, type(None))):
            raise ValueError(f"calendar {name!r}: data_until must be a date or a year")
        days = _parse_overrides(overrides or {})
        country = country.upper() if country else None
        put = object.__setattr__
        put(self, "name", name)
        put(self, "timezone", zone.key)
        put(self, "country", country)
        put(self, "data_until", data_until)
        put(self, "fallback_weekends", bool(fallback_weekends))
        put(self, "covered_years", frozenset(int(y) for y in covered_years))
        put(self, "overrides", MappingProxyType(dict(sorted(days.items()))))
        put(self, "_zone", zone)
        put(self, "_hours", _parse_hours(tuple(business_hours)) or ((0, _DAY_SECONDS),))
        put(self, "_override_ords", {d.toordinal(): w for d, w in days.items()})
        first_year, seed_last = self._seed_bounds(country)
        if data_until is not None:
            seed_last = data_until if seed_last is None else min(seed_last, data_until)
        put(self, "_seed_first_year", first_year)
        put(self, "_seed_last", seed_last)
        put(self, "_years", {})
        put(self, "_cobs", {})
        put(self, "_intervals_cache", {})
        put(self, "_hash", hash(self._key()))

    @staticmethod
    def _seed_bounds(country: str | None) -> tuple[int | None, date | None]:
        if country == "CN":
            first, last = _china_data()[2:]
            return first, date(last, 12, 31)
        if country is not None:
            import holidays

            if country not in holidays.list_supported_countries():
                raise ValueError(f"unknown country code {country!r} for the holidays package")
        return None, None

    # -- value semantics -------------------------------------------------------------------

    def __setattr__(self, key: str, value: object) -> None:
        raise AttributeError("BusinessCalendar is immutable; use with_overrides()")

    def _key(self) -> tuple[object, ...]:
        return (
            self.name, self.timezone, self._hours, self.country, tuple(self.overrides.items()),
            tuple(sorted(self.covered_years)), self.data_until, self.fallback_weekends,
        )

    def __eq__(self, other: object) -> bool:
        return isinstance(other, BusinessCalendar) and self._key() == other._key()

    def __hash__(self) -> int:
        return self._hash

    def __repr__(self) -> str:
        return (
            f"BusinessCalendar({self.name!r}, timezone={self.timezone!r}, "
            f"business_hours={self.business_hours!r}, country={self.country!r}, "
            f"overrides={len(self.overrides)} days, covered_years={sorted(self.covered_years)}, "
            f"data_until={self.data_until!r}, fallback_weekends={self.fallback_weekends})"
        )

    @property
    def zone(self) -> ZoneInfo:
        """The calendar's time zone; every result is an aware datetime in it."""
        return self._zone

    @property
    def business_hours(self) -> tuple[tuple[str, str], ...]:
        """Daily half-open business intervals as ("HH:MM", "HH:MM"); 00:00-24:00 if none given."""
        return tuple((_hhmm(a), _hhmm(b)) for a, b in self._hours)

    def with_overrides(
        self, overrides: Mapping[date | str, bool], *, covered_years: Iterable[int] = ()
    ) -> BusinessCalendar:
        """A new calendar with these overrides added (they win over existing ones).

        Pass ``covered_years`` when the overrides are a year's complete official schedule,
        e.g. next year's State Council notice, so that the year counts as covered.
        """
        config = self._config()
        config["overrides"] = {**self.overrides, **_parse_overrides(overrides)}
        config["covered_years"] = self.covered_years | set(covered_years)
        return BusinessCalendar(**config)

    def _config(self) -> dict[str, Any]:
        """The constructor arguments that rebuild this calendar (caches start empty)."""
        return {
            "name": self.name, "timezone": self.timezone, "country": self.country,
            "business_hours": () if self._hours == ((0, _DAY_SECONDS),) else self.business_hours,
            "overrides": dict(self.overrides), "covered_years": self.covered_years,
            "data_until": self.data_until, "fallback_weekends": self.fallback_weekends,
        }

    def __reduce__(self) -> tuple[Any, ...]:
        return _rebuild, (self._config(),)

    # -- which days are worked -------------------------------------------------------------

    def data_range(self) -> tuple[date | None, date | None]:
        """First and last date with holiday data, as one unbroken span (None = unbounded).

        Years covered only through ``covered_years`` beyond a gap are not included; a
        calendar with ``fallback_weekends`` still reports the span of real data.
        """
        full, first_year, end = self.covered_years, self._seed_first_year, self._seed_last
        if first_year is None:
            start = None  # the holidays package and the weekend rule have no first year
        elif end is None or end.year >= first_year:
            start = date(first_year, 1, 1)
        elif full:
            start = date(min(full), 1, 1)
            end = start - timedelta(days=1)
        else:
            return None, None
        while start is not None and start.year - 1 in full:
            start = date(start.year - 1, 1, 1)
        while end is not None:
            if end.year in full and (end.month, end.day) != (12, 31):
                end = date(end.year, 12, 31)
            elif (end.month, end.day) == (12, 31) and end.year + 1 in full:
                end = date(end.year + 1, 12, 31)
            else:
                break
        return start, end

    def is_working_day(self, day: date) -> bool:
        """Whether ``day`` (a local date) is a working day; raises CalendarDataMissing if unknown.

        An override settles its own day even in a year that is otherwise not covered.
        """
        if isinstance(day, datetime) or not isinstance(day, date):
            raise TypeError(f"is_working_day() takes a date, got {day!r}")
        o = day.toordinal()
        if o in self._override_ords:
            return self._override_ords[o]
        ords, last = self._year(day.year, day)
        if o > last:
            raise CalendarDataMissing(self.name, day)
        i = bisect_left(ords, o)
        return i < len(ords) and ords[i] == o

    def _year(self, year: int, asked: date) -> _Year:
        """The year's working-day table, built once; raises for a year without data."""
        entry = self._years.get(year)
        if entry is None:
            entry = self._build_year(year, asked)
            self._years[year] = entry
        return entry

    def _build_year(self, year: int, asked: date) -> _Year:
        first, dec31 = date(year, 1, 1).toordinal(), date(year, 12, 31).toordinal()
        seed_end = first - 1  # the last day of this year that the seed data answers for
        if self._seed_first_year is None or year >= self._seed_first_year:
            seed_end = dec31 if self._seed_last is None else min(dec31, self._seed_last.toordinal())
        limit = dec31
        if seed_end < dec31 and year not in self.covered_years:
            if self.fallback_weekends:
                log.warning(
                    "calendar %r has no holiday data for %d; counting weekends only from %s. "
                    "Load the official schedule with 'estateflow calendar import'.",
                    self.name, year, date.fromordinal(max(first, seed_end + 1)),
                )
            elif seed_end >= first:
                limit = seed_end
            else:
                raise CalendarDataMissing(self.name, asked)
        seed = self._seed(year)
        overrides = self._override_ords
        ords = [
            o for o in range(first, limit + 1)
            if overrides.get(o, seed(o) if o <= seed_end else (o + 6) % 7 < 5)
        ]
        return ords, limit

    def _seed(self, year: int) -> Callable[[int], bool]:
        """A function ordinal -> working? from the seed data for ``year``."""
        if self.country == "CN":
            off, on = _china_data()[:2]
            return lambda o: o in on or (o not in off and (o + 6) % 7 < 5)
        if self.country is not None:
            import holidays

            days = holidays.country_holidays(self.country, years=year)
            return lambda o: (o + 6) % 7 < 5 and date.fromordinal(o) not in days
        return lambda o: (o + 6) % 7 < 5  # ordinal 1 (0001-01-01) was a Monday

    def _working_days(self, first: int, stop: int | None = None) -> Iterator[int]:
        """Working-day ordinals from ``first`` (to ``stop``), raising where data runs out."""
        o = first
        while stop is None or o <= stop:
            day = date.fromordinal(o)
            ords, last = self._year(day.year, day)
            if o > last:
                raise CalendarDataMissing(self.name, day)
            high = last if stop is None else min(last, stop)
            for i in range(bisect_left(ords, o), bisect_right(ords, high)):
                yield ords[i]
            o = high + 1

    # -- business hours of one day ---------------------------------------------------------

    def _intervals(self, o: int) -> tuple[tuple[datetime, datetime], ...]:
        """Day ``o``'s business intervals as UTC instants (a nonexistent wall time moves on)."""
        cached = self._intervals_cache.get(o)
        if cached is None:
            midnight = datetime.fromordinal(o)
            zone = self._zone
            cached = tuple(
                (
                    (midnight + timedelta(seconds=a)).replace(tzinfo=zone).astimezone(_UTC),
                    (midnight + timedelta(seconds=b)).replace(tzinfo=zone).astimezone(_UTC),
                )
                for a, b in self._hours
            )
            self._intervals_cache[o] = cached
        return cached

    def _cob(self, o: int) -> datetime:
        cached = self._cobs.get(o)
        if cached is None:
            cached = self._cobs[o] = self._intervals(o)[-1][1].astimezone(self._zone)
        return cached

    def close_of_business(self, day: date) -> datetime:
        """When business ends on ``day`` (local wall clock; next 00:00 without business hours).

        This is the deadline instant of a working-day count; it does not check that ``day``
        is a working day (use :meth:`is_working_day`).
        """
        return self._cob(day.toordinal())

    def next_business_start(self, moment: datetime) -> datetime:
        """``moment`` itself if inside business hours on a working day, else the next opening.

        Used to defer notices sent outside hours and to find where business time starts.
        """
        now = _aware(moment).astimezone(_UTC)
        for o in self._working_days(now.astimezone(self._zone).toordinal()):
            for start, end in self._intervals(o):
                if now < end:
                    return max(start, now).astimezone(self._zone)
        raise AssertionError("unreachable: _working_days ends by raising")

    # -- arithmetic ------------------------------------------------------------------------

    def add(self, start: datetime, duration: Duration | str) -> datetime:
        """The deadline ``duration`` after ``start``, by the counting rules of this module.

        ``duration`` is a :class:`Duration` or its text ("3 working days", "8个工作小时").
        """
        d = duration if duration.__class__ is Duration else Duration.parse(duration)
        unit, n = d.unit, d.amount  # type: ignore[union-attr]
        if unit == "working_days":
            if getattr(start, "tzinfo", None) is None or start.utcoffset() is None:
                _aware(start, "start")
            local = start.astimezone(self._zone)
            o = local.toordinal()
            ords, last = self._years.get(local.year) or self._year(local.year, local.date())
            if n and o <= last:
                i = bisect_right(ords, o) + n - 1
                if i < len(ords):
                    return self._cob(ords[i])
            return self._add_working_days(local, n)
        if unit == "days":
            local = _aware(start, "start").astimezone(self._zone)
            wall = local.replace(tzinfo=None) + timedelta(days=n)
            return wall.replace(tzinfo=self._zone).astimezone(_UTC).astimezone(self._zone)
        utc = _aware(start, "start").astimezone(_UTC)
        if unit in ("hours", "minutes"):
            return (utc + d.as_timedelta()).astimezone(self._zone)  # type: ignore[union-attr]
        return self._add_business(utc, d.as_timedelta())  # type: ignore[union-attr]

    def _add_working_days(self, local: datetime, n: int) -> datetime:
        """Slow path of :meth:`add`: zero, crossing into another year, or data running out."""
        _, last = self._year(local.year, local.date())
        if local.toordinal() > last:
            raise CalendarDataMissing(self.name, local.date())
        if n == 0:
            return local  # nothing to count: due at once
        day = next(islice(self._working_days(local.toordinal() + 1), n - 1, None))
        return self._cob(day)

    def _add_business(self, start: datetime, amount: timedelta) -> datetime:
        """Walk business intervals from ``start`` (UTC) until ``amount`` has been spent."""
        remaining = amount
        for o in self._working_days(start.astimezone(self._zone).toordinal()):
            for begin, end in self._intervals(o):
                if end <= start:
                    continue
                begin = max(begin, start)
                available = end - begin
                if remaining <= available:
                    return (begin + remaining).astimezone(self._zone)
                remaining -= available
        raise AssertionError("unreachable: _working_days ends by raising")

    def business_time_between(self, start: datetime, end: datetime) -> timedelta:
        """Time inside business hours on working days in [start, end); for elapsed SLA time."""
        s = _aware(start, "start").astimezone(_UTC)
        e = _aware(end, "end").astimezone(_UTC)
        if e < s:
            raise ValueError(f"end {end} is before start {start}")
        if e == s:
            return _ZERO
        last_day = (e - timedelta(microseconds=1)).astimezone(self._zone).toordinal()
        total = _ZERO
        for o in self._working_days(s.astimezone(self._zone).toordinal(), last_day):
            for begin, finish in self._intervals(o):
                low, high = max(begin, s), min(finish, e)
                if high > low:
                    total += high - low
        return total

    def closes_of_business_between(self, start: datetime, end: datetime) -> int:
        """How many working days close (end of business) in [start, end).

        A working-day deadline moves on by this many working days after a pause.
        """
        s = _aware(start, "start").astimezone(_UTC)
        e = _aware(end, "end").astimezone(_UTC)
        if e <= s:
            return 0
        first = s.astimezone(self._zone).toordinal()
        if self._hours[-1][1] == _DAY_SECONDS:
            first -= 1  # yesterday closes at today's 00:00
        last = e.astimezone(self._zone).toordinal()
        return sum(1 for o in self._working_days(first, last) if s <= self._cob(o) < e)

    def at_fraction(self, start: datetime, duration: Duration | str, fraction: float) -> datetime:
        """When ``fraction`` (e.g. 0.75) of ``duration`` from ``start`` has passed; for warnings.

        Working days: that share of the business time of the N counted working days (the start
        day excluded). Business units: that share of the business time. Calendar units: that
        share of the absolute span from ``start`` to ``add(start, duration)``.
        """
        duration = Duration.parse(duration)
        if not fraction >= 0:
            raise ValueError(f"fraction must be >= 0, got {fraction!r}")
        utc = _aware(start, "start").astimezone(_UTC)
        if duration.unit in ("business_hours", "business_minutes"):
            return self._add_business(utc, duration.as_timedelta() * fraction)
        if duration.unit != "working_days":
            span = self.add(start, duration).astimezone(_UTC) - utc
            return (utc + span * fraction).astimezone(self._zone)
        if duration.amount == 0:
            return start.astimezone(self._zone)
        first = utc.astimezone(self._zone).toordinal() + 1
        days = list(islice(self._working_days(first), duration.amount))
        total = sum((b - a for o in days for a, b in self._intervals(o)), _ZERO)
        return self._add_business(self._intervals(days[0])[0][0], total * fraction)


def _rebuild(config: dict[str, Any]) -> BusinessCalendar:
    """Unpickle a calendar (slots plus the immutability guard defeat the default protocol)."""
    return BusinessCalendar(**config)


def _parse_overrides(overrides: Mapping[date | str, bool]) -> dict[date, bool]:
    """Override keys as dates (ISO text allowed, as read from YAML or a form)."""
    result: dict[date, bool] = {}
    for key, working in overrides.items():
        if isinstance(key, str):
            key = date.fromisoformat(key)
        if isinstance(key, datetime) or not isinstance(key, date):
            raise ValueError(f"override key {key!r} must be a date")
        result[key] = bool(working)
    return result
