"""Report files as people open them: CSV in Excel, XLSX, mailed HTML, JSON, the command line."""

from __future__ import annotations

import csv
import json
import re
from datetime import datetime

import pytest

from estateflow import Engine, YamlDirectory
from estateflow.reports import render_csv, render_html, render_xlsx

from .helpers import local, cli_runner

ACTORS_YAML = """
actors:
  wang: {roles: [cs_clerk], communities: [lakeside], departments: [customer_service], name: 王客服}
  zhao: {roles: [records_clerk], communities: [lakeside]}
  li: {roles: [handler], communities: [lakeside], departments: [engineering], name: 李工}
  ma: {roles: [handler], communities: [lakeside], departments: [security]}
"""
NOW = "2025-09-15T09:00+08:00"


@pytest.fixture
def filled(tmp_path):
    """Two complaints in 2025-W37 (one closed, one overdue; a summary with markup in it)."""
    (tmp_path / "actors.yaml").write_text(ACTORS_YAML, encoding="utf-8")
    url = f"sqlite:///{tmp_path / 'estateflow.db'}"
    with Engine(url, create=True, directory=YamlDirectory(tmp_path / "actors.yaml")) as engine:
        base = {"channel": "hotline", "community": "lakeside", "customer_name": "张三", "phone": "13800138000",
                "unit": "3-1201"}
        done = engine.open("complaint", {**base, "summary": "电梯噪音大"}, actor="wang", now=local(2025, 9, 8, 9))
        late = engine.open("complaint", {**base, "summary": "<b>漏水</b> & 异味"}, actor="wang",
                           now=local(2025, 9, 8, 10))
        for case in (done, late):
            engine.fire(case.id, "assign", actor="wang", now=local(2025, 9, 8, 11), data={
                "category": "service", "severity": "ordinary", "department": "engineering", "assignee": "li"})
        engine.fire(done.id, "report_back", actor="li", data={"feedback": "已处理"}, now=local(2025, 9, 9, 10))
        engine.fire(done.id, "resolve", actor="li", data={"resolution": "更换导轨垫片"}, now=local(2025, 9, 9, 11))
        engine.fire(done.id, "confirm", actor="wang", now=local(2025, 9, 9, 12))
        engine.fire(done.id, "callback", actor="zhao", data={"callback_rating": "satisfied"}, now=local(2025, 9, 9, 15))
        engine.tick(now=datetime.fromisoformat(NOW))
    return tmp_path, url


@pytest.fixture
def engine(filled):
    tmp_path, url = filled
    with Engine(url, directory=YamlDirectory(tmp_path / "actors.yaml")) as engine:
        yield engine


@pytest.fixture
def cli(filled, monkeypatch):
    tmp_path, url = filled
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ESTATEFLOW_DB", url)
    monkeypatch.setenv("ESTATEFLOW_ACTORS", str(tmp_path / "actors.yaml"))
    monkeypatch.delenv("ESTATEFLOW_WORKFLOWS", raising=False)
    monkeypatch.setenv("COLUMNS", "300")  # rich wraps cells to the terminal width
    run = cli_runner()
    return run


def weekly(engine, **kwargs):
    return engine.report_weekly(week="2025-W37", now=datetime.fromisoformat(NOW), **kwargs)


def test_csv_has_a_bom_for_excel_and_reads_back_with_the_same_figures(engine, tmp_path):
    target = tmp_path / "weekly.csv"
    render_csv(weekly(engine, lang="en"), target)
    assert target.read_bytes().startswith(b"\xef\xbb\xbf")
    with open(target, encoding="utf-8-sig", newline="") as fh:
        rows = list(csv.reader(fh))
    sections = csv_sections(rows)
    assert list(sections) == ["Summary", "By workflow", "By clock", "By category", "By department", "By handler",
                              "Unresolved cases", "Major complaints"]
    assert sections["Summary"]["note"] == ["Working days: 5"]
    header, first = sections["Summary"]["rows"][:2]
    summary = dict(zip(header, first))
    assert summary == {"Period": "2025-W37", "Opened": "2", "Closed": "1", "Still open": "1", "Overdue": "1",
                       "Clocks stopped": "2", "On time": "2", "On-time rate": "100.0%"}
    register = tmp_path / "register.csv"
    render_csv(engine.report_register(week="2025-W37", now=datetime.fromisoformat(NOW)), register)
    with open(register, encoding="utf-8-sig", newline="") as fh:
        table = list(csv.DictReader(fh))
    assert [(r["客户"], r["电话"], r["房号"], r["回访"]) for r in table] == [
        ("张*", "138****8000", "***", "满意"), ("张*", "138****8000", "***", "")]


def csv_sections(rows):
    """A multi-section CSV: a title row (title, optional note), a header, rows, an empty row."""
    found, current = {}, None
    for row in rows:
        if not row:
            current = None
        elif current is None:
            current = found[row[0]] = {"note": row[1:], "rows": []}
        else:
            current["rows"].append(row)
    return found


def test_xlsx_opens_with_openpyxl_numbers_as_numbers(engine, tmp_path):
    from openpyxl import load_workbook

    target = tmp_path / "weekly.xlsx"
    render_xlsx(weekly(engine), target)
    book = load_workbook(target)
    assert book.sheetnames[:3] == ["汇总", "按业务", "按时限"]
    summary = book["汇总"]
    assert [c.value for c in summary[1]][:3] == ["期间", "受理", "办结"]
    assert [c.value for c in summary[2]] == ["2025-W37", 2, 1, 1, 1, 2, 2, 1.0]
    assert summary.cell(2, 8).number_format == "0.0%"
    unresolved = book["未办结事项"]
    assert unresolved.cell(2, 8).value == datetime(2025, 9, 8, 10, 0)  # local time, as Excel shows it


def test_html_is_self_contained_with_every_table_and_an_svg_chart(engine):
    report = weekly(engine)
    page = render_html(report)
    assert page.startswith("<!DOCTYPE html>") and "<style>" in page
    assert page.count("<table>") == len(report.sections())
    assert re.search(r"<svg [^>]*>.*</svg>", page, re.S)
    assert "<script" not in page and "<link" not in page and "src=" not in page and "url(" not in page
    assert "&lt;b&gt;漏水&lt;/b&gt; &amp; 异味" in page and "<b>漏水" not in page
    assert "张三" not in page and "3-1201" not in page


def test_cli_prints_tables_and_json_and_writes_every_file_format(cli, tmp_path):
    out = cli("report", "weekly", "--week", "2025-W37", "--now", NOW)
    assert "客服周报" in out and "2025-W37" in out and "按时率" in out
    data = json.loads(cli("--json", "report", "weekly", "--week", "2025-W37", "--now", NOW))
    assert (data["totals"]["opened"], data["totals"]["overdue_at_end"]) == (2, 1)
    assert json.loads(cli("report", "sla", "--week", "2025-W37", "--json", "--now", NOW))["report"] == "sla"
    out = cli("report", "register", "--week", "2025-W37", "--now", NOW, "--csv", "r.csv", "--xlsx", "r.xlsx",
              "--html", "r.html")
    assert [line.split("/")[-1] for line in out.split()[1::2]] == ["r.csv", "r.xlsx", "r.html"]
    assert all((tmp_path / name).stat().st_size > 0 for name in ("r.csv", "r.xlsx", "r.html"))
    assert "<svg" in (tmp_path / "r.html").read_text(encoding="utf-8")
    out = cli("report", "ratings", "--quarter", "2025-Q3", "--lang", "en", "--now", NOW)
    assert "Repair workers" in out


def test_cli_masks_personal_data_unless_an_allowed_actor_asks(cli):
    masked = cli("report", "register", "--week", "2025-W37", "--now", NOW)
    assert "张*" in masked and "张三" not in masked and "masked" in masked
    shown = cli("report", "register", "--week", "2025-W37", "--now", NOW, "--unmasked", "--as", "wang")
    assert "张三" in shown and "13800138000" in shown
    refused = cli("report", "register", "--week", "2025-W37", "--now", NOW, "--unmasked", "--as", "li", code=1)
    assert "may not see personal data" in refused
    assert "--as" in cli("report", "register", "--week", "2025-W37", "--unmasked", "--now", NOW, code=1)


def test_cli_names_the_extra_to_install_when_openpyxl_is_missing(cli, monkeypatch, tmp_path):
    monkeypatch.setitem(__import__("sys").modules, "openpyxl", None)  # as if not installed
    out = cli("report", "weekly", "--week", "2025-W37", "--now", NOW, "--xlsx", "w.xlsx", code=1)
    assert "pip install 'estateflow[xlsx]'" in out
    assert not (tmp_path / "w.xlsx").exists()


def test_cli_rejects_a_bad_period_in_one_line(cli):
    out = cli("report", "weekly", "--week", "2025-40", "--now", NOW, code=1)
    assert "write it like 2025-W40" in out
