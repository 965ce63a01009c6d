"""CLI commands that move data in and out: ``import cases`` from the old register, ``purge``."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import date, datetime
from typing import Any

import click

from estateflow.cli import State, _now, console, emit_json, handle_errors, main

pass_state = click.make_pass_decorator(State)


def _pairs(values: tuple[str, ...], option: str) -> dict[str, str]:
    result: dict[str, str] = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise click.BadParameter(f"{item!r} is not TEXT=NAME", param_hint=option)
        result[key.strip()] = value.strip()
    return result


def _value_pairs(values: tuple[str, ...]) -> dict[str, dict[str, str]]:
    result: dict[str, dict[str, str]] = {}
    for item in values:
        field, sep, rest = item.partition(":")
        text, sep2, value = rest.rpartition("=")
        if not sep or not sep2 or not field.strip() or not text.strip() or not value.strip():
            raise click.BadParameter(f"{item!r} is not FIELD:TEXT=VALUE", param_hint="--value")
        result.setdefault(field.strip(), {})[text.strip()] = value.strip()
    return result


@contextmanager
def _progress(state: State, what: str) -> Iterator[Callable[[int, int], None] | None]:
    """A progress bar on stderr for long runs (only on a terminal, never in --json output)."""
    err = console(stderr=True)
    if state.json or not err.is_terminal:
        yield None
        return
    from rich.progress import Progress

    with Progress(console=err, transient=True) as bar:
        task = bar.add_task(what, total=None)

        def update(done: int, total: int) -> None:
            if done == 1 or done % 100 == 0 or done == total:
                bar.update(task, completed=done, total=total)
        yield update


@main.group("import")
def import_group() -> None:
    """Bring data over from elsewhere."""


@import_group.command("cases")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--workflow", required=True, help="Workflow the cases belong to (e.g. complaint).")
@click.option("--map", "maps", multiple=True, metavar="COLUMN=FIELD",
              help="Column title → field, or number/received_at/state/closed_at, or '-' to skip (repeatable).")
@click.option("--state-map", "state_maps", multiple=True, metavar="TEXT=STATE",
              help="State text in the file → workflow state, e.g. 已办结=closed (repeatable).")
@click.option("--value", "value_maps", multiple=True, metavar="FIELD:TEXT=VALUE",
              help="Cell text → enum value, e.g. channel:电话=hotline (repeatable).")
@click.option("--dry-run", is_flag=True, help="Check and report everything, write nothing.")
@click.option("--as", "actor", default="system", show_default=True, help="Actor recorded as the importer.")
@click.option("--now", default=None, help="Import time (ISO 8601 with offset); default: the real time.")
@pass_state
@handle_errors
def import_cases(state: State, file: str, workflow: str, maps: tuple[str, ...], state_maps: tuple[str, ...],
                 value_maps: tuple[str, ...], dry_run: bool, actor: str, now: str | None) -> None:
    """Import open and closed cases from a register FILE (.csv or .xlsx): all rows or none."""
    mapping, states, values = _pairs(maps, "--map"), _pairs(state_maps, "--state-map"), _value_pairs(value_maps)
    with state.engine() as engine, _progress(state, "importing") as progress:
        report = engine.import_cases(file, workflow=workflow, mapping=mapping, state_map=states, value_map=values,
                                     dry_run=dry_run, actor=actor, now=_now(now), progress=progress)
    if state.json:
        emit_json(report.to_dict())
        if not report.ok:
            raise SystemExit(1)
        return
    _print_import(report)


def _print_import(report: Any) -> None:
    from rich.markup import escape

    out, err = console(), console(stderr=True)
    for warning in report.warnings:
        err.print(f"[yellow]warning:[/] {escape(warning)}")
    if not report.ok:
        for p in report.problems:
            err.print(f"[red]{escape(report.source)}:{p.line}: column {escape(p.column)}: {escape(p.message)}[/]")
        count = len(report.problems)
        err.print(f"[bold red]error:[/] {count} problem{'s' if count != 1 else ''} in {report.rows} rows; "
                  f"nothing was imported")
        raise SystemExit(1)
    verb = "would import" if report.dry_run else "imported"
    out.print(f"{verb} {report.imported} cases into {report.revision} from {escape(report.source)}"
              f"{f' ({report.encoding})' if report.encoding else ''}: {report.open} open, {report.closed} closed, "
              f"{len(report.overdue)} overdue")
    if report.overdue:
        out.print(f"overdue at import (breaches recorded, one summary alert): {', '.join(report.overdue)}")
    if report.generated:
        out.print(f"new numbers for rows without one: {', '.join(report.generated)}")
    for key, value in sorted(report.sequences.items()):
        out.print(f"number sequence {escape(key)} now at {value}")
    if report.dry_run:
        out.print("dry run: nothing was written")


def _closed_before(value: str) -> date | datetime:
    try:
        if "T" in value or " " in value.strip():
            parsed = datetime.fromisoformat(value)
            if parsed.tzinfo is None:
                raise click.BadParameter("give a date (2026-01-01) or a time with its offset", param_hint="--closed-before")
            return parsed
        return date.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a date like 2026-01-01", param_hint="--closed-before") from None


@main.command()
@click.option("--closed-before", "closed_before", required=True, metavar="DATE",
              help="Cases closed before this date (midnight in the workflow calendar's zone).")
@click.option("--workflow", default=None, help="Only this workflow (default: every workflow).")
@click.option("--dry-run", is_flag=True, help="Count what would be anonymised, write nothing.")
@click.option("--as", "actor", default="system", show_default=True,
              help="Actor doing it: needs role admin or one of the workflow's personal_data_roles.")
@click.option("--now", default=None, help="Time recorded on the purge events (ISO 8601 with offset).")
@pass_state
@handle_errors
def purge(state: State, closed_before: str, workflow: str | None, dry_run: bool, actor: str,
          now: str | None) -> None:
    """Anonymise names, phone numbers and addresses of cases closed before DATE."""
    cutoff = _closed_before(closed_before)
    with state.engine() as engine, _progress(state, "purging") as progress:
        report = engine.purge(cutoff, workflow=workflow, dry_run=dry_run, actor=actor, now=_now(now),
                              progress=progress)
    if state.json:
        emit_json(report.to_dict())
        return
    out = console()
    verb = "would anonymise" if dry_run else "anonymised"
    out.print(f"{verb} {report.count} cases closed before {report.closed_before} "
              f"({report.events} history rows, {report.outbox} outbox rows)")
    for name, fields in sorted(report.fields.items()):
        out.print(f"  {name}: {', '.join(fields) or 'no personal fields declared'}")
    if dry_run:
        out.print("dry run: nothing was written")
