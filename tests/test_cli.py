"""The command line as a user runs it (click's runner in a temporary working directory)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.helpers import cli_runner

NOTICES = Path(__file__).parent / "data" / "notices"
ACTORS_YAML = """
actors:
  wang: {roles: [cs_clerk], communities: [lakeside], departments: [customer_service]}
  zhao: {roles: [records_clerk], communities: [lakeside]}
  li: {roles: [handler], communities: [lakeside], departments: [engineering]}
  admin: {roles: [admin]}
"""


@pytest.fixture
def cli(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "actors.yaml").write_text(ACTORS_YAML, encoding="utf-8")
    monkeypatch.setenv("ESTATEFLOW_ACTORS", str(tmp_path / "actors.yaml"))
    monkeypatch.delenv("ESTATEFLOW_DB", raising=False)
    monkeypatch.delenv("ESTATEFLOW_WORKFLOWS", raising=False)
    run = cli_runner()
    return run


def test_commands_refuse_a_missing_database_naming_its_absolute_path(cli, tmp_path):
    out = cli("tick", code=1)
    assert str(tmp_path / "estateflow.db") in out and "estateflow init" in out
    assert not (tmp_path / "estateflow.db").exists()


def test_case_lifecycle_from_the_command_line(cli, tmp_path):
    assert "database ready" in cli("init", "--copy-workflows", "wf")
    assert sorted(p.name for p in (tmp_path / "wf").iterdir()) == [
        "complaint.yaml", "move_in.yaml", "renovation.yaml", "repair.yaml"]
    now = "--now", "2025-09-26T10:00+08:00"
    assert "TS-2025-000001" in cli("open", "complaint", "--as", "wang", "--set", "channel=hotline",
                                   "--set", "community=lakeside", "--set", "summary=电梯噪音", *now)
    cli("fire", "TS-2025-000001", "assign", "--as", "wang", "--set", "category=service",
        "--set", "department=engineering", "--set", "assignee=li", *now)
    shown = json.loads(cli("--json", "show", "TS-2025-000001"))
    assert shown["state"] == "assigned" and shown["triggers"] == ["escalate_major", "report_back", "withdraw"]
    clocks = json.loads(cli("--json", "clocks", "TS-2025-000001", *now))
    feedback = [c for c in clocks if c["name"] == "feedback"][0]
    assert feedback["due_at"] == "2025-09-30T10:00:00+00:00"
    out = cli("fire", "TS-2025-000001", "report_back", "--as", "wang", *now, code=1)
    assert "may not fire" in out
    ticked = json.loads(cli("--json", "tick", "--now", "2025-10-09T18:00+08:00"))
    assert {f["kind"] for f in ticked["fired"]} >= {"breach", "escalate#0"}
    listed = json.loads(cli("--json", "list", "--overdue"))
    assert [c["number"] for c in listed] == ["TS-2025-000001"]
    history = json.loads(cli("--json", "history", "TS-2025-000001"))
    assert [e["kind"] for e in history][:3] == ["opened", "clock_start", "transition"]
    out = cli("extend", "TS-2025-000001", "feedback", "--add", "2 working days", "--approved-by", "customer",
              "--as", "wang")
    assert "2025-10-10T10:00:00+00:00" in out  # Tue 09-30 + 2 WD over the National Day holiday
    cli("note", "TS-2025-000001", "called the lift company", "--as", "wang")
    cli("delegate", "wang", "li", "--from", "2025-09-26T00:00+08:00", "--until", "2025-12-31T00:00+08:00",
        "--as", "admin")
    cli("void", "TS-2025-000001", "--reason", "duplicate", "--as", "wang")
    status = json.loads(cli("--json", "status", "--now", "2025-10-09T18:01+08:00"))
    assert status["last_tick"] is not None and status["problems"] == []
    stale = json.loads(cli("--json", "status", "--now", "2025-10-19T18:00+08:00", code=1))
    assert stale["problems"][0] == "no tick for more than 10 minutes"


def test_graph_prints_mermaid_and_dot(cli):
    mermaid = cli("graph", "repair")
    assert mermaid.startswith("stateDiagram-v2") and "awaiting_approval --> approved" in mermaid
    dot = cli("graph", "repair", "--format", "dot", "--lang", "zh")
    assert dot.startswith("digraph repair {") and "待审批" in dot


def test_demo_prints_the_register_of_all_four_workflows(cli, tmp_path):
    out = cli("--json", "demo")
    cases = json.loads(out)
    assert {c["workflow"] for c in cases} == {"complaint", "repair", "move_in", "renovation"}
    assert (tmp_path / "estateflow-demo.db").exists()


def test_calendar_add_show_and_check(cli):
    assert cli("calendar", "add", "2025-09-26T10:00", "3 working days").strip() == "2025-09-30T18:00:00+08:00"
    shown = json.loads(cli("--json", "calendar", "show", "2025"))
    assert "2025-09-28" in shown["workdays"] and "2025-10-08" in shown["holidays"]
    cli("calendar", "add", "2025-09-26T10:00", "3 workdays", code=1)


def test_calendar_import_dry_run_stores_nothing_then_import_stores_and_show_uses_it(cli):
    notice = sorted(NOTICES.glob("2026*.txt"))[0]
    parsed = json.loads(cli("--json", "calendar", "import", str(notice), "--dry-run"))
    assert parsed["year"] == 2026 and "2026-10-01" in parsed["holidays"]
    cli("init")
    cli("calendar", "import", str(notice))
    shown = json.loads(cli("--json", "calendar", "show", "2026"))
    assert set(parsed["workdays"]) <= set(shown["workdays"])


def test_calendar_load_reports_file_line_column(cli, tmp_path):
    cli("init")
    bad = tmp_path / "days.yaml"
    bad.write_text("days:\n  2027-01-01: off\n  2027-13-01: working\n  2027-02-06: maybe\n", encoding="utf-8")
    out = cli("calendar", "load", str(bad), code=1)
    assert f"{bad}:3:3:" in out and f"{bad}:4:15:" in out
    good = tmp_path / "good.yaml"
    good.write_text("days:\n  '2027-01-01': 'off'\n  '2027-02-06': working\ncomplete_years: [2027]\n",
                    encoding="utf-8")
    assert "stored 2 days" in cli("calendar", "load", str(good))
    assert cli("calendar", "add", "2026-12-31T10:00", "1 working day").strip() == "2027-01-04T18:00:00+08:00"


def test_outbox_list_show_retry_purge(cli):
    cli("init")
    now = "--now", "2025-09-26T10:00+08:00"
    cli("open", "complaint", "--as", "wang", "--set", "channel=hotline", "--set", "community=lakeside",
        "--set", "summary=噪音", "--set", "phone=13800138000", *now)
    listed = json.loads(cli("--json", "outbox", "list"))
    assert [m["status"] for m in listed] == ["pending"] and listed[0]["recipient"] == "138****8000"
    shown = json.loads(cli("--json", "outbox", "show", str(listed[0]["id"])))
    assert "13800138000" not in json.dumps(shown, ensure_ascii=False)
    cli("tick", "--now", "2025-09-26T10:01+08:00")
    assert json.loads(cli("--json", "outbox", "list", "--status", "sent"))[0]["id"] == listed[0]["id"]
    assert "0 messages queued again" in cli("outbox", "retry", "--all-dead")
    assert "1 sent messages purged" in cli("outbox", "purge", "--sent-before", "2030-01-01")
