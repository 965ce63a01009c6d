"""CLI: ``estateflow workflows list|diff`` and ``estateflow migrate`` — revisions and moving cases."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from estateflow.cli import State, _now, console, emit_json, handle_errors, main

pass_state = click.make_pass_decorator(State)


@main.group("workflows")
def workflows_group() -> None:
    """Workflow revisions stored in the database (name@rN) and what changed between them."""


@workflows_group.command("list")
@click.argument("name", required=False)
@pass_state
@handle_errors
def list_revisions(state: State, name: str | None) -> None:
    """Every revision (of NAME, or of all workflows): version label, created, open and closed cases on it."""
    with state.engine() as engine:
        found = engine.revisions(name)
    if state.json:
        emit_json([r.to_json() for r in found])
        return
    from rich.table import Table

    table = Table(title="Workflow revisions")
    for column in ("Revision", "Version", "Created (UTC)", "Open", "Closed", "Newest"):
        table.add_column(column, no_wrap=column in ("Revision", "Created (UTC)"),
                         justify="right" if column in ("Open", "Closed") else "left")
    for r in found:
        table.add_row(r.key, r.version_label, r.created_at.strftime("%Y-%m-%d %H:%M"), str(r.open_cases),
                      str(r.closed_cases), "yes" if r.newest else "")
    console().print(table)


def _spec_for(engine: Any, ref: str) -> tuple[Any, str]:
    """A stored revision (NAME@rN) or a workflow YAML file (checked, not recorded)."""
    path = Path(ref)
    if path.suffix in (".yaml", ".yml") and path.exists():
        from estateflow.engine._validate import load_workflow_file

        return load_workflow_file(path), str(path)
    from estateflow.engine._versions import parse_revision

    name, sep, _ = ref.partition("@")
    if not sep:
        raise click.BadParameter(f"{ref!r}: write NAME@rN (e.g. repair@r2) or a workflow YAML file",
                                 param_hint="REVISION")
    number = parse_revision(name, ref)
    registry = engine.workflows()
    with engine.db.execution_options(estateflow_readonly=True).connect() as conn:
        return registry.spec_of(name, number, conn), f"{name}@r{number}"


@workflows_group.command("diff")
@click.argument("old", metavar="NAME@rA")
@click.argument("new", metavar="NAME@rB")
@pass_state
@handle_errors
def diff_revisions(state: State, old: str, new: str) -> None:
    """What changed from NAME@rA to NAME@rB: states, transitions, clocks, fields, roles, notify.

    Either side may also be a workflow YAML file, to see an edit before it is loaded.
    """
    from estateflow.engine._diff import diff_specs

    with state.engine() as engine:
        (a, a_key), (b, b_key) = _spec_for(engine, old), _spec_for(engine, new)
    result = diff_specs(a, b, a_key, b_key)
    if state.json:
        emit_json(result.to_json())
        return
    for line in result.lines():
        click.echo(line)


def _state_map(values: tuple[str, ...]) -> dict[str, str]:
    mapping = {}
    for item in values:
        old, sep, new = item.partition("=")
        if not sep or not old.strip() or not new.strip():
            raise click.BadParameter(f"{item!r} is not OLD_STATE=NEW_STATE", param_hint="--map")
        mapping[old.strip()] = new.strip()
    return mapping


def _clock_text(change: Any, zone: Any) -> str:
    def at(moment: Any) -> str:
        return moment.astimezone(zone).strftime("%m-%d %H:%M") if moment else "?"

    if change.action == "stopped":
        return f"{change.clock} stopped"
    if change.action == "started":
        return f"{change.clock} started, due {at(change.new_due)}"
    if change.action == "recomputed":
        return f"{change.clock} {change.target}: due {at(change.old_due)} → {at(change.new_due)}"
    return f"{change.clock} timers rebuilt (due {at(change.new_due)})"


@main.command()
@click.argument("name")
@click.option("--to", "to_revision", required=True, metavar="rN", help="Target revision, e.g. r3.")
@click.option("--map", "mapping", multiple=True, metavar="OLD=NEW", help="Place cases of state OLD in state NEW.")
@click.option("--dry-run", is_flag=True, help="Show which cases would move and how their clocks change.")
@click.option("--as", "actor", default=None, help="Admin recording the migration (required without --dry-run).")
@click.option("--batch", default=500, show_default=True, type=click.IntRange(1, 100_000),
              help="Cases per transaction.")
@click.option("--now", default=None, help="Virtual time (ISO 8601 with offset).")
@pass_state
@handle_errors
def migrate(state: State, name: str, to_revision: str, mapping: tuple[str, ...], dry_run: bool,
            actor: str | None, batch: int, now: str | None) -> None:
    """Move the open cases of workflow NAME to revision --to (preview with --dry-run)."""
    from zoneinfo import ZoneInfo

    if not dry_run and not actor:
        raise click.BadParameter("say who migrates: --as ADMIN (or preview with --dry-run)", param_hint="--as")
    with state.engine() as engine:
        plan = engine.migrate(name, to_revision, state_map=_state_map(mapping), dry_run=dry_run,
                              actor=actor or "system", now=_now(now), batch=batch)
        zone = ZoneInfo(engine.calendar_set.zone_of("cn"))
    if state.json:
        emit_json(plan.to_json())
        return
    verb = "would move" if dry_run else "moved"
    out = console()
    for move in plan.moves:
        states = move.from_state if move.from_state == move.to_state else f"{move.from_state} → {move.to_state}"
        clocks = "; ".join(_clock_text(c, zone) for c in move.clocks) or "clocks unchanged"
        click.echo(f"{move.number}  r{move.from_revision} → r{move.to_revision}  {states}  ·  {clocks}")
    out.print(f"{len(plan.moves)} case{'s' if len(plan.moves) != 1 else ''} {verb} to {plan.target}"
              + (f" in {plan.batches} batch{'es' if plan.batches != 1 else ''}" if not dry_run else "")
              + (" (dry run: nothing written)" if dry_run else ""))
    for number, reason in plan.skipped:
        out.print(f"[yellow]skipped {number}: {reason}[/]", markup=True)
    if plan.skipped:
        raise SystemExit(1)
