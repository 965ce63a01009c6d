"""``estateflow simulate``: scenarios on a virtual clock, their timelines and their checks.

Every shipped scenario (estateflow/scenarios/*.yaml) is run and must pass its own ``expect:``
section, whose times were counted by hand from DOMAIN.md's timetable (see each file's header).
The other tests break scenarios and workflows on purpose: an admin must get the scenario line
of a refused step or a failed check, and a YAML edit that moves a deadline must fail the run.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from estateflow import ScenarioError
from estateflow._cli_simulate import shipped_scenarios
from estateflow.cli import main
from estateflow.engine._scenario import load_scenario, parse_scenario
from estateflow.engine._simulate import simulate

from .engine_helpers import SHIPPED
from .helpers import local

SCENARIOS = shipped_scenarios()


def run_text(text: str, tmp_path: Path, **kwargs):
    path = tmp_path / "scenario.yaml"
    path.write_text(text, encoding="utf-8")
    return simulate(load_scenario(path), **kwargs)


def cli(*args: str, code: int = 0) -> str:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    return result.output


def test_every_workflow_has_a_shipped_scenario_and_one_crosses_national_day():
    assert {"complaint", "repair", "move_in", "renovation", "national_day"} <= set(SCENARIOS)


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_shipped_scenario_reproduces_its_timetable(name):
    result = simulate(load_scenario(SCENARIOS[name]))
    assert result.failures == [] and not result.stopped
    assert result.checks >= 10  # each scenario states its deadlines, not just its final state
    events = {e.event for e in result.timeline}
    assert {"opened", "transition", "clock_start", "notification"} <= events


def test_national_day_timeline_has_each_deadline_at_its_local_time():
    result = simulate(load_scenario(SCENARIOS["national_day"]))
    seen = {(e.alias, e.event, e.detail.get("clock"), e.detail.get("level"), e.at) for e in result.timeline}
    assert ("noise", "breach", "feedback", None, local(2025, 10, 9, 18)) in seen
    # the ladder: +1 working day is Fri 10-10, +2 is the make-up Saturday 10-11
    assert ("noise", "escalation", "feedback", 2, local(2025, 10, 10, 18)) in seen
    assert ("noise", "escalation", "feedback", 3, local(2025, 10, 11, 18)) in seen
    assert ("leak", "warning", "repair", None, local(2025, 10, 11, 11, 15)) in seen
    sent = [(e.at, e.detail["notice"], e.detail["recipient"]) for e in result.timeline if e.event == "notification"]
    assert (local(2025, 10, 11, 18), "escalation", "sun") in sent
    assert result.cases["leak"]["state"] == "audit" and result.cases["noise"]["state"] == "in_progress"


SMALL = """\
scenario: small
start: "2025-09-26 10:00"
steps:
  - open: repair
    alias: r
    as: wang
    data: {channel: hotline, community: lakeside, summary: 漏水, phone: "13700137000"}
  - advance 2 working days
  - fire: survey
    case: r
    as: li
    data: {survey_participants: [li], responsible_party: company, estimated_cost: 300}
expect:
  cases:
    r:
      state: surveyed
      clocks:
        survey: {due: "2025-09-28 18:00", breached: "2025-09-28 18:00", level: 1, status: stopped}
  timeline:
    - {at: "2025-09-28 18:00", case: r, event: breach, clock: survey}
    - {at: "2025-09-29 10:00", case: r, event: transition, trigger: survey, to: surveyed}
"""


def test_advance_in_working_days_keeps_the_wall_clock_time_and_skips_days_off(tmp_path):
    # Fri 10:00 + 2 working days: Sat 09-27 is off, Sun 09-28 is a make-up working day → Mon 10:00
    result = run_text(SMALL, tmp_path)
    assert result.passed, result.failures
    assert result.end == local(2025, 9, 29, 10)


def test_a_failed_expectation_names_its_scenario_line(tmp_path):
    text = SMALL.replace('due: "2025-09-28 18:00"', 'due: "2025-09-29 18:00"').replace(
        "trigger: survey, to: surveyed", "trigger: survey, to: approved")
    result = run_text(text, tmp_path)
    assert [(f.line, f.message.split(":")[0]) for f in result.failures] == [
        (18, "case r clock survey due"), (21, "no timeline entry {at=2025-09-29 10")]
    assert "got 2025-09-28 18:00 Sun" in str(result.failures[0])
    assert str(result.failures[0]).startswith(f"{tmp_path / 'scenario.yaml'}:18:23: ")


def test_a_refused_step_stops_the_run_and_names_its_line(tmp_path):
    text = SMALL.replace("    as: li\n", "    as: zhao\n")  # a records clerk cannot do the survey
    result = run_text(text, tmp_path)
    assert result.stopped and not result.passed and result.checks == 0
    [failure] = result.failures
    assert (failure.line, failure.column) == (9, 5)
    assert "fire survey on r refused: RoleNotAllowed" in failure.message


def test_an_expected_refusal_is_a_timeline_entry_and_a_surprise_success_fails(tmp_path):
    refused = SMALL.replace("    as: li\n", "    as: zhao\n    refused: RoleNotAllowed\n").replace(
        "state: surveyed", "state: registered").split("  timeline:")[0].replace(
        '        survey: {due: "2025-09-28 18:00", breached: "2025-09-28 18:00", level: 1, status: stopped}\n',
        '        survey: {status: running}\n')
    result = run_text(refused, tmp_path)
    assert result.passed, result.failures
    assert [e.detail["error"] for e in result.timeline if e.event == "refused"] == ["RoleNotAllowed"]
    succeeded = SMALL.replace("    as: li\n", "    as: li\n    refused: any\n")
    result = run_text(succeeded, tmp_path)
    assert result.stopped and "should have been refused" in result.failures[0].message


def test_an_edited_workflow_that_moves_a_deadline_fails_the_shipped_scenario(tmp_path):
    workflows = tmp_path / "workflows"
    shutil.copytree(SHIPPED, workflows)
    path = workflows / "repair.yaml"
    text = path.read_text(encoding="utf-8")
    path.write_text(text.replace("target: 1 working day\n    start: [enter:registered]",
                                 "target: 2 working days\n    start: [enter:registered]"), encoding="utf-8")
    result = simulate(load_scenario(SCENARIOS["national_day"]), workflows=workflows)
    assert not result.passed
    assert any("clock survey due: expected 2025-09-29 18:00 Mon, got 2025-09-30 18:00 Tue" in f.message
               for f in result.failures)


@pytest.mark.parametrize("text, line, column, message", [
    ("start: '2025-09-26 10:00'\nsteps:\n  - fire: survey\n    as: li\n", 3, 5, "which case?"),
    ("start: '2025-09-26 10:00'\nsteps:\n  - open: repair\n    as: li\n  - fire: x\n    case: q\n    as: li\n",
     6, 11, "unknown case 'q'"),
    ("start: '2025-09-26'\nsteps: ['advance 1 day']\n", 1, 8, "is not a time"),
    ("start: 2025-09-26\nsteps: ['advance 1 day']\n", 1, 8, "'!!timestamp' is not allowed"),
    ("start: '2025-09-26 10:00'\nsteps: ['advance 3 weeks']\n", 2, 9, "'3 weeks'"),
    ("start: '2025-09-26 10:00'\nsteps:\n  - open: repair\n    as: li\n    alais: r\n", 5, 5,
     "unknown key 'alais' (hint: did you mean 'alias'?)"),
    ("start: '2025-09-26 10:00'\nsteps:\n  - at: 10:00\n", 3, 9, "base-60"),
    ("start: '2025-09-26 10:00'\nzone: Mars/Olympus\nsteps: ['advance 1 day']\n", 2, 7, "unknown time zone"),
])
def test_a_bad_scenario_is_reported_at_file_line_column(tmp_path, text, line, column, message):
    with pytest.raises(ScenarioError) as caught:
        parse_scenario(text, "s.yaml")
    problem = caught.value.problems[0]
    assert (problem.line, problem.column) == (line, column), str(problem)
    assert message in str(problem)


def test_unknown_workflow_trigger_and_state_names_are_reported_before_running(tmp_path):
    text = SMALL.replace("fire: survey", "fire: survy").replace("state: surveyed", "state: survyed")
    with pytest.raises(ScenarioError) as caught:
        run_text(text, tmp_path)
    assert [(p.line, p.message, p.hint) for p in caught.value.problems] == [
        (9, "unknown trigger of repair 'survy'", "did you mean 'survey'?"),
        (16, "unknown state of repair 'survyed'", "did you mean 'surveyed'?")]


def test_cli_prints_the_timeline_and_exits_1_when_a_check_fails(tmp_path):
    out = cli("simulate", "national_day")
    assert "2025-10-11 18:00 Sat  noise  escalation    feedback level 3 → cs_manager, priority high" in out
    assert "checks passed" in out
    bad = tmp_path / "bad.yaml"
    bad.write_text(SMALL.replace("state: surveyed", "state: approved"), encoding="utf-8")
    out = cli("simulate", str(bad), code=1)
    assert f"{bad}:16:" in out and "expected approved, got surveyed" in out
    data = json.loads(cli("simulate", "--json", str(bad), code=1))
    assert data["passed"] is False and data["cases"]["r"]["state"] == "surveyed"
    assert data["timeline"][0]["event"] == "opened"
    broken = tmp_path / "broken.yaml"
    broken.write_text("start: '2025-09-26 10:00'\nsteps:\n  - fire: x\n    as: li\n", encoding="utf-8")
    out = cli("simulate", str(broken), code=1)
    assert f"{broken}:3:5: which case?" in out
    assert "no shipped scenario" in cli("simulate", "nosuch", code=2)


def test_reassign_note_extend_and_void_steps(tmp_path):
    text = """\
start: "2025-11-03 10:00"
actors:
  wang: {roles: [cs_clerk], communities: [lakeside]}
  sun: {roles: [cs_manager], communities: [lakeside]}
  ma: {roles: [handler], communities: [lakeside], departments: [security]}
steps:
  - open: complaint
    alias: c
    as: wang
    data: {channel: hotline, community: lakeside, summary: 噪音}
  - fire: assign
    case: c
    as: wang
    data: {category: service, severity: ordinary, department: engineering, assignee: li}
  - reassign: c                    # another department: the feedback clock starts a new cycle
    as: wang
    at: "2025-11-04 10:00"
    assignee: ma
    department: security
    reason: 属于安保部
  - note: c
    as: ma
    text: 已联系业主
  - extend: feedback
    case: c
    as: sun
    approved_by: 业主
    due: "2025-11-10 18:00"
  - void: c
    as: wang
    after: 1 day
    reason: 重复登记
expect:
  cases:
    c:
      voided: true
      assignee: ma
      clocks:
        feedback#1: {status: stopped, due: "2025-11-06 18:00"}
        feedback: {cycles: 2, status: stopped, started: "2025-11-04 10:00", due: "2025-11-10 18:00"}
  timeline:
    - {at: "2025-11-04 10:00", case: c, event: reassign}
    - {at: "2025-11-04 10:00", case: c, event: clock_start, clock: feedback, due: "2025-11-07 18:00"}
    - {at: "2025-11-04 10:00", case: c, event: note}
    - {at: "2025-11-04 10:00", case: c, event: extension, clock: feedback, old_due: "2025-11-07 18:00"}
    - {at: "2025-11-05 10:00", case: c, event: void}
  never:
    - {case: c, event: warning}
"""
    result = run_text(text, tmp_path)
    assert result.passed, result.failures
    texts = [e.text() for e in result.timeline if e.event in ("reassign", "note")]
    assert texts == ["reassigned by wang: assignee li → ma, department engineering → security (属于安保部)",
                     "note by ma: 已联系业主"]


def test_the_readme_scenario_example_passes(tmp_path):
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    start = readme.index("scenario: Repair across National Day 2025\nstart:")
    result = run_text(readme[start:readme.index("```", start)], tmp_path)
    assert result.passed and result.checks == 9, result.failures


def test_advancing_past_the_calendar_data_is_reported_at_its_line(tmp_path):
    text = "start: '2026-12-30 10:00'\nsteps:\n  - open: repair\n    as: wang\n    data: {channel: hotline, " \
           "community: lakeside, summary: x}\n  - advance 3 working days\n"
    result = run_text(text, tmp_path)
    [failure] = result.failures
    assert failure.line == 6 and "no holiday data for 2027" in failure.message
