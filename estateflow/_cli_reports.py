"""``estateflow report weekly|register|sla|ratings``: tables on screen, or CSV/XLSX/HTML/JSON files.

Personal data is masked unless ``--unmasked --as ACTOR`` names someone holding one of the
workflow's ``personal_data_roles`` (the engine refuses anyone else).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from estateflow.cli import State, _escape, _now, console, fail, handle_errors, main

pass_state = click.make_pass_decorator(State)


@main.group()
def report() -> None:
    """Reports: weekly (周报), register (登记表), sla (时限达成), ratings (维修评比)."""


def _period_options(*kinds: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    examples = {"week": "2025-W40", "month": "2025-09", "quarter": "2025-Q3", "year": "2025"}

    def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
        options = [click.option(f"--{k}", default=None, metavar=examples[k].upper().replace("2025", "YYYY"),
                                help=f"The {k}, e.g. {examples[k]} (local time of the calendar's zone).")
                   for k in kinds]
        options += [
            click.option("--from", "start", default=None, help="First local date (2025-09-29) or aware time."),
            click.option("--to", "end", default=None, help="Last local date, inclusive (or aware time, exclusive)."),
        ]
        for option in reversed(options):
            fn = option(fn)
        return fn
    return decorate


def _common_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    for option in reversed([
        click.option("--community", default=None, help="Only this community."),
        click.option("--workflow", default=None, help="Only this workflow (default: all)."),
        click.option("--lang", type=click.Choice(["zh", "en"]), default="zh", show_default=True,
                     help="Headings and labels."),
        click.option("--as", "actor", default=None, help="Who reads it (scopes to their communities)."),
        click.option("--now", default=None, help="Virtual time (ISO 8601 with offset); default: now."),
        click.option("--csv", "csv_file", default=None, metavar="FILE", help="Write CSV (UTF-8 with BOM, for Excel)."),
        click.option("--xlsx", "xlsx_file", default=None, metavar="FILE",
                     help="Write an Excel workbook (needs: pip install 'estateflow[xlsx]')."),
        click.option("--html", "html_file", default=None, metavar="FILE",
                     help="Write a self-contained HTML page (tables and a chart)."),
        click.option("--json", "as_json", is_flag=True, help="Print JSON (same as the global --json)."),
    ]):
        fn = option(fn)
    return fn


def _emit(state: State, result: Any, as_json: bool, csv_file: str | None, xlsx_file: str | None,
          html_file: str | None) -> None:
    from estateflow.reports import render_csv, render_html, render_xlsx
    from estateflow.reports._render import dumps, rich_tables

    written = []
    if csv_file:
        render_csv(result, csv_file)
        written.append(csv_file)
    if xlsx_file:
        try:
            render_xlsx(result, xlsx_file)
        except ImportError as exc:
            fail(_escape(str(exc)))
        written.append(xlsx_file)
    if html_file:
        Path(html_file).write_text(render_html(result), encoding="utf-8")
        written.append(html_file)
    if state.json or as_json:
        click.echo(dumps(result))
        return
    out = console()
    if written:
        for name in written:
            out.print(f"wrote {Path(name).resolve()}", markup=False)
        return
    period = result.period
    out.print(f"[bold]{result.title}[/] {period.label} ({period.first_day} – {period.last_day}, {period.zone})")
    if getattr(result, "masked", False):
        out.print("[dim]personal data masked (--unmasked --as ACTOR to show it)[/]")
    for table in rich_tables(result):
        out.print(table)


@report.command()
@_period_options("week")
@click.option("--department", default=None, help="Only this responsible department.")
@click.option("--unmasked", is_flag=True, help="Show personal data (needs --as with an allowed role).")
@click.option("--limit", type=int, default=200, show_default=True, help="Unresolved/major cases listed.")
@_common_options
@pass_state
@handle_errors
def weekly(state: State, week: str | None, start: str | None, end: str | None, department: str | None,
           unmasked: bool, limit: int, community: str | None, workflow: str | None, lang: str, actor: str | None,
           now: str | None, csv_file: str | None, xlsx_file: str | None, html_file: str | None, as_json: bool) -> None:
    """周报: opened, closed, open, overdue and on-time rates (default: the last full week)."""
    with state.engine() as engine:
        result = engine.report_weekly(week=week, start=start, end=end, community=community, department=department,
                                      workflow=workflow, actor=actor, unmasked=unmasked, lang=lang, limit=limit,
                                      now=_now(now))
    _emit(state, result, as_json, csv_file, xlsx_file, html_file)


@report.command()
@_period_options("week", "month")
@click.option("--department", default=None, help="Only this responsible department.")
@click.option("--unmasked", is_flag=True, help="Show personal data (needs --as with an allowed role).")
@_common_options
@pass_state
@handle_errors
def register(state: State, week: str | None, month: str | None, start: str | None, end: str | None,
             department: str | None, unmasked: bool, community: str | None, workflow: str | None, lang: str,
             actor: str | None, now: str | None, csv_file: str | None, xlsx_file: str | None, html_file: str | None,
             as_json: bool) -> None:
    """《来电、来访登记表》: every case received in the period (default: the last full week)."""
    with state.engine() as engine:
        result = engine.report_register(week=week, month=month, start=start, end=end, community=community,
                                        department=department, workflow=workflow, actor=actor, unmasked=unmasked,
                                        lang=lang, now=_now(now))
    _emit(state, result, as_json, csv_file, xlsx_file, html_file)


@report.command()
@_period_options("week", "month", "quarter", "year")
@click.option("--department", default=None, help="Only this responsible department.")
@_common_options
@pass_state
@handle_errors
def sla(state: State, week: str | None, month: str | None, quarter: str | None, year: str | None,
        start: str | None, end: str | None, department: str | None, community: str | None, workflow: str | None,
        lang: str, actor: str | None, now: str | None, csv_file: str | None, xlsx_file: str | None,
        html_file: str | None, as_json: bool) -> None:
    """Clock compliance: met / breached / running, median and p90 hours (default: last full month)."""
    with state.engine() as engine:
        result = engine.report_sla(week=week, month=month, quarter=quarter, year=year, start=start, end=end,
                                   community=community, department=department, workflow=workflow, actor=actor,
                                   lang=lang, now=_now(now))
    _emit(state, result, as_json, csv_file, xlsx_file, html_file)


@report.command()
@_period_options("quarter", "year")
@_common_options
@pass_state
@handle_errors
def ratings(state: State, quarter: str | None, year: str | None, start: str | None, end: str | None,
            community: str | None, workflow: str | None, lang: str, actor: str | None, now: str | None,
            csv_file: str | None, xlsx_file: str | None, html_file: str | None, as_json: bool) -> None:
    """Repair workers and their managers on quality and attitude (default: last full quarter)."""
    with state.engine() as engine:
        result = engine.report_ratings(quarter=quarter, year=year, start=start, end=end, community=community,
                                       workflow=workflow or "repair", actor=actor, lang=lang, now=_now(now))
    _emit(state, result, as_json, csv_file, xlsx_file, html_file)
