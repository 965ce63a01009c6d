"""Simulation scenarios: a start time, a cast, and a list of timed steps, read from YAML.

Why a file format of its own rather than a Python script: the people who edit workflow YAML are
admins, not programmers; a scenario lets them replay a week of cases against an edited workflow
and see every deadline move before deploying it. The file is read with the same position-keeping
loader as workflow files, so every mistake is reported as ``FILE:LINE:COLUMN`` and every step
and expectation keeps its line for the report of a refused step or a failed check.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from ._durations import Duration
from ._errors import DurationError, Problem, ScenarioError
from ._yaml import LoadedYaml, load_yaml

__all__ = ["CaseExpectation", "ClockExpectation", "EntryPattern", "Scenario", "ScenarioStep",
           "load_scenario", "parse_scenario", "parse_time"]

ACTIONS = ("open", "fire", "extend", "reassign", "note", "void")
_COMMON = {"as", "actor", "at", "after", "refused"}
_STEP_KEYS = {
    "open": {"open", "alias", "data"} | _COMMON,
    "fire": {"fire", "case", "data"} | _COMMON,
    "extend": {"extend", "case", "approved_by", "add", "due"} | _COMMON,
    "reassign": {"reassign", "assignee", "department", "reason"} | _COMMON,
    "note": {"note", "text"} | _COMMON,
    "void": {"void", "reason"} | _COMMON,
}
_TOP_KEYS = {"scenario", "description", "start", "zone", "workflows", "actors", "calendar", "steps", "expect"}
_CASE_KEYS = {"state", "closed", "voided", "revision", "priority", "major", "assignee", "department",
              "category", "clocks"}
_CLOCK_KEYS = {"status", "due", "breached", "met", "level", "target", "started", "stopped", "cycles"}
PATTERN_KEYS = {"at", "case", "event", "clock", "trigger", "from", "to", "actor", "level", "notice",
                "recipient", "channel", "template", "met", "reason", "due", "old_due"}
_TIME_KEYS = {"at", "due", "old_due", "breached", "started", "stopped"}
_ALIAS = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_NUMBER = re.compile(r"^[A-Z]+-.*\d")
_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}[ T]\d{1,2}:\d{2}(:\d{2})?([+-]\d{2}:?\d{2}|Z)?$")


@dataclass(frozen=True)
class ScenarioStep:
    """One line of the script; ``line``/``column`` point at it in the scenario file."""

    kind: str  # open, fire, extend, reassign, note, void, advance, at
    line: int
    column: int
    case: str | None = None
    workflow: str | None = None
    trigger: str | None = None
    clock: str | None = None
    actor: str | None = None
    alias: str | None = None
    data: Mapping[str, Any] = field(default_factory=dict)
    at: datetime | None = None
    after: Duration | None = None
    refused: str | None = None  # expected refusal: an error class name, or "any"
    options: Mapping[str, Any] = field(default_factory=dict)

    def describe(self) -> str:
        if self.kind == "open":
            return f"open {self.workflow}" + (f" as {self.alias}" if self.alias else "")
        if self.kind == "fire":
            return f"fire {self.trigger} on {self.case}"
        if self.kind == "extend":
            return f"extend {self.clock} on {self.case}"
        if self.kind == "advance":
            return f"advance {self.after}"
        if self.kind == "at":
            return f"at {self.at:%Y-%m-%d %H:%M}" if self.at else "at"
        return f"{self.kind} {self.case}"


@dataclass(frozen=True)
class ClockExpectation:
    name: str
    cycle: int | None  # None: the newest cycle
    line: int
    column: int
    values: Mapping[str, Any]
    positions: Mapping[str, tuple[int, int]] = field(default_factory=dict)  # key -> where its value is

    def where(self, key: str) -> tuple[int, int]:
        return self.positions.get(key, (self.line, self.column))


@dataclass(frozen=True)
class CaseExpectation:
    case: str
    line: int
    column: int
    values: Mapping[str, Any]
    clocks: tuple[ClockExpectation, ...] = ()
    positions: Mapping[str, tuple[int, int]] = field(default_factory=dict)

    def where(self, key: str) -> tuple[int, int]:
        return self.positions.get(key, (self.line, self.column))


@dataclass(frozen=True)
class EntryPattern:
    """Matches timeline entries on the keys given (``at`` as a time, the rest as text)."""

    line: int
    column: int
    fields: Mapping[str, Any]

    def describe(self) -> str:
        return ", ".join(f"{k}={v:%Y-%m-%d %H:%M}" if isinstance(v, datetime) else f"{k}={v}"
                         for k, v in self.fields.items())


@dataclass(frozen=True)
class Scenario:
    title: str
    file: str
    start: datetime
    zone: str
    steps: tuple[ScenarioStep, ...]
    workflows: Path | None = None
    actors: Any = "demo"  # "demo", a Path to actors.yaml, or a mapping like actors.yaml's ``actors:``
    days_off: tuple[date, ...] = ()
    working_days: tuple[date, ...] = ()
    cases: tuple[CaseExpectation, ...] = ()
    timeline: tuple[EntryPattern, ...] = ()
    never: tuple[EntryPattern, ...] = ()

    def opened_workflows(self) -> dict[str, str]:
        """alias -> workflow name, for the aliases the script opens itself."""
        return {s.alias: s.workflow for s in self.steps if s.kind == "open" and s.alias and s.workflow}


def parse_time(text: Any, zone: ZoneInfo) -> datetime:
    """``2025-10-09 10:00`` (local to the scenario's zone) or with an offset; ValueError otherwise."""
    if isinstance(text, datetime):
        return text if text.tzinfo else text.replace(tzinfo=zone)
    if not isinstance(text, str) or not _TIME.match(text.strip()):
        raise ValueError(f"{text!r} is not a time; write 'YYYY-MM-DD HH:MM' (quoted), optionally with an offset")
    value = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    return value if value.tzinfo else value.replace(tzinfo=zone)


def load_scenario(path: str | Path) -> Scenario:
    """Read and check a scenario file; raises :class:`ScenarioError` listing every problem."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ScenarioError([Problem(str(path), 1, 1, f"cannot read scenario: {exc}")]) from None
    return parse_scenario(text, str(path), base=path.parent)


def parse_scenario(text: str, filename: str = "<scenario>", *, base: Path | None = None) -> Scenario:
    loaded = load_yaml(text, filename)
    if loaded.problems:
        raise ScenarioError(loaded.problems)
    reader = _Reader(loaded, base or Path.cwd())
    scenario = reader.scenario()
    if reader.problems:
        raise ScenarioError(sorted(reader.problems, key=lambda p: (p.line, p.column)))
    assert scenario is not None
    return scenario


class _Reader:
    def __init__(self, loaded: LoadedYaml, base: Path) -> None:
        self.loaded = loaded
        self.base = base
        self.problems: list[Problem] = []
        self.zone = ZoneInfo("Asia/Shanghai")
        self.aliases: set[str] = set()

    def problem(self, path: tuple[Any, ...], message: str, hint: str = "", *, key: bool = False) -> None:
        self.problems.append(self.loaded.problem(path, message, hint, key=key))

    def unknown_keys(self, path: tuple[Any, ...], given: Mapping[str, Any], allowed: set[str]) -> None:
        import difflib

        for key in given:
            if key not in allowed:
                close = difflib.get_close_matches(str(key), sorted(allowed), n=1)
                self.problem((*path, key), f"unknown key {key!r}",
                             f"did you mean {close[0]!r}?" if close else f"one of {', '.join(sorted(allowed))}",
                             key=True)

    def time(self, path: tuple[Any, ...], value: Any) -> datetime | None:
        try:
            return parse_time(value, self.zone)
        except ValueError as exc:
            self.problem(path, str(exc))
            return None

    def duration(self, path: tuple[Any, ...], value: Any) -> Duration | None:
        try:
            return Duration.parse(str(value))
        except DurationError as exc:
            self.problem(path, str(exc))
            return None

    # -- top level ------------------------------------------------------------------------
    def scenario(self) -> Scenario | None:
        data = self.loaded.data
        if not isinstance(data, dict):
            self.problem((), "a scenario must be a mapping with 'start:' and 'steps:'")
            return None
        self.unknown_keys((), data, _TOP_KEYS)
        zone_name = str(data.get("zone") or "Asia/Shanghai")
        try:
            self.zone = ZoneInfo(zone_name)
        except (ZoneInfoNotFoundError, ValueError):
            self.problem(("zone",), f"unknown time zone {zone_name!r}", "e.g. Asia/Shanghai")
        start = None
        if "start" not in data:
            self.problem((), "missing required key 'start'", "add start: '2025-09-26 10:00'")
        else:
            start = self.time(("start",), data["start"])
        steps = self.steps(data.get("steps"))
        workflows = None
        if data.get("workflows") is not None:
            workflows = (self.base / str(data["workflows"])).resolve()
            if not workflows.exists():
                self.problem(("workflows",), f"no such file or directory: {workflows}")
        actors = self.actors(data.get("actors", "demo"))
        days_off, working = self.calendar(data.get("calendar"))
        cases, timeline, never = self.expect(data.get("expect"))
        if start is None:
            return None
        return Scenario(title=str(data.get("scenario") or Path(self.loaded.filename).stem),
                        file=self.loaded.filename, start=start, zone=zone_name, steps=tuple(steps),
                        workflows=workflows, actors=actors, days_off=days_off, working_days=working,
                        cases=cases, timeline=timeline, never=never)

    def actors(self, value: Any) -> Any:
        if value == "demo" or value is None:
            return "demo"
        if isinstance(value, str):
            path = (self.base / value).resolve()
            if not path.is_file():
                self.problem(("actors",), f"no such actors file: {path}", "give 'demo', a path or a mapping")
            return path
        if isinstance(value, dict):
            for actor_id, spec in value.items():
                if not isinstance(spec, dict):
                    self.problem(("actors", actor_id), "expected a mapping: {roles: [...], communities: [...]}")
                else:
                    self.unknown_keys(("actors", actor_id), spec,
                                      {"roles", "communities", "departments", "name", "email", "phone"})
            return value
        self.problem(("actors",), "expected 'demo', a path to actors.yaml or a mapping of actors")
        return "demo"

    def calendar(self, value: Any) -> tuple[tuple[date, ...], tuple[date, ...]]:
        if value is None:
            return (), ()
        if not isinstance(value, dict):
            self.problem(("calendar",), "expected {days_off: [dates], working_days: [dates]}")
            return (), ()
        self.unknown_keys(("calendar",), value, {"days_off", "working_days"})
        result: list[tuple[date, ...]] = []
        for key in ("days_off", "working_days"):
            days = []
            for i, item in enumerate(value.get(key) or []):
                try:
                    days.append(date.fromisoformat(str(item)))
                except ValueError:
                    self.problem(("calendar", key, i), f"{item!r} is not a date (YYYY-MM-DD)")
            result.append(tuple(days))
        return result[0], result[1]

    # -- steps ----------------------------------------------------------------------------
    def steps(self, value: Any) -> list[ScenarioStep]:
        if not isinstance(value, list) or not value:
            self.problem(("steps",) if value is not None else (), "expected 'steps:', a list of steps")
            return []
        return [s for i, item in enumerate(value) if (s := self.step(("steps", i), item)) is not None]

    def step(self, path: tuple[Any, ...], item: Any) -> ScenarioStep | None:
        line, column = self.loaded.where(path)
        if isinstance(item, str):
            word, _, rest = item.strip().partition(" ")
            if word == "advance":
                after = self.duration(path, rest)
                return ScenarioStep("advance", line, column, after=after) if after else None
            if word == "at":
                at = self.time(path, rest)
                return ScenarioStep("at", line, column, at=at) if at else None
            self.problem(path, f"unknown step {item!r}", "write 'advance 3 days', 'at 2025-10-09 10:00' or a mapping")
            return None
        if not isinstance(item, dict):
            self.problem(path, "a step must be a mapping (open, fire, extend, reassign, note, void, advance, at)")
            return None
        kinds = [k for k in ACTIONS if k in item]
        if len(kinds) > 1:
            self.problem(path, f"one action per step, found {', '.join(kinds)}")
            return None
        if not kinds:
            if set(item) == {"advance"}:
                after = self.duration((*path, "advance"), item["advance"])
                return ScenarioStep("advance", line, column, after=after) if after else None
            if set(item) == {"at"}:
                at = self.time((*path, "at"), item["at"])
                return ScenarioStep("at", line, column, at=at) if at else None
            self.problem(path, "a step needs one of open, fire, extend, reassign, note, void, advance, at")
            return None
        kind = kinds[0]
        self.unknown_keys(path, item, _STEP_KEYS[kind])
        actor = item.get("as", item.get("actor"))
        if actor is None:
            self.problem(path, f"'{kind}' needs 'as:' (who does it)", "add as: ACTOR_ID")
        at = self.time((*path, "at"), item["at"]) if "at" in item else None
        after = self.duration((*path, "after"), item["after"]) if "after" in item else None
        data = item.get("data") or {}
        if not isinstance(data, dict):
            self.problem((*path, "data"), "expected a mapping of field: value")
            data = {}
        refused = item.get("refused")
        refused = None if refused in (None, False) else ("any" if refused is True else str(refused))
        common = dict(line=line, column=column, actor=None if actor is None else str(actor), at=at, after=after,
                      refused=refused, data=data)
        if kind == "open":
            alias = item.get("alias")
            if alias is not None:
                alias = str(alias)
                if not _ALIAS.match(alias):
                    self.problem((*path, "alias"), f"alias {alias!r} must be a name (letters, digits, '_')")
                elif alias in self.aliases:
                    self.problem((*path, "alias"), f"alias {alias!r} is already used by an earlier step")
                self.aliases.add(alias)
            return ScenarioStep("open", workflow=str(item["open"]), alias=alias, **common)
        if kind == "fire":
            case = self.case_ref((*path, "case"), item.get("case"), path)
            return ScenarioStep("fire", trigger=str(item["fire"]), case=case, **common)
        if kind == "extend":
            case = self.case_ref((*path, "case"), item.get("case"), path)
            options: dict[str, Any] = {"approved_by": item.get("approved_by")}
            if ("add" in item) == ("due" in item):
                self.problem(path, "'extend' needs exactly one of 'add:' (a duration) or 'due:' (a time)")
            elif "add" in item:
                options["add"] = self.duration((*path, "add"), item["add"])
            else:
                options["due"] = self.time((*path, "due"), item["due"])
            return ScenarioStep("extend", clock=str(item["extend"]), case=case, options=options, **common)
        case = self.case_ref((*path, kind), item.get(kind), path)
        options = {k: item[k] for k in ("assignee", "department", "reason", "text") if k in item}
        if kind == "note" and not options.get("text"):
            self.problem(path, "'note' needs 'text:'")
        if kind == "void" and not options.get("reason"):
            self.problem(path, "'void' needs 'reason:'")
        if kind == "reassign" and "assignee" not in options and "department" not in options:
            self.problem(path, "'reassign' needs 'assignee:' and/or 'department:'")
        return ScenarioStep(kind, case=case, options=options, **common)

    def case_ref(self, path: tuple[Any, ...], value: Any, step_path: tuple[Any, ...]) -> str | None:
        if value is None:
            self.problem(step_path, "which case? add 'case:' (an alias given at open, or a case number)")
            return None
        ref = str(value)
        if ref in self.aliases or ref.split(".", 1)[0] in self.aliases or _NUMBER.match(ref):
            return ref
        known = ", ".join(sorted(self.aliases)) or "none yet"
        self.problem(path, f"unknown case {ref!r}", f"aliases opened by earlier steps: {known}")
        return ref

    # -- expectations ---------------------------------------------------------------------
    def expect(self, value: Any) -> tuple[tuple[CaseExpectation, ...], tuple[EntryPattern, ...],
                                          tuple[EntryPattern, ...]]:
        if value is None:
            return (), (), ()
        if not isinstance(value, dict):
            self.problem(("expect",), "expected a mapping with cases:, timeline: and/or never:")
            return (), (), ()
        self.unknown_keys(("expect",), value, {"cases", "timeline", "never"})
        cases = []
        for ref, spec in (value.get("cases") or {}).items():
            path = ("expect", "cases", ref)
            line, column = self.loaded.where(path, key=True)
            if not isinstance(spec, dict):
                self.problem(path, "expected a mapping such as {state: closed}")
                continue
            self.case_ref(path, ref, path)
            self.unknown_keys(path, spec, _CASE_KEYS)
            clocks = []
            for name, clock in (spec.get("clocks") or {}).items():
                cpath = (*path, "clocks", name)
                cline, ccol = self.loaded.where(cpath, key=True)
                if not isinstance(clock, dict):
                    self.problem(cpath, "expected a mapping such as {due: '2025-10-11 18:00'}")
                    continue
                self.unknown_keys(cpath, clock, _CLOCK_KEYS)
                clock_name, _, cycle = str(name).partition("#")
                clocks.append(ClockExpectation(clock_name, int(cycle) if cycle.isdigit() else None, cline, ccol,
                                               self.values(cpath, clock), self.positions(cpath, clock)))
            values = self.values(path, {k: v for k, v in spec.items() if k != "clocks"})
            cases.append(CaseExpectation(str(ref), line, column, values, tuple(clocks), self.positions(path, values)))
        return tuple(cases), self.patterns("timeline", value.get("timeline")), self.patterns("never", value.get("never"))

    def positions(self, path: tuple[Any, ...], spec: Mapping[str, Any]) -> dict[str, tuple[int, int]]:
        return {key: self.loaded.where((*path, key)) for key in spec}

    def values(self, path: tuple[Any, ...], spec: Mapping[str, Any]) -> dict[str, Any]:
        result = {}
        for key, val in spec.items():
            if key in _TIME_KEYS and val not in (None, False):
                val = self.time((*path, key), val)
            result[key] = val
        return result

    def patterns(self, key: str, value: Any) -> tuple[EntryPattern, ...]:
        if value is None:
            return ()
        if not isinstance(value, list):
            self.problem(("expect", key), "expected a list of {at, case, event, ...} entries")
            return ()
        found = []
        for i, item in enumerate(value):
            path = ("expect", key, i)
            if not isinstance(item, dict) or not item:
                self.problem(path, "expected a mapping such as {at: '2025-10-11 18:00', case: leak, event: breach}")
                continue
            self.unknown_keys(path, item, PATTERN_KEYS)
            if "case" in item:
                self.case_ref((*path, "case"), item["case"], path)
            line, column = self.loaded.where(path)
            found.append(EntryPattern(line, column, self.values(path, item)))
        return tuple(found)
