"""Durations as written in workflow files: ``3 working days``, ``8个工作小时``, ``90 minutes``.

The unit is always explicit, because the three families count differently (see
:class:`~estateflow.engine._calendar.BusinessCalendar`):

- ``working_days`` count whole working days of the calendar, the start day excluded;
- ``business_hours`` / ``business_minutes`` count only time inside business hours on working days;
- ``days`` count local calendar dates (wall clock), ``hours`` / ``minutes`` count absolute time.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta
from functools import lru_cache
from typing import Literal, get_args

from ._errors import DurationError

__all__ = ["Duration", "DurationUnit"]

DurationUnit = Literal[
    "working_days", "business_hours", "business_minutes", "days", "hours", "minutes"
]
_UNITS: frozenset[str] = frozenset(get_args(DurationUnit))
_WORKING_TIME = frozenset({"working_days", "business_hours", "business_minutes"})

# English singular/plural, then the Chinese forms (个 optional). Whitespace is removed first.
_PATTERN = re.compile(
    r"(?P<amount>\d+)(?:"
    r"(?P<working_days>workingdays?|个?工作日)"
    r"|(?P<business_hours>businesshours?|个?工作小时)"
    r"|(?P<business_minutes>businessminutes?|个?工作分钟)"
    r"|(?P<days>days?|天)"
    r"|(?P<hours>hours?|个?小时)"
    r"|(?P<minutes>minutes?|分钟)"
    r")",
    re.IGNORECASE,
)
_ENGLISH = {
    "working_days": "working day",
    "business_hours": "business hour",
    "business_minutes": "business minute",
    "days": "day",
    "hours": "hour",
    "minutes": "minute",
}
_CALENDAR_DELTA = {
    "days": timedelta(days=1),
    "hours": timedelta(hours=1),
    "minutes": timedelta(minutes=1),
    "business_hours": timedelta(hours=1),
    "business_minutes": timedelta(minutes=1),
}


@dataclass(frozen=True, slots=True)
class Duration:
    """An amount of time in one explicit unit; parse workflow text once with :meth:`parse`."""

    amount: int
    unit: DurationUnit

    def __post_init__(self) -> None:
        if self.unit not in _UNITS:
            raise DurationError(f"{self.amount} {self.unit}", f"unknown unit {self.unit!r}")
        if type(self.amount) is not int or self.amount < 0:
            raise DurationError(
                f"{self.amount} {self.unit}", "the amount must be a whole number >= 0"
            )

    @classmethod
    def parse(cls, text: str | Duration) -> Duration:
        """Read ``"3 working days"``, ``"3个工作日"``, ``"4 hours"``...; a Duration passes through.

        Whitespace is ignored and results are cached, so hot paths may pass text; a clear
        :class:`DurationError` (a ``ValueError``) lists the accepted forms otherwise.
        """
        if isinstance(text, Duration):
            return text
        if not isinstance(text, str):
            raise DurationError(text, f"expected text, got {type(text).__name__}")
        return _parse(text)

    @property
    def is_working_time(self) -> bool:
        """True for units that follow the calendar (working days, business hours/minutes)."""
        return self.unit in _WORKING_TIME

    def as_timedelta(self) -> timedelta:
        """The length as a timedelta: calendar time, or business time for business units.

        ``days`` become 24-hour days here; calendar arithmetic keeps the wall clock instead
        (23 or 25 real hours across a DST change). Working days have no fixed length.
        """
        try:
            return self.amount * _CALENDAR_DELTA[self.unit]
        except KeyError:
            raise DurationError(
                str(self), "working days have no fixed length; use a BusinessCalendar"
            ) from None

    def __str__(self) -> str:
        word = _ENGLISH[self.unit]
        return f"{self.amount} {word}" if self.amount == 1 else f"{self.amount} {word}s"


@lru_cache(maxsize=1024)
def _parse(text: str) -> Duration:
    compact = "".join(text.split())
    match = _PATTERN.fullmatch(compact)
    if match is None:
        raise DurationError(text)
    unit = next(name for name in _UNITS if match.group(name))
    return Duration(int(match.group("amount")), unit)  # type: ignore[arg-type]
