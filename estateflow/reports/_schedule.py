"""The ``reports:`` section of ``estateflow.yaml``: when the weekly report is mailed, to whom.

```yaml
reports:
  weekly:                       # one mapping, or a list of them (e.g. one per community)
    at: "MON 09:00"             # weekday and local time in the calendar's zone
    to: [role:cs_manager]       # role:NAME, an actor id, or an address (address:X to force it)
    channel: email              # a channel of this file (default: log)
    community: lakeside         # optional filters, as for 'estateflow report weekly'
    department: engineering
    workflow: complaint
    language: zh                # zh | en
    calendar: cn                # whose time zone (default: cn)
```

Each problem is reported with the file's line and column, together with every other problem of
the file. Why validate here and not when the report is due: a typo must stop ``estateflow run``
at start-up, not surface as a missing mail on Monday.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import asdict, dataclass
from datetime import datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from ..engine._errors import Problem

__all__ = ["WEEKDAYS", "WeeklySchedule", "check_reports_section"]

WEEKDAYS = ("MON", "TUE", "WED", "THU", "FRI", "SAT", "SUN")
_AT = re.compile(r"^\s*([A-Za-z]{3})\s+([01]?[0-9]|2[0-3]):([0-5][0-9])\s*$")
_KEYS = ("at", "to", "channel", "community", "department", "workflow", "language", "calendar")


@dataclass(frozen=True)
class WeeklySchedule:
    """One scheduled weekly report; ``key`` names it in the timer row (stable across restarts)."""

    key: str
    weekday: int  # 0 = Monday
    at: str  # "09:00"
    to: tuple[str, ...]
    channel: str = "log"
    community: str | None = None
    department: str | None = None
    workflow: str | None = None
    language: str = "zh"
    calendar: str | None = None

    @property
    def local_time(self) -> time:
        hour, minute = self.at.split(":")
        return time(int(hour), int(minute))

    def next_after(self, moment: datetime, zone: str) -> datetime:
        """The first scheduled local time strictly after ``moment``."""
        tz = ZoneInfo(zone)
        local = moment.astimezone(tz)
        day = local.date() + timedelta(days=(self.weekday - local.weekday()) % 7)
        candidate = datetime.combine(day, self.local_time, tzinfo=tz)
        if candidate <= local:
            candidate = datetime.combine(day + timedelta(days=7), self.local_time, tzinfo=tz)
        return candidate

    def payload(self) -> dict[str, Any]:
        data = asdict(self)
        data["to"] = list(self.to)
        data["report"] = "weekly"
        return data

    @classmethod
    def from_payload(cls, payload: dict[str, Any]) -> WeeklySchedule:
        values = {k: payload.get(k) for k in ("key", "weekday", "at", "channel", "community", "department",
                                               "workflow", "language", "calendar")}
        return cls(to=tuple(payload.get("to") or ()), **{k: v for k, v in values.items() if v is not None})


def _key(values: dict[str, Any]) -> str:
    filters = ",".join(f"{k}={values[k]}" for k in ("community", "department", "workflow") if values.get(k))
    return f"weekly[{filters}]" if filters else "weekly"


def check_reports_section(section: Any, loaded: Any, channels: set[str]) -> tuple[list[WeeklySchedule], list[Problem]]:
    """Validate ``reports:``; returns the schedules and every problem found (FILE:LINE:COL)."""
    problems: list[Problem] = []
    if section is None:
        return [], problems

    def add(path: tuple[Any, ...], message: str, hint: str = "", key: bool = False) -> None:
        problems.append(loaded.problem(path, message, hint, key=key))

    if not isinstance(section, dict):
        add(("reports",), "'reports' must be a mapping", "e.g. reports:\\n  weekly:\\n    at: \"MON 09:00\"")
        return [], problems
    for name in section:
        if name != "weekly":
            add(("reports", name), f"unknown report {name!r} under 'reports'",
                "only 'weekly' can be scheduled; run the others with 'estateflow report ...'", key=True)
    entries = section.get("weekly")
    if entries is None:
        return [], problems
    items = list(enumerate(entries)) if isinstance(entries, list) else [(None, entries)]
    schedules: list[WeeklySchedule] = []
    for index, entry in items:
        path = ("reports", "weekly") if index is None else ("reports", "weekly", index)
        schedule = _entry(entry, path, channels, add)
        if schedule is None:
            continue
        if any(s.key == schedule.key for s in schedules):
            add(path, f"two weekly reports for the same scope ({schedule.key})",
                "give each a different community, department or workflow")
            continue
        schedules.append(schedule)
    return schedules, problems


def _entry(entry: Any, path: tuple[Any, ...], channels: set[str], add: Any) -> WeeklySchedule | None:
    if not isinstance(entry, dict):
        add(path, "a weekly report must be a mapping", 'e.g. {at: "MON 09:00", to: [role:cs_manager]}')
        return None
    ok = True
    for name in entry:
        if name not in _KEYS:
            close = difflib.get_close_matches(str(name), _KEYS, n=1)
            add((*path, name), f"unknown option {name!r} for a weekly report",
                f"did you mean {close[0]!r}?" if close else f"options: {', '.join(_KEYS)}", key=True)
            ok = False
    at = entry.get("at", "MON 09:00")
    found = _AT.match(at) if isinstance(at, str) else None
    if found is None or found.group(1).upper() not in WEEKDAYS:
        add((*path, "at"), f"'at' must be a weekday and a local time, not {at!r}",
            'write it quoted, e.g. at: "MON 09:00" (MON TUE WED THU FRI SAT SUN)')
        ok = False
    to = entry.get("to")
    if isinstance(to, str):
        to = [to]
    if not to or not isinstance(to, list) or not all(isinstance(t, str) and t.strip() for t in to):
        add((*path, "to") if "to" in entry else path, "a weekly report needs recipients: 'to'",
            "e.g. to: [role:cs_manager, sun@example.com]", key="to" not in entry)
        ok = False
    channel = entry.get("channel", "log")
    if not isinstance(channel, str) or channel not in channels:
        add((*path, "channel"), f"channel {channel!r} is not defined in 'channels'",
            f"defined: {', '.join(sorted(channels))}")
        ok = False
    language = entry.get("language", "zh")
    if language not in ("zh", "en"):
        add((*path, "language"), f"language {language!r} is not supported", "zh or en")
        ok = False
    for name in ("community", "department", "workflow", "calendar"):
        if name in entry and not isinstance(entry[name], str):
            add((*path, name), f"{name!r} must be text")
            ok = False
    if not ok or found is None:
        return None
    values = {k: entry.get(k) for k in ("community", "department", "workflow", "calendar")}
    return WeeklySchedule(key=_key(values), weekday=WEEKDAYS.index(found.group(1).upper()),
                          at=f"{int(found.group(2)):02d}:{found.group(3)}", to=tuple(t.strip() for t in to),
                          channel=channel, language=language, **values)
