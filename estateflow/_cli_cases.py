"""CLI commands that work on cases: open, fire, show, list, history and everyday operations."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

import click

from estateflow.cli import State, _now, _pairs, console, emit_json, handle_errors, main

pass_state = click.make_pass_decorator(State)


def case_json(case: Any) -> dict[str, Any]:
    from estateflow.engine._fields import to_json

    data = asdict(case)
    data["data"] = {k: to_json(v) for k, v in case.data.items()}
    data["revision"] = case.workflow_revision
    for key in ("received_at", "created_at", "updated_at", "closed_at"):
        data[key] = data[key].isoformat() if data[key] else None
    return data


def register_table(cases: list[Any], title: str = "Register") -> Any:
    from rich.table import Table

    table = Table(title=title)
    for column in ("Number", "Workflow", "State", "Community", "Unit", "Department", "Handler", "Received", "Closed"):
        table.add_column(column)
    for c in cases:
        table.add_row(c.number, c.workflow_revision, c.state + (" (void)" if c.voided else ""),
                      c.community or "", c.unit or "", c.department or "", c.assignee or "",
                      c.received_at.strftime("%Y-%m-%d %H:%M"),
                      c.closed_at.strftime("%Y-%m-%d %H:%M") if c.closed_at else "")
    return table


@main.command("open")
@click.argument("workflow")
@click.option("--as", "actor", required=True, help="Actor id doing this.")
@click.option("--set", "values", multiple=True, metavar="FIELD=VALUE", help="Field values (repeatable).")
@click.option("--now", default=None, help="Virtual time (ISO 8601 with offset).")
@pass_state
@handle_errors
def open_case(state: State, workflow: str, actor: str, values: tuple[str, ...], now: str | None) -> None:
    """Register a new case."""
    with state.engine() as engine:
        case = engine.open(workflow, _pairs(values), actor=actor, now=_now(now))
    if state.json:
        emit_json(case_json(case))
    else:
        console().print(f"opened [bold]{case.number}[/] ({case.workflow_revision}) in state {case.state}")


@main.command()
@click.argument("case")
@click.argument("trigger")
@click.option("--as", "actor", required=True, help="Actor id doing this.")
@click.option("--set", "values", multiple=True, metavar="FIELD=VALUE")
@click.option("--expect-version", type=int, default=None, help="Refuse if the case changed since.")
@click.option("--now", default=None)
@pass_state
@handle_errors
def fire(state: State, case: str, trigger: str, actor: str, values: tuple[str, ...],
         expect_version: int | None, now: str | None) -> None:
    """Fire TRIGGER on CASE (id or number)."""
    with state.engine() as engine:
        result = engine.fire(case, trigger, actor=actor, data=_pairs(values), now=_now(now),
                             expected_version=expect_version)
    if state.json:
        emit_json(case_json(result))
    else:
        console().print(f"{result.number}: {trigger} → [bold]{result.state}[/] (version {result.version})")


@main.command()
@click.argument("case")
@pass_state
@handle_errors
def show(state: State, case: str) -> None:
    """Show one case with its data, links and attachments."""
    from rich.table import Table

    with state.engine() as engine:
        found = engine.get(case)
        links = engine.links(found.id)
        triggers = engine.workflows().get(None, found.workflow, found.revision).machine.triggers_from(found.state)
    if state.json:
        emit_json(dict(case_json(found), links=[asdict(l) for l in links], triggers=triggers))
        return
    table = Table(title=f"{found.number} — {found.workflow_revision} — {found.state}", show_header=False)
    table.add_column("field")
    table.add_column("value")
    for key in ("community", "building", "unit", "department", "assignee", "priority", "major"):
        table.add_row(key, str(getattr(found, key) or ""))
    for key, value in found.data.items():
        table.add_row(key, "" if value is None else str(value))
    table.add_row("next triggers", ", ".join(triggers) or "—")
    console().print(table)


@main.command("list")
@click.option("--workflow", default=None)
@click.option("--state", "state_name", default=None)
@click.option("--community", default=None)
@click.option("--assignee", default=None)
@click.option("--department", default=None)
@click.option("--search", "text", default=None, help="Number, customer name/phone or unit.")
@click.option("--open/--closed", "is_open", default=None)
@click.option("--overdue", is_flag=True)
@click.option("--limit", default=50, show_default=True)
@click.option("--offset", default=0)
@pass_state
@handle_errors
def list_cases(state: State, workflow: str | None, state_name: str | None, community: str | None,
               assignee: str | None, department: str | None, text: str | None, is_open: bool | None,
               overdue: bool, limit: int, offset: int) -> None:
    """The register: cases matching the filters."""
    with state.engine() as engine:
        cases = engine.find(workflow=workflow, state=state_name, community=community, assignee=assignee,
                            department=department, text=text, open=is_open, overdue=overdue,
                            limit=limit, offset=offset)
    if state.json:
        emit_json([case_json(c) for c in cases])
    else:
        console().print(register_table(cases))


@main.command()
@click.argument("case")
@pass_state
@handle_errors
def history(state: State, case: str) -> None:
    """Every event of a case: who, when, what."""
    from rich.table import Table

    with state.engine() as engine:
        events = engine.history(case)
    if state.json:
        emit_json([dict(asdict(e), at=e.at.isoformat()) for e in events])
        return
    table = Table(title=f"History of {case}")
    for column in ("When (UTC)", "Kind", "Trigger", "From", "To", "Who", "Details"):
        table.add_column(column)
    for e in events:
        table.add_row(e.at.strftime("%Y-%m-%d %H:%M"), e.kind, e.trigger or "", e.from_state or "",
                      e.to_state or "", e.actor_display, _short(e.data))
    console().print(table)


def _short(data: Any) -> str:
    import json

    text = json.dumps(data, ensure_ascii=False, default=str)
    return text if len(text) < 80 else text[:77] + "..."


@main.command()
@click.argument("case")
@click.argument("text")
@click.option("--as", "actor", required=True)
@pass_state
@handle_errors
def note(state: State, case: str, text: str, actor: str) -> None:
    """Add a progress note (no state change)."""
    with state.engine() as engine:
        engine.note(case, text, actor=actor)
    console().print("note added")


@main.command()
@click.argument("case")
@click.option("--to", "assignee", default=None, help="New handler.")
@click.option("--department", default=None)
@click.option("--reason", default="")
@click.option("--as", "actor", required=True)
@pass_state
@handle_errors
def reassign(state: State, case: str, assignee: str | None, department: str | None, reason: str, actor: str) -> None:
    """转单: hand a case to another handler or department."""
    with state.engine() as engine:
        result = engine.reassign(case, assignee=assignee, department=department, actor=actor, reason=reason)
    console().print(f"{result.number} now with {result.assignee or '—'} ({result.department or '—'})")


@main.command()
@click.argument("case")
@click.option("--reason", required=True)
@click.option("--as", "actor", required=True)
@pass_state
@handle_errors
def void(state: State, case: str, reason: str, actor: str) -> None:
    """Void a case with a reason."""
    with state.engine() as engine:
        result = engine.void(case, reason, actor=actor)
    console().print(f"{result.number} voided")


@main.command()
@click.argument("deputy")
@click.argument("principal")
@click.option("--from", "starts", required=True, help="Start (ISO 8601 with offset).")
@click.option("--until", "ends", required=True, help="End, exclusive (ISO 8601 with offset).")
@click.option("--as", "actor", required=True)
@pass_state
@handle_errors
def delegate(state: State, deputy: str, principal: str, starts: str, ends: str, actor: str) -> None:
    """Let DEPUTY act for PRINCIPAL (an absent manager) for a period; history records "X for Y"."""
    with state.engine() as engine:
        made = engine.delegate(deputy, principal, starts_at=_now(starts), ends_at=_now(ends), actor=actor)
    console().print(f"{made.deputy} may act for {made.principal} from {made.starts_at.isoformat()} "
                    f"until {made.ends_at.isoformat()}")
