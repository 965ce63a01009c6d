"""Whole-file checks for workflow specs, reported as FILE:LINE:COLUMN problems.

Why here and not in pydantic validators: these rules span the file (a transition naming a
state declared elsewhere, a state nobody can reach), and each problem must point at the exact
YAML node, which only the position map of :mod:`._yaml` knows.
"""

from __future__ import annotations

import re
import string
import types
from collections.abc import Collection
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError

from ._bands import check_bands, parse_range
from ._errors import ExpressionError, Problem, WorkflowError
from ._spec import NAME, RESERVED_NAMES, WorkflowSpec
from ._yaml import LoadedYaml, load_yaml

__all__ = ["load_workflow", "load_workflow_file", "parse_duration_or_none"]

_EVENTS = {"opened", "transition", "warning", "breach", "escalation", "closed"}
_CLOCK_POINT = re.compile(r"^(enter|leave|trigger):([a-z][a-z0-9_]*)$")
_NUMBER_KEYS = {"year", "month", "seq"}
_SAMPLE: dict[str, Any] = {"int": 1, "decimal": Decimal(1), "bool": True, "date": date(2025, 9, 1),
                           "datetime": datetime(2025, 9, 1, 9, 0), "list": ["x"]}


def load_workflow_file(path: str | Path, *, actions: Collection[str] | None = None) -> WorkflowSpec:
    """Read and validate one workflow file; raises :class:`WorkflowError` listing every problem."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        before = exc.object[:exc.start]  # valid UTF-8 up to the first bad byte: say where it is
        line_start = before.rfind(b"\n") + 1
        column = len(before[line_start:].decode("utf-8", "replace")) + 1
        raise WorkflowError([Problem(str(path), before.count(b"\n") + 1, column,
                                     f"not UTF-8 text: {exc.reason}",
                                     "save the file as UTF-8, not GBK/GB2312 or another local encoding")]) from None
    except OSError as exc:
        raise WorkflowError([Problem(str(path), 1, 1, f"cannot read file: {exc.strerror}")]) from None
    return load_workflow(text, str(path), actions=actions)


def load_workflow(text: str, filename: str = "<string>", *,
                  actions: Collection[str] | None = None) -> WorkflowSpec:
    """Parse and validate workflow YAML text.

    ``actions``: the names the callback registry provides; when given, a workflow naming any
    other action is an error here rather than a surprise when a case reaches that step.
    """
    loaded = load_yaml(text, filename)
    if loaded.problems:
        raise WorkflowError(_by_position(loaded.problems))
    if loaded.data is None:  # '---', '~' or 'null': YAML found a document, but it holds nothing
        raise WorkflowError([Problem(filename, 1, 1, "the file is empty")])
    if not isinstance(loaded.data, dict):
        raise WorkflowError([loaded.problem((), "a workflow file must be a mapping of keys "
                                            "(name, version, states, transitions, ...)")])
    try:
        spec = WorkflowSpec.model_validate(loaded.data)
    except ValidationError as exc:
        raise WorkflowError(_by_position(_pydantic_problems(loaded, exc))) from None
    problems = _Checker(spec, loaded, actions).run()
    if problems:
        raise WorkflowError(problems)
    return spec


def _by_position(problems: list[Problem]) -> list[Problem]:
    return sorted(problems, key=lambda p: (p.line, p.column))


def _pydantic_problems(loaded: LoadedYaml, exc: ValidationError) -> list[Problem]:
    problems = []
    for error in exc.errors():
        loc = tuple(p for p in error["loc"] if not (isinstance(p, str) and p.startswith(("function-", "nullable"))))
        loc = tuple(p for p in loc if p not in ("Label", "RoleSpec", "StateSpec", "str", "list[str]"))
        kind = error["type"]
        if kind == "extra_forbidden":
            problems.append(loaded.problem(loc, f"unknown key {loc[-1]!r}",
                                           _closest_key_hint(loc), key=True))
            continue
        if kind == "missing":
            where = loc[:-1]
            problems.append(loaded.problem(where, f"missing required key {loc[-1]!r}",
                                           f"add '{loc[-1]}:' here"))
            continue
        if loc[-1:] == ("[key]",) and len(loc) >= 2:  # e.g. a state named 1 or true
            problems.append(loaded.problem(loc[:-1], f"name {loc[-2]!r} must be text",
                                           "use lower-case letters, digits and '_', starting with a letter",
                                           key=True))
            continue
        dotted = ".".join(str(p) for p in loc) or "file"
        hint = ""
        if kind == "string_pattern_mismatch":
            hint = "use lower-case letters, digits and '_', starting with a letter"
        elif kind == "literal_error":
            hint = f"expected {error.get('ctx', {}).get('expected', 'one of the listed values')}"
        problems.append(loaded.problem(loc, f"{dotted}: {error['msg']}", hint))
    return problems


def _closest_key_hint(loc: tuple[Any, ...]) -> str:
    import difflib

    model = _model_at(loc[:-1])
    allowed = sorted(model.model_fields) if model is not None else []
    close = difflib.get_close_matches(str(loc[-1]), allowed, n=1)
    if close:
        return f"did you mean {close[0]!r}?"
    if allowed:
        return f"allowed here: {', '.join(allowed)}"
    return "check the spelling against the YAML reference in the README"


def _model_at(loc: tuple[Any, ...]) -> type[BaseModel] | None:
    """The spec model that the mapping at ``loc`` is read into, if any."""
    annotation: Any = WorkflowSpec
    for part in loc:
        annotation = _unwrap(annotation)
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            field = annotation.model_fields.get(part) if isinstance(part, str) else None
            if field is None:
                return None
            annotation = field.annotation
        elif get_origin(annotation) in (list, dict):
            annotation = get_args(annotation)[-1]
        else:
            return None
    annotation = _unwrap(annotation)
    return annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None


def _unwrap(annotation: Any) -> Any:
    """``Annotated[X, ...]`` → X; ``X | None`` → X (the model, if the union holds one)."""
    while True:
        origin = get_origin(annotation)
        if origin is Annotated:
            annotation = get_args(annotation)[0]
        elif origin in (Union, types.UnionType):
            options = [a for a in get_args(annotation) if a is not type(None)]
            models = [a for a in options if isinstance(a, type) and issubclass(a, BaseModel)]
            annotation = (models or options)[0]
        else:
            return annotation


class _Checker:
    """Cross-reference checks; each adds problems pointing at the offending node."""

    def __init__(self, spec: WorkflowSpec, loaded: LoadedYaml, actions: Collection[str] | None):
        self.spec = spec
        self.loaded = loaded
        self.actions = actions
        self.problems: list[Problem] = []

    def add(self, path: tuple[Any, ...], message: str, hint: str = "", *, key: bool = False) -> None:
        self.problems.append(self.loaded.problem(path, message, hint, key=key))

    def run(self) -> list[Problem]:
        self.check_names()
        self.check_fields()
        self.check_number()
        self.check_states()
        self.check_transitions()
        self.check_graph()
        self.check_bands()
        self.check_clocks()
        self.check_notify()
        self.problems.sort(key=lambda p: (p.line, p.column))
        return self.problems

    # -- names -------------------------------------------------------------------------
    def check_names(self) -> None:
        for section in ("fields", "roles", "states", "clocks", "bands"):
            for name in getattr(self.spec, section):
                if not re.match(NAME, name):
                    self.add((section, name), f"{section[:-1]} name {name!r} is not a valid name",
                             "use lower-case letters, digits and '_', starting with a letter", key=True)
        for name in self.spec.fields:
            if name in RESERVED_NAMES:
                self.add(("fields", name), f"field name {name!r} is reserved",
                         f"reserved names: {', '.join(sorted(RESERVED_NAMES))}", key=True)

    def check_fields(self) -> None:
        for name, field in self.spec.fields.items():
            path = ("fields", name)
            if field.type == "enum" and not field.values:
                self.add(path, f"enum field {name!r} has no 'values'", "list the allowed values")
            if field.type != "enum" and field.values is not None:
                self.add((*path, "values"), f"'values' only applies to enum fields, {name!r} is {field.type}")
            if field.pattern is not None:
                try:
                    re.compile(field.pattern)
                except re.error as exc:
                    self.add((*path, "pattern"), f"invalid regular expression: {exc}")
            if field.default is not None:
                from ._fields import coerce_value

                try:
                    coerce_value(name, field, field.default)
                except ValueError as exc:
                    self.add((*path, "default"), f"default does not fit the field: {exc}")

        if "personal_data_roles" in self.spec.model_fields_set:
            # These roles see personal data and may purge it: a misspelt one would quietly
            # leave the data to nobody but admin.
            for i, role in enumerate(self.spec.personal_data_roles):
                if role not in self.spec.roles and role != "admin":
                    self.add(("personal_data_roles", i), f"unknown role {role!r}",
                             self.suggest(role, self.spec.roles))

    def check_number(self) -> None:
        pattern = self.spec.number
        try:
            keys = [f for _, f, _, _ in string.Formatter().parse(pattern) if f is not None]
        except ValueError as exc:
            self.add(("number",), f"case-number pattern is malformed: {exc}",
                     "e.g. 'TS-{year}-{seq:06d}'")
            return
        if "seq" not in keys:
            self.add(("number",), "case-number pattern has no {seq}", "e.g. 'TS-{year}-{seq:06d}'")
        unknown = [key for key in keys if key not in _NUMBER_KEYS and key not in self.spec.fields]
        for key in unknown:
            self.add(("number",), f"case-number pattern names unknown field {key!r}",
                     "use {year}, {month}, {seq} or a declared field such as {community}")
        if "seq" in keys and not unknown:
            sample = {name: _SAMPLE.get(self.spec.fields[name].type, "x")
                      for name in keys if name in self.spec.fields}
            try:
                pattern.format(**{**sample, "year": 2025, "month": "09", "seq": 1})
            except (ValueError, TypeError, KeyError, IndexError, AttributeError) as exc:
                self.add(("number",), f"case-number pattern cannot be filled in: {exc}",
                         "e.g. 'TS-{year}-{seq:06d}'; {month} is text such as '09', so give it no format")

    # -- states and transitions --------------------------------------------------------
    def check_states(self) -> None:
        initial = [s for s in self.spec.states if self.spec.state(s).initial]
        if not initial:
            self.add(("states",), "no initial state", "mark one state with 'initial: true'", key=True)
        for extra in initial[1:]:
            self.add(("states", extra, "initial"), f"more than one initial state ({', '.join(initial)})",
                     "keep 'initial: true' on exactly one state")
        for name in self.spec.states:
            state = self.spec.state(name)
            if state.initial and state.final:
                self.add(("states", name), f"state {name!r} is both initial and final")
            self.check_actions(("states", name, "on_enter"), state.on_enter)

    def check_actions(self, path: tuple[Any, ...], names: list[str]) -> None:
        if self.actions is None:
            return
        for i, name in enumerate(names):
            if name not in self.actions:
                known = ", ".join(sorted(self.actions)) or "none registered"
                self.add((*path, i), f"unknown action {name!r}",
                         f"register it with engine.register_action or an 'estateflow.actions' "
                         f"entry point (known: {known})")

    def check_transitions(self) -> None:
        states, roles, fields = self.spec.states, self.spec.roles, self.spec.fields
        seen: dict[tuple[str, str], int] = {}
        for i, t in enumerate(self.spec.transitions):
            path = ("transitions", i)
            if t.source != ["*"]:
                for j, src in enumerate(t.source):
                    if src not in states:
                        self.add((*path, "source", j), f"unknown state {src!r}", self.suggest(src, states))
                    elif self.spec.state(src).final:
                        self.add((*path, "source", j), f"final state {src!r} cannot have exits",
                                 "remove 'final: true' or this transition")
            if t.dest is not None and t.dest not in states:
                self.add((*path, "dest"), f"unknown state {t.dest!r}", self.suggest(t.dest, states))
            for j, role in enumerate(t.roles):
                if role not in roles:
                    self.add((*path, "roles", j), f"unknown role {role!r}", self.suggest(role, roles))
            for j, name in enumerate(t.requires):
                if name not in fields:
                    self.add((*path, "requires", j), f"unknown field {name!r}", self.suggest(name, fields))
            for j, name in enumerate(t.accepts):
                if name not in fields:
                    self.add((*path, "accepts", j), f"unknown field {name!r}", self.suggest(name, fields))
            for section in ("set", "defaults"):
                for name, value in getattr(t, section).items():
                    if name not in fields:
                        self.add((*path, section, name), f"unknown field {name!r}",
                                 self.suggest(name, fields), key=True)
                    self.check_value_expr((*path, section, name), value)
            if t.consent is not None and t.consent not in fields:
                self.add((*path, "consent"), f"unknown field {t.consent!r}", self.suggest(t.consent, fields))
            if t.when is not None:
                self.check_condition((*path, "when"), t.when)
            self.check_actions((*path, "actions"), t.actions)
            if t.spawn is not None:
                for name, value in t.spawn.data.items():
                    self.check_value_expr((*path, "spawn", "data", name), value, extra={"item"})
                if t.spawn.each is not None and t.spawn.each not in fields:
                    self.add((*path, "spawn", "each"), f"unknown field {t.spawn.each!r}")
            for src in self.spec.sources(t):
                key = (t.trigger, src)
                if key in seen:
                    earlier = self.spec.transitions[seen[key]]
                    if earlier.when is None:
                        self.add((*path, "trigger"),
                                 f"transition {t.trigger!r} from {src!r} is shadowed by the unconditional "
                                 f"one at transitions[{seen[key]}]", "give the earlier one a 'when' or reorder")
                        break
                    if t.when is not None and earlier.when.strip() == t.when.strip():
                        self.add((*path, "when"), f"transition {t.trigger!r} from {src!r} has the same "
                                 f"condition as transitions[{seen[key]}] and can never be chosen")
                        break
                else:
                    seen[key] = i

    def check_graph(self) -> None:
        if not any(self.spec.state(s).initial for s in self.spec.states):
            return
        named = {s for t in self.spec.transitions for s in self.spec.sources(t)}
        named |= {t.dest for t in self.spec.transitions if t.dest is not None}
        if named - set(self.spec.states):
            # A misspelt source or dest is already reported; the graph it leaves behind would
            # add "unreachable" and "no way out" problems that are only echoes of it.
            return
        edges: dict[str, set[str]] = {s: set() for s in self.spec.states}
        for t in self.spec.transitions:
            for src in self.spec.sources(t):
                if src in edges and t.dest in edges:
                    edges[src].add(t.dest)
                elif src in edges and t.dest is None:
                    edges[src].add(src)
        reached, todo = {self.spec.initial_state}, [self.spec.initial_state]
        while todo:
            for nxt in edges[todo.pop()]:
                if nxt not in reached:
                    reached.add(nxt)
                    todo.append(nxt)
        for name in self.spec.states:
            if name not in reached:
                self.add(("states", name), f"state {name!r} is unreachable from the initial state",
                         "add a transition into it or remove it", key=True)
            elif not self.spec.state(name).final and not (edges[name] - {name}):
                self.add(("states", name), f"state {name!r} is not final and has no way out",
                         "add a transition out of it or mark it 'final: true'", key=True)

    # -- bands, clocks, notifications -------------------------------------------------
    def check_bands(self) -> None:
        for table_name, table in self.spec.bands.items():
            path = ("bands", table_name)
            if table.field not in self.spec.fields:
                self.add((*path, "field"), f"unknown field {table.field!r}")
            elif self.spec.fields[table.field].type not in ("decimal", "int"):
                self.add((*path, "field"), f"band field {table.field!r} must be decimal or int")
            parsed = []
            for i, bound in enumerate(table.bands):
                try:
                    parsed.append(parse_range(bound.name, bound.range))
                except ValueError as exc:
                    self.add((*path, "bands", i, "range"), str(exc))
                for j, role in enumerate(bound.roles):
                    if role not in self.spec.roles:
                        self.add((*path, "bands", i, "roles", j), f"unknown role {role!r}",
                                 self.suggest(role, self.spec.roles))
            if len(parsed) == len(table.bands):
                for message in check_bands(parsed):
                    self.add((*path, "bands"), f"bands {table_name!r}: {message}",
                             "bands must cover [0, inf) exactly once")

    def check_clocks(self) -> None:
        for name, clock in self.spec.clocks.items():
            path = ("clocks", name)
            self.check_duration((*path, "target"), clock.target, allow_expr=True)
            for section in ("start", "stop", "pause", "resume", "restart_on"):
                for i, point in enumerate(getattr(clock, section)):
                    self.check_clock_point((*path, section, i), point)
            if not clock.start:
                self.add(path, f"clock {name!r} has no 'start'", "e.g. start: enter:assigned", key=True)
            for i, warn in enumerate(clock.warn):
                text = warn.strip()
                if text.endswith("%"):
                    try:
                        value = float(text[:-1])
                    except ValueError:
                        value = -1
                    if not 0 < value < 100:
                        self.add((*path, "warn", i), f"warning {warn!r} must be a percentage between 0 and 100")
                elif text.endswith(" before"):
                    self.check_duration((*path, "warn", i), text[: -len(" before")])
                else:
                    self.add((*path, "warn", i), f"warning {warn!r} is neither '75%' nor '4 business hours before'")
            for i, step in enumerate(clock.escalate):
                self.check_duration((*path, "escalate", i, "after"), step.after)
                for j, role in enumerate(step.notify):
                    if role not in self.spec.roles and role not in ("assignee", "handler"):
                        self.add((*path, "escalate", i, "notify", j), f"unknown role {role!r}",
                                 self.suggest(role, [*self.spec.roles, "assignee", "handler"]))
                if step.fire is not None and step.fire not in {t.trigger for t in self.spec.transitions}:
                    self.add((*path, "escalate", i, "fire"), f"unknown trigger {step.fire!r}")
            if clock.calendar_field is not None and clock.calendar_field not in self.spec.fields:
                self.add((*path, "calendar_field"), f"unknown field {clock.calendar_field!r}")

    def check_clock_point(self, path: tuple[Any, ...], point: str) -> None:
        if point == "reassign" and path[2] == "restart_on":
            return
        match = _CLOCK_POINT.match(point)
        if not match:
            self.add(path, f"{point!r} is not 'enter:STATE', 'leave:STATE' or 'trigger:NAME'"
                     + (" (or 'reassign')" if path[2] == "restart_on" else ""))
            return
        kind, name = match.groups()
        if kind in ("enter", "leave") and name not in self.spec.states:
            self.add(path, f"unknown state {name!r}", self.suggest(name, self.spec.states))
        if kind == "trigger" and name not in {t.trigger for t in self.spec.transitions}:
            self.add(path, f"unknown trigger {name!r}")

    def check_duration(self, path: tuple[Any, ...], text: str, *, allow_expr: bool = False) -> None:
        if allow_expr and isinstance(text, str) and text.startswith("="):
            self.check_condition(path, text[1:], kind="target expression")
            return
        problem = parse_duration_or_none(text)
        if problem:
            self.add(path, problem)

    def check_templates(self) -> None:
        """Compile every template in both languages against the documented notice context."""
        from ._expr import default_sandbox
        from ._notices import CONTEXT_NAMES, DEFAULT_TEMPLATES

        known = set(self.spec.templates) | set(DEFAULT_TEMPLATES)
        for name, texts in self.spec.templates.items():
            for language in ("zh", "en"):
                if language not in texts:
                    self.add(("templates", name), f"template {name!r} has no {language!r} text",
                             "give both zh and en", key=True)
            for language, text in texts.items():
                if language not in ("zh", "en"):
                    self.add(("templates", name, language), f"unknown language {language!r}", "zh or en", key=True)
                    continue
                try:
                    default_sandbox().compile_template(str(text), CONTEXT_NAMES)
                except ExpressionError as exc:
                    self.add(("templates", name, language), f"template does not compile: {exc.reason}")
        for i, note in enumerate(self.spec.notify):
            if note.template not in known:
                self.add(("notify", i, "template"), f"unknown template {note.template!r}",
                         self.suggest(note.template, known))
        for name, clock in self.spec.clocks.items():
            for i, step in enumerate(clock.escalate):
                if step.template is not None and step.template not in known:
                    self.add(("clocks", name, "escalate", i, "template"), f"unknown template {step.template!r}",
                             self.suggest(step.template, known))

    def check_notify(self) -> None:
        self.check_templates()
        for i, note in enumerate(self.spec.notify):
            if note.event not in _EVENTS:
                self.add(("notify", i, "event"), f"unknown event {note.event!r}",
                         f"one of {', '.join(sorted(_EVENTS))}")
            if note.when is not None:
                self.check_condition(("notify", i, "when"), note.when)
            for j, clock in enumerate(note.clock):
                if clock not in self.spec.clocks:
                    self.add(("notify", i, "clock", j), f"unknown clock {clock!r}")

    # -- expressions -------------------------------------------------------------------
    def check_condition(self, path: tuple[Any, ...], source: str, *, kind: str = "condition",
                        extra: set[str] = frozenset()) -> None:
        from ._expr import default_sandbox

        try:
            default_sandbox().compile_condition(source, self.spec.variables() | extra)
        except ExpressionError as exc:
            self.add(path, f"{kind} does not compile: {exc.reason}")

    def check_value_expr(self, path: tuple[Any, ...], value: Any, extra: set[str] = frozenset()) -> None:
        if isinstance(value, str) and value.startswith("="):
            self.check_condition(path, value[1:], kind="expression", extra=extra)

    def suggest(self, name: str, known: Collection[str]) -> str:
        import difflib

        close = difflib.get_close_matches(name, list(known), n=1)
        return f"did you mean {close[0]!r}?" if close else f"known: {', '.join(sorted(known))}"


def parse_duration_or_none(text: Any) -> str | None:
    """The reason ``text`` is not a duration, or None if it is one."""
    from ._durations import Duration

    try:
        Duration.parse(str(text))
    except ValueError as exc:
        return str(exc)
    return None
