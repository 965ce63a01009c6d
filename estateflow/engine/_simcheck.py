"""Checking a simulation against the scenario's ``expect:`` section.

Kept apart from the runner because the rules of comparison are what admins read when a check
fails: times compare as instants (a scenario writes local times), a target compares as a
duration (``3个工作日`` equals ``3 working days``), and ``timeline`` entries must appear in the
order written, among any others.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from ._durations import Duration
from ._errors import DurationError, EstateflowError
from ._scenario import CaseExpectation, ClockExpectation, EntryPattern

if TYPE_CHECKING:
    from ._simulate import _Run

__all__ = ["check_cases", "check_timeline"]

_CASE_ATTRS = ("state", "priority", "assignee", "department", "category")


def _show(value: Any, run: _Run) -> str:
    if isinstance(value, datetime):
        return value.astimezone(run.zone).strftime("%Y-%m-%d %H:%M %a")
    return "none" if value is None else str(value)


def check_cases(run: _Run, expected: Sequence[CaseExpectation]) -> int:
    """Compare each expected case and clock with the database; returns how many values were checked."""
    checked = 0
    for item in expected:
        try:
            case = run.engine.get(run.case_id(item.case))
        except (EstateflowError, LookupError):
            run.fail(item.line, item.column, f"case {item.case!r}: no such case at the end of the run")
            continue
        for key, want in item.values.items():
            checked += 1
            if key in _CASE_ATTRS:
                got: Any = getattr(case, key)
                ok = str(got) == str(want)
            elif key == "closed":
                got = case.closed_at is not None
                ok = got is bool(want)
            elif key == "voided":
                got = case.voided
                ok = got is bool(want)
            elif key == "major":
                got = case.major
                ok = got is bool(want)
            else:  # revision: 2, "r2" or "name@r2"
                got = case.revision
                ok = str(want).rsplit("@", 1)[-1].lstrip("r") == str(case.revision)
            if not ok:
                run.fail(*item.where(key), f"case {item.case} {key}: expected {_show(want, run)}, "
                                                 f"got {_show(got, run)}")
        for clock in item.clocks:
            checked += _check_clock(run, item.case, clock)
    return checked


def _check_clock(run: _Run, ref: str, expected: ClockExpectation) -> int:
    cycles = [c for c in run.clocks(ref) if c.name == expected.name]
    label = f"case {ref} clock {expected.name}" + (f"#{expected.cycle}" if expected.cycle else "")
    if "cycles" in expected.values:
        if len(cycles) != int(expected.values["cycles"]):
            run.fail(*expected.where("cycles"),
                     f"{label}: expected {expected.values['cycles']} cycles, got {len(cycles)}")
    chosen = [c for c in cycles if expected.cycle in (None, c.cycle)]
    if not chosen:
        run.fail(expected.line, expected.column, f"{label}: never started")
        return len(expected.values)
    status = chosen[-1]
    for key, want in expected.values.items():
        if key == "cycles":
            continue
        if key in ("due", "started", "stopped", "breached"):
            got: Any = {"due": status.due_at, "started": status.started_at, "stopped": status.stopped_at,
                        "breached": status.breached_at}[key]
            ok = (got is None) if want in (None, False) else (got == want)
        elif key == "met":
            got = status.extra.get("met")
            ok = got is want if isinstance(want, bool) or want is None else False
        elif key == "level":
            got = status.escalation_level
            ok = str(got) == str(want)
        elif key == "target":
            got = status.target
            try:
                ok = Duration.parse(str(want)) == Duration.parse(got)
            except DurationError:
                ok = False
        else:
            got = status.status
            ok = str(got) == str(want)
        if not ok:
            run.fail(*expected.where(key), f"{label} {key}: expected {_show(want, run)}, "
                                                     f"got {_show(got, run)}")
    return len(expected.values)


def check_timeline(run: _Run, ordered: Sequence[EntryPattern], never: Sequence[EntryPattern]) -> int:
    """``ordered`` must appear in this order (other entries may come between); ``never`` must not appear."""
    timeline = run.result.timeline
    position = 0
    for pattern in ordered:
        found = next((i for i in range(position, len(timeline)) if run.matches(timeline[i], pattern)), None)
        if found is not None:
            position = found + 1
            continue
        anywhere = [e for e in timeline if run.matches(e, pattern)]
        if anywhere:
            message = (f"timeline entry {{{pattern.describe()}}} happens, but before an entry expected earlier "
                       f"(at {_show(anywhere[0].at, run)})")
        else:
            loose = {k: v for k, v in pattern.fields.items() if k in ("case", "event", "clock", "trigger")}
            similar = [e for e in timeline if run.matches(e, EntryPattern(0, 0, loose))][:3]
            seen = "; ".join(f"{_show(e.at, run)} {e.alias or e.case or ''} {e.event}: {e.text()}" for e in similar)
            message = f"no timeline entry {{{pattern.describe()}}}" + (f" (similar: {seen})" if seen else "")
        run.fail(pattern.line, pattern.column, message)
    for pattern in never:
        for entry in timeline:
            if run.matches(entry, pattern):
                run.fail(pattern.line, pattern.column, f"unexpected timeline entry at {_show(entry.at, run)}: "
                                                       f"{entry.alias or entry.case or ''} {entry.event}: {entry.text()}")
                break
    return len(ordered) + len(never)
