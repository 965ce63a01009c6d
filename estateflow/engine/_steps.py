"""The body of each writing call, run inside the transaction the Engine opened.

Order inside a step matters (TRAPS.md, PostgreSQL): the case row is updated first, which takes
its row lock, and only then are its clocks, timers and outbox rows touched — the same order the
timer loop uses, so ``fire`` and ``tick`` cannot deadlock.
"""

from __future__ import annotations

import string
from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa

from ._bands import band_for, parse_range
from ._errors import (CaseNotFound, ConditionFailed, ExpressionError, FieldProblem, MissingFields,
                      RoleNotAllowed, TransitionError, TriggerNotAllowed)
from ._expr import default_sandbox
from ._fields import from_json, is_missing, to_json, validate_data
from ._registry import Revision
from ._spec import TransitionSpec, WorkflowSpec
from ._schema import case_events, cases
from ._store import INDEXED, row_to_case
from ._types import Actor, Attachment, Case, Event, Link

if TYPE_CHECKING:
    from ._engine import Engine

__all__ = ["Steps"]

ADMIN = "admin"
LINK_KINDS = ("duplicate_of", "related_to", "spawned_from")
_MASK = "***"


class Steps:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.store = engine.store

    # -- context --------------------------------------------------------------------------
    def context(self, spec: WorkflowSpec, case: Mapping[str, Any], data: Mapping[str, Any],
                actor: Actor | None, now: datetime) -> dict[str, Any]:
        """What conditions and templates see: every field (None if unset) plus reserved names."""
        ctx: dict[str, Any] = {name: data.get(name) for name in spec.fields}
        ctx["case"] = dict(case)
        ctx["state"] = case.get("state")
        ctx["actor"] = {"id": actor.id, "roles": sorted(actor.roles)} if actor else None
        ctx["now"] = now
        ctx["band"] = {name: band_for([parse_range(b.name, b.range) for b in table.bands], data.get(table.field))
                       for name, table in spec.bands.items()}
        ctx["in_warranty"] = self.in_warranty(spec, data, now)
        ctx["trigger"] = case.get("trigger")
        ctx["data"] = None
        return ctx

    @staticmethod
    def in_warranty(spec: WorkflowSpec, data: Mapping[str, Any], now: datetime) -> bool | None:
        w = spec.warranty
        if w is None:
            return None
        component, handover = data.get(w.component_field), data.get(w.handover_field)
        if component is None or handover is None or component not in w.years:
            return None
        years = w.years[component]
        if years is None:
            return True
        try:
            end = handover.replace(year=handover.year + years)
        except ValueError:  # 29 February
            end = handover.replace(year=handover.year + years, day=28)
        return now.astimezone(ZoneInfo("Asia/Shanghai")).date() < end

    def evaluate(self, spec: WorkflowSpec, value: Any, ctx: Mapping[str, Any]) -> Any:
        if isinstance(value, str) and value.startswith("="):
            return default_sandbox().compile_condition(value[1:], set(ctx)).value(ctx)
        return value

    # -- open -----------------------------------------------------------------------------
    def open(self, conn: sa.Connection, workflow: str, data: dict[str, Any], actor: Actor,
             now: datetime, received_at: datetime | None, number: str | None,
             parent: tuple[int, str] | None = None) -> Case:
        revision = self.engine.workflows().get(conn, workflow)
        spec = revision.spec
        clean, problems = validate_data(spec.fields, data)
        for name, field in spec.fields.items():
            if name not in clean and field.default is not None:
                clean[name] = validate_data({name: field}, {name: field.default})[0][name]
        for name, field in spec.fields.items():
            if field.required and is_missing(clean.get(name)) and not any(p.field == name for p in problems):
                problems.append(FieldProblem(name, "required"))
        if problems:
            raise MissingFields(f"open {workflow}", problems)
        community = clean.get("community")
        if not actor.serves(community):
            raise RoleNotAllowed(actor.id, f"open a case in community {community!r}", sorted(actor.communities),
                                 "community not served")
        received_at = received_at or now
        if number:
            self.claim_number(conn, spec, number)
        else:
            number = self.make_number(conn, spec, clean, received_at)
        if len(number) > cases.c.number.type.length:  # PostgreSQL would refuse it, SQLite store it
            raise MissingFields(f"open {workflow}", [
                FieldProblem(name, f"makes the case number {number[:20]}... longer than "
                                   f"{cases.c.number.type.length} characters")
                for name in sorted(spec.number_prefix_fields()) or ["number"]])
        state = spec.initial_state
        values = self.row_values(spec, clean, state, number)
        case_id = self.store.insert_case(conn, dict(
            values, workflow=workflow, revision=revision.revision, received_at=received_at,
            created_at=now, updated_at=now, closed_at=None, voided=False, row_version=1,
            data=to_json(clean)))
        self.store.add_event(conn, case_id=case_id, kind="opened", to_state=state, actor=actor.id,
                             data={"fields": to_json(clean), "revision": revision.key}, at=now)
        if parent is not None:
            self.store.add_link(conn, case_id, parent[0], parent[1], actor.id, now)
        row = self.store.load(conn, case_id)
        case = row_to_case(row, clean)
        self.run_actions(spec, spec.state(state).on_enter, case, clean, None, actor, now)
        self.effects(conn, revision, case, None, state, None, actor, now, opened=True)
        self.after(conn, "opened", case, {"revision": revision.key})
        return case

    def make_number(self, conn: sa.Connection, spec: WorkflowSpec, data: Mapping[str, Any],
                    at: datetime) -> str:
        zone = ZoneInfo(self.engine.calendar_zone(spec))
        local = at.astimezone(zone)
        values = {k: ("" if data.get(k) is None else data.get(k)) for k in spec.number_prefix_fields()}
        values.update(year=local.year, month=f"{local.month:02d}")
        key = _render_without_seq(spec.number, values)
        seq = self.store.next_number(conn, key)
        return spec.number.format(seq=seq, **values)

    def claim_number(self, conn: sa.Connection, spec: WorkflowSpec, number: str) -> None:
        """A number given from outside: move its sequence past it so it is never generated again."""
        from ._numbers import number_key

        found = number_key(spec.number, number)
        if found is not None:
            self.store.bump_number_past(conn, *found)

    @staticmethod
    def row_values(spec: WorkflowSpec, data: Mapping[str, Any], state: str, number: str) -> dict[str, Any]:
        values: dict[str, Any] = {name: _text(data.get(name)) for name in INDEXED}
        values["state"] = state
        values["number"] = number
        values["priority"] = str(data.get("priority") or "normal")
        values["major"] = bool(data.get("major") or False)
        words = [number] + [str(data[n]) for n, f in spec.fields.items()
                            if (f.personal or n in ("unit", "building")) and data.get(n) not in (None, "")]
        values["search_text"] = " ".join(words).lower()
        return values

    # -- fire -----------------------------------------------------------------------------
    def fire(self, conn: sa.Connection, key: int | str, trigger: str, actor: Actor,
             data: dict[str, Any], now: datetime, expected_version: int | None) -> Case:
        row = self.store.load(conn, key, for_update=True)
        if expected_version is not None and row.row_version != expected_version:
            raise self.engine.conflict(row.number, expected_version, row.row_version)
        revision = self.engine.workflows().get(conn, row.workflow, row.revision)
        spec = revision.spec
        if row.voided or row.closed_at is not None and not revision.machine.triggers_from(row.state):
            raise TriggerNotAllowed(row.number, trigger, row.state + (" (voided)" if row.voided else ""), [])
        candidates = revision.machine.candidates(trigger, row.state)
        if not candidates:
            raise TriggerNotAllowed(row.number, trigger, row.state, revision.machine.triggers_from(row.state))
        old = from_json(spec.fields, row.data)
        given, problems = validate_data(spec.fields, data)
        if problems:
            raise MissingFields(f"{row.number} {trigger}", problems)
        changed_basis = sorted(name for name in revision.machine.protected_fields(trigger, row.state)
                               if name in given and given[name] != old.get(name))
        if changed_basis:
            raise MissingFields(f"{row.number} {trigger}", [
                FieldProblem(name, f"cannot be changed by {trigger!r}: its condition depends on it")
                for name in changed_basis])
        merged = {**old, **given}
        case_view = self.case_dict(row, trigger)
        self.check_community(actor, row, trigger)
        chosen = revision.machine.choose(trigger, row.state, self.context(spec, case_view, merged, actor, now))
        if chosen is None:
            missing = sorted({name for t in candidates for name in t.requires if is_missing(merged.get(name))})
            if missing:  # tell the form what to fill in rather than that a condition failed
                raise MissingFields(f"{row.number} {trigger}",
                                    [FieldProblem(name, "required for this step") for name in missing])
            raise ConditionFailed(row.number, trigger, [t.when or "true" for t in candidates])
        on_behalf = self.check_roles(conn, spec, chosen, actor, row, now)
        merged = self.apply_assignments(spec, chosen, merged, case_view, actor, now)
        self.check_requires(spec, chosen, merged, row.number)
        dest = chosen.dest or row.state
        before = row_to_case(row, old)
        for name in chosen.actions + (spec.state(dest).on_enter if dest != row.state else []):
            merged = self.run_actions(spec, [name], before, merged, trigger, actor, now)
        closing = spec.state(dest).final
        values = self.row_values(spec, merged, dest, row.number)
        values.update(data=to_json(merged), updated_at=now,
                      closed_at=now if closing else None)
        updated = self.store.update_case(conn, row.id, row.row_version, values)
        if updated is None:
            actual = conn.execute(sa.text("SELECT row_version FROM cases WHERE id = :i"), {"i": row.id}).scalar()
            raise self.engine.conflict(row.number, row.row_version, actual)
        diff = {k: to_json(v) for k, v in merged.items() if old.get(k) != v}
        case = row_to_case(updated, merged)
        with self.store.events_together(conn):
            self.store.add_event(conn, case_id=row.id, kind="transition", trigger=trigger, from_state=row.state,
                                 to_state=dest, actor=actor.id, on_behalf_of=on_behalf, data={"changed": diff},
                                 at=now)
            if chosen.spawn is not None:
                self.spawn(conn, spec, chosen, case, merged, actor, now)
            self.effects(conn, revision, case, row.state, dest, trigger, actor, now)
        self.after(conn, "transition", case, {"trigger": trigger, "from": row.state, "to": dest})
        if closing:
            self.after(conn, "closed", case, {"state": dest})
        return case

    @staticmethod
    def case_dict(row: Any, trigger: str | None = None) -> dict[str, Any]:
        """What conditions see as ``case``; takes a row or a Case (same attribute names)."""
        return {"id": row.id, "number": row.number, "workflow": row.workflow, "state": row.state,
                "community": row.community, "building": row.building, "unit": row.unit,
                "department": row.department, "assignee": row.assignee, "priority": row.priority,
                "major": row.major, "received_at": row.received_at, "created_at": row.created_at,
                "trigger": trigger}

    def check_community(self, actor: Actor, row: Any, what: str) -> None:
        if not actor.serves(row.community) and actor.id != "system":
            raise RoleNotAllowed(actor.id, f"{what} on {row.number}", sorted(actor.communities),
                                 f"case is in community {row.community!r}")

    def role_ok(self, spec: WorkflowSpec, roles: list[str], actor: Actor, row: Any) -> bool:
        if not roles or ADMIN in actor.roles or "system" in actor.roles:
            return True
        for role in roles:
            if role not in actor.roles:
                continue
            scope = spec.role(role).scope
            if scope == "community" and not (not actor.communities or row.community in actor.communities):
                continue
            if scope == "department" and actor.departments and row.department not in actor.departments:
                continue
            return True
        return False

    def check_roles(self, conn: sa.Connection, spec: WorkflowSpec, chosen: TransitionSpec, actor: Actor,
                    row: Any, now: datetime) -> str | None:
        return self.engine.check_roles_or_delegation(
            conn, actor, lambda a: self.role_ok(spec, chosen.roles, a, row),
            f"fire {chosen.trigger!r} on {row.number}", chosen.roles, now)

    def apply_assignments(self, spec: WorkflowSpec, chosen: TransitionSpec, merged: dict[str, Any],
                          case_view: Mapping[str, Any], actor: Actor, now: datetime) -> dict[str, Any]:
        if not chosen.set and not chosen.defaults:
            return merged
        result = dict(merged)
        for section, only_missing in ((chosen.defaults, True), (chosen.set, False)):
            for name, value in section.items():
                if only_missing and not is_missing(result.get(name)):
                    continue
                ctx = self.context(spec, case_view, result, actor, now)
                try:
                    computed = self.evaluate(spec, value, ctx)
                except ExpressionError as exc:
                    raise TransitionError(f"{case_view['number']}: cannot compute {name}: {exc.reason}") from exc
                clean, problems = validate_data({name: spec.fields[name]}, {name: computed})
                if problems:
                    raise MissingFields(f"{case_view['number']} {chosen.trigger}", problems)
                result[name] = clean[name]
        return result

    @staticmethod
    def check_requires(spec: WorkflowSpec, chosen: TransitionSpec, merged: Mapping[str, Any], number: str) -> None:
        needed = list(chosen.requires) + ([chosen.consent] if chosen.consent else [])
        missing = [FieldProblem(name, "required for this step") for name in needed if is_missing(merged.get(name))]
        if missing:
            raise MissingFields(f"{number} {chosen.trigger}", missing)

    def run_actions(self, spec: WorkflowSpec, names: list[str], case: Case | None, data: dict[str, Any],
                    trigger: str | None, actor: Actor, now: datetime) -> dict[str, Any]:
        from ._engine import ActionContext

        for name in names:
            ctx = ActionContext(case, dict(data), trigger, actor, now, spec.name)
            updates = self.engine.call_action(name, ctx)
            if updates:
                clean, problems = validate_data(spec.fields, dict(updates))
                if problems:
                    raise MissingFields(f"action {name}", problems)
                data = {**data, **clean}
        return data

    def spawn(self, conn: sa.Connection, spec: WorkflowSpec, chosen: TransitionSpec, case: Case,
              merged: Mapping[str, Any], actor: Actor, now: datetime) -> None:
        sp = chosen.spawn
        assert sp is not None
        items = list(merged.get(sp.each) or []) if sp.each else [None]
        done = conn.execute(sa.select(case_events.c.data).where(
            case_events.c.case_id == case.id, case_events.c.kind == "spawn")).scalars().all()
        spawned_before = {d.get("item") for d in done} if sp.each else ({None} if done else set())
        base_ctx = self.context(spec, self.case_dict(case), merged, actor, now)
        for item in items:
            if to_json(item) in spawned_before:
                continue
            ctx = dict(base_ctx, item=item)
            data = {name: self.evaluate(spec, value, ctx) for name, value in sp.data.items()}
            child = self.open(conn, sp.workflow, data, actor, now, None, None, parent=(case.id, sp.link))
            self.store.add_event(conn, case_id=case.id, kind="spawn", actor=actor.id, at=now,
                                 data={"item": to_json(item), "case": child.number, "workflow": sp.workflow})

    # -- everyday operations ---------------------------------------------------------------
    def _bump(self, conn: sa.Connection, row: Any, values: Mapping[str, Any], expected: int | None = None) -> None:
        if expected is not None and row.row_version != expected:
            raise self.engine.conflict(row.number, expected, row.row_version)
        if self.store.update_case(conn, row.id, row.row_version, values) is None:
            actual = conn.execute(sa.text("SELECT row_version FROM cases WHERE id = :i"), {"i": row.id}).scalar()
            raise self.engine.conflict(row.number, row.row_version, actual)

    def reassign(self, conn: sa.Connection, key: int | str, assignee: str | None, department: str | None,
                 actor: Actor, reason: str, now: datetime, expected: int | None) -> Case:
        if assignee is None and department is None:
            raise ValueError("reassign needs assignee= and/or department=")
        row = self.store.load(conn, key, for_update=True)
        self.check_community(actor, row, "reassign")
        revision = self.engine.workflows().get(conn, row.workflow, row.revision)
        spec = revision.spec
        self.require_open(row, "reassign")
        data = from_json(spec.fields, row.data)
        if assignee is not None and "assignee" in spec.fields:
            data["assignee"] = assignee
        if department is not None and "department" in spec.fields:
            data["department"] = department
        values: dict[str, Any] = {"updated_at": now, "data": to_json(data)}
        if assignee is not None:
            values["assignee"] = assignee
        if department is not None:
            values["department"] = department
        self._bump(conn, row, values, expected)
        self.store.add_event(conn, case_id=row.id, kind="reassign", actor=actor.id, at=now,
                             data={"assignee": [row.assignee, assignee or row.assignee],
                                   "department": [row.department, department or row.department],
                                   "reason": reason})
        case = row_to_case(self.store.load(conn, row.id), data)
        if department is not None and department != row.department and self.engine.clock_rules:
            self.engine.clock_rules.on_reassign(conn, revision, case, actor, now)
        return case

    def note(self, conn: sa.Connection, key: int | str, text: str, actor: Actor, now: datetime) -> Event:
        if not text or not text.strip():
            raise ValueError("a note needs text")
        row = self.store.load(conn, key)
        self.check_community(actor, row, "note")
        event_id = self.store.add_event(conn, case_id=row.id, kind="note", actor=actor.id,
                                        data={"text": text}, at=now)
        conn.execute(cases.update().where(cases.c.id == row.id).values(updated_at=now))
        return Event(event_id, row.id, "note", None, None, None, actor.id, None, {"text": text}, now)

    def void(self, conn: sa.Connection, key: int | str, reason: str, actor: Actor, now: datetime) -> Case:
        if not reason or not reason.strip():
            raise ValueError("voiding a case needs a reason")
        row = self.store.load(conn, key, for_update=True)
        self.check_community(actor, row, "void")
        self.require_open(row, "void")
        self._bump(conn, row, {"voided": True, "updated_at": now, "closed_at": now})
        self.store.add_event(conn, case_id=row.id, kind="void", actor=actor.id, data={"reason": reason}, at=now)
        revision = self.engine.workflows().get(conn, row.workflow, row.revision)
        case = row_to_case(self.store.load(conn, row.id), from_json(revision.spec.fields, row.data))
        if self.engine.clock_rules:
            self.engine.clock_rules.on_void(conn, case, now)
        return case

    def force_state(self, conn: sa.Connection, key: int | str, state: str, actor: Actor, reason: str,
                    now: datetime) -> Case:
        if ADMIN not in actor.roles:
            raise RoleNotAllowed(actor.id, "force a case's state", [ADMIN])
        if not reason or not reason.strip():
            raise ValueError("force_state needs a reason (it is audited)")
        row = self.store.load(conn, key, for_update=True)
        revision = self.engine.workflows().get(conn, row.workflow, row.revision)
        spec = revision.spec
        if state not in spec.states:
            raise TriggerNotAllowed(row.number, f"force_state→{state}", row.state, list(spec.states))
        final = spec.state(state).final
        self._bump(conn, row, {"state": state, "updated_at": now,
                               "closed_at": (row.closed_at or now) if final else None})
        self.store.add_event(conn, case_id=row.id, kind="force_state", from_state=row.state, to_state=state,
                             actor=actor.id, data={"reason": reason}, at=now)
        case = row_to_case(self.store.load(conn, row.id), from_json(spec.fields, row.data))
        self.effects(conn, revision, case, row.state, state, None, actor, now)
        return case

    def link(self, conn: sa.Connection, key: int | str, other: int | str, kind: str, actor: Actor,
             now: datetime) -> Link:
        if kind not in LINK_KINDS:
            raise ValueError(f"link kind must be one of {', '.join(LINK_KINDS)}, not {kind!r}")
        row, other_row = self.store.load(conn, key), self.store.load(conn, other)
        if row.id == other_row.id:
            raise ValueError("a case cannot be linked to itself")
        self.check_community(actor, row, "link")
        exists = conn.execute(sa.text("SELECT 1 FROM case_links WHERE case_id=:a AND other_id=:b AND kind=:k"),
                              {"a": row.id, "b": other_row.id, "k": kind}).first()
        if exists is None:
            self.store.add_link(conn, row.id, other_row.id, kind, actor.id, now)
            self.store.add_event(conn, case_id=row.id, kind="link", actor=actor.id, at=now,
                                 data={"kind": kind, "other": other_row.number})
        return Link(row.id, other_row.id, kind, actor.id, now)

    def attach(self, conn: sa.Connection, key: int | str, name: str, media_type: str, uri: str,
               digest: str, size: int | None, event_id: int | None, actor: Actor, now: datetime) -> Attachment:
        row = self.store.load(conn, key)
        self.check_community(actor, row, "attach")
        if event_id is not None:
            owner = conn.execute(sa.text("SELECT case_id FROM case_events WHERE id = :e"), {"e": event_id}).scalar()
            if owner != row.id:
                raise CaseNotFound(f"event {event_id} of case {row.number}")
        new_id = self.store.add_attachment(conn, case_id=row.id, event_id=event_id, name=name,
                                           media_type=media_type, sha256=digest, size=size, uri=uri,
                                           actor=actor.id, at=now)
        self.store.add_event(conn, case_id=row.id, kind="attach", actor=actor.id, at=now,
                             data={"attachment": new_id, "name": name, "sha256": digest})
        return Attachment(new_id, row.id, event_id, name, media_type, digest, size, uri, actor.id, now)

    @staticmethod
    def require_open(row: Any, what: str) -> None:
        if row.voided or row.closed_at is not None:
            raise TriggerNotAllowed(row.number, what, row.state + (" (voided)" if row.voided else " (closed)"), [])

    # -- reads ----------------------------------------------------------------------------
    def available(self, conn: sa.Connection, row: Any, actor: Actor, now: datetime) -> list[str]:
        if row.voided:
            return []
        revision = self.engine.workflows().get(conn, row.workflow, row.revision)
        spec = revision.spec
        if not actor.serves(row.community):
            return []
        data = from_json(spec.fields, row.data)
        result = []
        for trigger in revision.machine.triggers_from(row.state):
            try:
                chosen = revision.machine.choose(trigger, row.state,
                                                 self.context(spec, self.case_dict(row, trigger), data, actor, now))
            except ExpressionError:
                continue
            if chosen is None:
                continue
            try:
                self.check_roles(conn, spec, chosen, actor, row, now)
            except RoleNotAllowed:
                continue
            result.append(trigger)
        return result

    def view(self, case: Case, actor: Actor | None) -> Case:
        """Scope to the actor's communities and mask personal fields it may not see."""
        if actor is None:
            return case
        if not actor.serves(case.community):
            raise CaseNotFound(case.number)
        spec = self.engine.workflows().spec_of(case.workflow, case.revision)
        if ADMIN in actor.roles or actor.roles & set(spec.personal_data_roles):
            return case
        masked = {k: (_MASK if spec.fields.get(k) is not None and spec.fields[k].personal and v else v)
                  for k, v in case.data.items()}
        from dataclasses import replace

        return replace(case, data=masked)

    # -- effects ---------------------------------------------------------------------------
    def effects(self, conn: sa.Connection, revision: Revision, case: Case, from_state: str | None,
                to_state: str, trigger: str | None, actor: Actor, now: datetime, opened: bool = False) -> None:
        if self.engine.clock_rules:
            self.engine.clock_rules.on_change(conn, revision, case, from_state, to_state, trigger, now)
        if self.engine.notices:
            self.engine.notices.on_change(conn, revision, case, from_state, to_state, trigger, actor, now, opened)

    @staticmethod
    def after(conn: sa.Connection, event: str, case: Case, detail: Any) -> None:
        pending = conn.info.get("estateflow_after")
        if pending is not None:
            pending.append((event, case, detail))


def _render_without_seq(pattern: str, values: Mapping[str, Any]) -> str:
    parts = []
    for literal, name, spec, _conv in string.Formatter().parse(pattern):
        parts.append(literal)
        if name is None:
            continue
        parts.append("{seq}" if name == "seq" else format(values.get(name, ""), spec or ""))
    return "".join(parts)


def _text(value: Any) -> str | None:
    return None if value is None else str(value)
