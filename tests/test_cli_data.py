"""``estateflow import cases`` and ``estateflow purge`` as a user runs them (click's runner)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from tests.helpers import cli_runner

DATA = Path(__file__).parent / "data" / "import"
NOW = ("--now", "2025-10-20T10:00+08:00")
VALUES = ("--value", "channel:电话=hotline", "--value", "channel:来访=walk_in",
          "--value", "category:服务=service", "--value", "category:质量=quality")
ACTORS_YAML = """
actors:
  wang: {roles: [cs_clerk], communities: [lakeside]}
  li: {roles: [handler], communities: [lakeside], departments: [engineering]}
  sun: {roles: [cs_manager], communities: [lakeside]}
"""


@pytest.fixture
def cli(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "actors.yaml").write_text(ACTORS_YAML, encoding="utf-8")
    monkeypatch.setenv("ESTATEFLOW_ACTORS", str(tmp_path / "actors.yaml"))
    for name in ("ESTATEFLOW_DB", "ESTATEFLOW_WORKFLOWS"):
        monkeypatch.delenv(name, raising=False)
    run = cli_runner()
    run("init")
    return run


def test_import_dry_run_then_real_run_from_the_command_line(cli):
    register = str(DATA / "complaints.csv")
    out = cli("import", "cases", register, "--workflow", "complaint", *VALUES, *NOW, "--dry-run", "--as", "sun")
    assert "would import 6 cases into complaint@r1" in out and "4 open, 2 closed, 2 overdue" in out
    assert "dry run: nothing was written" in out
    assert json.loads(cli("--json", "list")) == []
    report = json.loads(cli("--json", "import", "cases", register, "--workflow", "complaint", *VALUES, *NOW))
    assert report["ok"] and report["committed"] and report["generated"] == ["TS-2025-000155"]
    assert report["overdue"] == ["TS-2025-000153", "TS-2025-000140"]
    clocks = json.loads(cli("--json", "clocks", "TS-2025-000153", *NOW))
    assert [(c["name"], c["breached"]) for c in clocks] == [("feedback", True), ("resolution", True)]
    shown = json.loads(cli("--json", "show", "TS-2025-000153"))
    assert shown["received_at"] == "2025-09-26T06:30:00+00:00" and shown["state"] == "assigned"
    opened = cli("open", "complaint", "--as", "wang", "--set", "channel=hotline", "--set", "community=lakeside",
                 "--set", "summary=新投诉", *NOW)
    assert "TS-2025-000156" in opened
    again = cli("import", "cases", register, "--workflow", "complaint", *VALUES, *NOW, code=1)
    assert "complaints.csv:3: column 编号: number 'TS-2025-000153' is already a case" in again
    assert "nothing was imported" in again


def test_import_of_a_bad_file_lists_every_problem_and_exits_1(cli):
    out = cli("import", "cases", str(DATA / "bad.csv"), "--workflow", "complaint", *VALUES, *NOW, code=1)
    for line, column in ((3, "状态"), (4, "受理时间"), (5, "投诉内容"), (6, "来源"), (7, "编号"), (9, "联系电话"),
                         (10, "办结时间"), (11, "办结时间"), (12, "受理时间"), (13, "来源")):
        assert f"bad.csv:{line}: column {column}:" in out
    assert "11 problems in 12 rows; nothing was imported" in out  # line 8 is new here
    assert json.loads(cli("--json", "list")) == []
    problems = json.loads(cli("--json", "import", "cases", str(DATA / "bad.csv"), "--workflow", "complaint",
                              *VALUES, *NOW, code=1))["problems"]
    assert {(p["line"], p["column"]) for p in problems} >= {(3, "状态"), (13, "来源")}


def test_import_option_mistakes_are_one_clear_line(cli, monkeypatch, tmp_path):
    register = str(DATA / "complaints.csv")
    out = cli("import", "cases", register, "--workflow", "complaint", "--map", "编号=reference", code=1)
    assert "error:" in out and "'reference' is not a field of complaint" in out
    out = cli("import", "cases", register, "--workflow", "complaint", "--value", "channel=hotline", code=2)
    assert "FIELD:TEXT=VALUE" in out
    out = cli("import", "cases", "missing.csv", "--workflow", "complaint", code=1)
    assert "no such file" in out
    (tmp_path / "register.xlsx").write_bytes(b"PK\x03\x04 not really a workbook")
    monkeypatch.setitem(sys.modules, "openpyxl", None)  # as on a machine without the xlsx extra
    out = cli("import", "cases", str(tmp_path / "register.xlsx"), "--workflow", "complaint", code=1)
    assert "pip install 'estateflow[xlsx]'" in out


def test_purge_from_the_command_line(cli):
    cli("import", "cases", str(DATA / "complaints.csv"), "--workflow", "complaint", *VALUES, *NOW)
    out = cli("purge", "--closed-before", "2025-10-01", "--dry-run", "--now", "2026-01-05T09:00+08:00")
    assert "would anonymise 2 cases closed before 2025-10-01" in out
    assert "complaint: customer_name, email, phone, unit" in out and "dry run" in out
    assert json.loads(cli("--json", "show", "TS-2025-000120"))["data"]["phone"] == "13700137000"
    out = cli("purge", "--closed-before", "2025-10-01", "--as", "li", code=1)
    assert "may not purge personal data of complaint cases" in out
    report = json.loads(cli("--json", "purge", "--closed-before", "2025-10-01", "--as", "sun",
                            "--now", "2026-01-05T09:00+08:00"))
    assert report["count"] == 2 and sorted(report["cases"]) == ["TS-2024-000890", "TS-2025-000120"]
    shown = json.loads(cli("--json", "show", "TS-2025-000120"))
    assert shown["data"]["phone"] == "***" and shown["state"] == "closed"
    assert json.loads(cli("--json", "show", "TS-2025-000153"))["data"]["phone"] == "13800138000"
    history = json.loads(cli("--json", "history", "TS-2025-000120"))
    assert [e["kind"] for e in history] == ["imported", "purged"] and history[1]["actor"] == "sun"
    assert "anonymised 0 cases" in cli("purge", "--closed-before", "2025-10-01")
    assert "not a date" in cli("purge", "--closed-before", "last year", code=2)
