"""CLI: ``estateflow simulate SCENARIO.yaml`` — replay a scenario on a virtual clock, print its timeline."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from estateflow.cli import State, console, emit_json, handle_errors, main

pass_state = click.make_pass_decorator(State)


def shipped_scenarios() -> dict[str, Path]:
    """The scenarios packaged with estateflow, by name (file stem)."""
    folder = Path(__file__).resolve().parent / "scenarios"
    return {p.stem: p for p in sorted(folder.glob("*.yaml"))}


def _resolve(name: str) -> Path:
    path = Path(name)
    if path.exists():
        return path
    shipped = shipped_scenarios()
    if name in shipped:
        return shipped[name]
    raise click.BadParameter(f"no such file {name!r} and no shipped scenario of that name "
                             f"(shipped: {', '.join(shipped)})", param_hint="SCENARIO")


def _timeline_lines(result: Any) -> list[str]:
    from zoneinfo import ZoneInfo

    zone = ZoneInfo(result.scenario.zone)
    lines = []
    width = max([len(e.alias or e.case or "-") for e in result.timeline] + [4])
    for entry in result.timeline:
        who = entry.alias or entry.case or "-"
        number = f" [{entry.case}]" if entry.event == "opened" and entry.alias else ""
        lines.append(f"{entry.at.astimezone(zone):%Y-%m-%d %H:%M %a}  {who:<{width}}  {entry.event:<13} "
                     f"{entry.text()}{number}")
    return lines


@main.command()
@click.argument("scenarios", nargs=-1, required=True, metavar="SCENARIO...")
@click.option("--workflows", "workflows", default=None, metavar="DIR",
              help="Workflow YAML to simulate (default: the scenario's own 'workflows:', then --workflows "
                   "of the group, then the shipped ones).")
@click.option("--json", "as_json", is_flag=True, help="Print the timeline and verdict as JSON.")
@click.option("--quiet", "-q", is_flag=True, help="Print only the verdict of each scenario.")
@pass_state
@handle_errors
def simulate(state: State, scenarios: tuple[str, ...], workflows: str | None, as_json: bool, quiet: bool) -> None:
    """Run SCENARIO (a file, or a shipped scenario's name) on a throwaway database and a virtual clock.

    Prints every transition, clock start/stop, warning, breach, escalation and the notifications
    that would be sent (nothing is delivered). Exits 1 when a step is refused unexpectedly or the
    timeline differs from the scenario's 'expect:' section.
    """
    from estateflow.engine._scenario import load_scenario
    from estateflow.engine._simulate import simulate as run_scenario

    directory = None
    if state.actors:
        from estateflow.engine._directory import YamlDirectory

        directory = YamlDirectory(state.actors)
    results = []
    for name in scenarios:
        scenario = load_scenario(_resolve(name))
        location = workflows or (None if scenario.workflows else state.workflows)
        results.append(run_scenario(scenario, workflows=location,
                                    directory=directory if scenario.actors == "demo" else None))
    if as_json or state.json:
        emit_json([r.to_json() for r in results] if len(results) > 1 else results[0].to_json())
    else:
        out = console()
        for result in results:
            s = result.scenario
            out.print(f"[bold]{s.title}[/] ({s.file})", markup=True, highlight=False)
            if not quiet:
                out.print(f"{', '.join(result.revisions.values())} · zone {s.zone} · "
                          f"{s.start:%Y-%m-%d %H:%M %a} → {result.end.astimezone(s.start.tzinfo):%Y-%m-%d %H:%M %a}",
                          markup=False)
                for line in _timeline_lines(result):
                    click.echo(line)
            for failure in result.failures:
                out.print(f"[red]✗ {_escape(str(failure))}[/]", markup=True)
            if result.passed:
                out.print(f"[green]✓ {result.checks} checks passed[/]", markup=True)
            elif result.stopped:
                out.print("[red]the run stopped at the refused step; expectations were not checked[/]", markup=True)
            if len(results) > 1:
                out.print("")
    if not all(r.passed for r in results):
        sys.exit(1)


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)
