"""Migrating open cases to a new workflow revision, on SQLite and PostgreSQL.

Revision 2 of the complaint workflow (an admin's edit of the shipped file) changes the feedback
target from 3 to 5 working days, renames ``in_progress`` to ``handling``, drops the callback
clock and adds an ``intake`` clock that starts on entering ``registered``. The expected due times
are counted by hand (Sun 2025-09-28 and Sat 10-11 are make-up working days, Oct 1-8 are off).
"""

from __future__ import annotations

import json
import shutil
import threading
from pathlib import Path

import pytest
import sqlalchemy as sa

from estateflow import Actor, Engine, MigrationError, RoleNotAllowed, StaticDirectory, WorkflowNotFound
from estateflow.engine._diff import diff_specs
from estateflow.engine._schema import sla_clocks, timers
from estateflow.engine._validate import load_workflow_file

from .engine_helpers import SHIPPED, snapshot
from .helpers import ACTORS, SHANGHAI, local, cli_runner

COMPLAINT = {"channel": "hotline", "community": "lakeside", "summary": "电梯噪音大", "phone": "13800138000"}
ASSIGN = {"category": "service", "severity": "ordinary", "department": "engineering", "assignee": "li"}
NOW = local(2025, 9, 27, 10)  # Saturday: the migration runs on a day off
INTAKE = """  intake:
    label: {zh: 1个工作日内派单, en: Assigned within 1 working day}
    target: 1 working day
    start: [enter:registered]
    stop: [leave:registered]
"""


def workflow_dir(tmp_path: Path) -> Path:
    target = tmp_path / "workflows"
    target.mkdir()
    shutil.copy(SHIPPED / "complaint.yaml", target / "complaint.yaml")
    return target


def write_revision_2(folder: Path) -> None:
    path = folder / "complaint.yaml"
    text = path.read_text(encoding="utf-8").replace('version: "1.0"', 'version: "2.0"')
    text = text.replace("target: 3 working days", "target: 5 working days").replace("in_progress", "handling")
    start = text.index("  callback:\n    label: {zh: 1个工作日内回访")
    end = text.index("\nnotify:")
    text = text[:start] + INTAKE + text[end:]
    path.write_text(text, encoding="utf-8")


def engine_for(db_url: str, folder: Path) -> Engine:
    return Engine(db_url, folder, create=True, directory=StaticDirectory([*ACTORS, Actor("admin", {"admin"})]))


def assigned(engine: Engine, when):
    case = engine.open("complaint", COMPLAINT, actor="wang", now=when)
    return engine.fire(case.id, "assign", actor="wang", data=ASSIGN, now=when)


def sh(moment):
    return moment.astimezone(SHANGHAI) if moment else None


def clock(engine: Engine, case, name: str):
    return [c for c in engine.clocks(case.id, now=NOW) if c.name == name][-1]


def pending(engine: Engine, case) -> list[tuple[str, str, object]]:
    query = (sa.select(sla_clocks.c.name, timers.c.kind, timers.c.due_at)
             .join(sla_clocks, sla_clocks.c.id == timers.c.clock_id)
             .where(timers.c.case_id == case.id, timers.c.status == "pending")
             .order_by(sla_clocks.c.name, timers.c.kind))
    with engine.db.connect() as conn:
        return [(r.name, r.kind, sh(r.due_at)) for r in conn.execute(query)]


@pytest.fixture
def world(db_url, tmp_path):
    """Cases on r1 in every interesting situation, then revision 2 recorded."""
    folder = workflow_dir(tmp_path)
    with engine_for(db_url, folder) as engine:
        cases = {
            "plain": assigned(engine, local(2025, 9, 26, 10)),  # feedback due Tue 09-30 18:00
            "extended": assigned(engine, local(2025, 9, 26, 10)),
            "breached": assigned(engine, local(2025, 9, 22, 10)),  # due Thu 09-25 18:00
            "new": engine.open("complaint", COMPLAINT, actor="wang", now=local(2025, 9, 26, 11)),
        }
        engine.extend(cases["extended"].id, "feedback", actor="sun", approved_by="客户同意", add="1 working day",
                      now=local(2025, 9, 26, 12))
        engine.tick(now=local(2025, 9, 26, 12))  # the breached case: warning, breach, ladder step 1
        handling = assigned(engine, local(2025, 9, 26, 9))
        cases["handling"] = engine.fire(handling.id, "report_back", actor="li", data={"feedback": "已处理"},
                                        now=local(2025, 9, 26, 13))
        callback = engine.open("complaint", COMPLAINT, actor="wang", now=local(2025, 9, 26, 9))
        callback = assigned_to_callback(engine, callback)
        cases["callback"] = callback
        closed = assigned_to_callback(engine, engine.open("complaint", COMPLAINT, actor="wang",
                                                          now=local(2025, 9, 26, 9)))
        cases["closed"] = engine.fire(closed.id, "callback", actor="zhao", data={"callback_rating": "satisfied"},
                                      now=local(2025, 9, 26, 17))
    write_revision_2(folder)
    engine = engine_for(db_url, folder)
    engine.load(now=local(2025, 9, 26, 18))
    yield engine, cases
    engine.close()


def assigned_to_callback(engine: Engine, case):
    at = local(2025, 9, 26, 15)
    engine.fire(case.id, "assign", actor="wang", data=ASSIGN, now=at)
    engine.fire(case.id, "report_back", actor="li", data={"feedback": "已处理"}, now=at)
    engine.fire(case.id, "resolve", actor="li", data={"resolution": "修好"}, now=at)
    return engine.fire(case.id, "confirm", actor="wang", now=at)


MAP = {"in_progress": "handling"}


def test_dry_run_writes_nothing_and_equals_the_real_run(world):
    engine, cases = world
    before = snapshot(engine)
    preview = engine.migrate("complaint", "r2", state_map=MAP, dry_run=True, now=NOW)
    assert snapshot(engine) == before
    done = engine.migrate("complaint", "complaint@r2", state_map=MAP, actor="admin", now=NOW, batch=2)
    assert (preview.dry_run, done.dry_run) == (True, False)
    assert preview.moves == done.moves and done.skipped == ()
    assert done.batches == 3  # 6 open cases, 2 per transaction
    by_number = {m.number: m for m in done.moves}
    assert cases["closed"].number not in by_number  # closed cases keep the revision they ended on
    assert engine.get(cases["closed"].id).workflow_revision == "complaint@r1"
    for key, case in cases.items():
        if key == "closed":
            continue
        after = engine.get(case.id)
        move = by_number[case.number]
        assert (after.workflow_revision, after.state, move.from_state) == \
            ("complaint@r2", MAP.get(case.state, case.state), case.state)
        [event] = [e for e in engine.history(case.id) if e.kind == "migrated"]
        assert (event.from_state, event.to_state, event.actor, event.data["from"], event.data["to"]) == \
            (case.state, after.state, "admin", "complaint@r1", "complaint@r2")
        # what the plan said about each clock is what the clock table now holds
        for change in move.clocks:
            status = clock(engine, case, change.clock)
            if change.action == "stopped":
                assert status.status == "stopped" and status.extra["reason"] == "migrated"
            else:
                assert status.status == "running" and status.due_at == change.new_due


def test_clocks_follow_the_new_revision(world):
    engine, cases = world
    plan = engine.migrate("complaint", 2, state_map=MAP, actor="admin", now=NOW)
    changes = {m.number: {c.clock: (c.action, sh(c.old_due), sh(c.new_due)) for c in m.clocks} for m in plan.moves}
    number = {k: c.number for k, c in cases.items()}
    # 3 -> 5 working days from Fri 09-26 10:00: Sun 28, Mon 29, Tue 30, Thu 10-09, Fri 10-10
    assert changes[number["plain"]]["feedback"] == ("recomputed", local(2025, 9, 30, 18), local(2025, 10, 10, 18))
    # the extension's extra working day is kept: Sat 10-11 (make-up day)
    assert changes[number["extended"]]["feedback"] == ("recomputed", local(2025, 10, 9, 18), local(2025, 10, 11, 18))
    # from Mon 09-22: 23, 24, 25, 26, 28 → no longer breached at the migration's Saturday
    assert changes[number["breached"]]["feedback"] == ("recomputed", local(2025, 9, 25, 18), local(2025, 9, 28, 18))
    # a new clock starting in the case's state starts now (Sat; the next working day is Sun 28)
    assert changes[number["new"]] == {"intake": ("started", None, local(2025, 9, 28, 18))}
    assert changes[number["callback"]] == {"callback": ("stopped", local(2025, 9, 28, 18), None)}
    assert changes[number["handling"]] == {}

    plain = cases["plain"]
    # warning at 75% of 45 business hours: 33.75 h → Thu 10-09 15:45; the old timers are cancelled
    assert pending(engine, plain) == [("feedback", "breach", local(2025, 10, 10, 18)),
                                      ("feedback", "warn", local(2025, 10, 9, 15, 45)),
                                      ("resolution", "breach", local(2025, 10, 3, 10)),
                                      ("resolution", "warn", local(2025, 10, 3, 10))]  # 1 day before: holiday
    breached = clock(engine, cases["breached"], "feedback")
    assert (breached.breached_at, breached.escalation_level) == (None, 0)
    # its 75% warning was sent under r1 and is not sent again; the ladder waits for a new breach
    assert [p for p in pending(engine, cases["breached"]) if p[0] == "feedback"] == \
        [("feedback", "breach", local(2025, 9, 28, 18))]
    intake = clock(engine, cases["new"], "intake")
    assert (intake.status, sh(intake.started_at), sh(intake.due_at)) == ("running", NOW, local(2025, 9, 28, 18))
    recomputed = [e for e in engine.history(plain.id) if e.kind == "clock_recomputed"]
    assert [(e.data["clock"], e.data["reason"]) for e in recomputed] == [("feedback", "migrated to complaint@r2")]
    # and the new timers fire at their new times, under the new revision
    result = engine.tick(now=local(2025, 9, 28, 18))
    fired = {(number_, kind) for _, kind, number_ in result.fired}
    assert (cases["breached"].number, "breach") in fired and (cases["new"].number, "breach") in fired
    assert (plain.number, "breach") not in fired


def test_unmapped_states_are_refused_with_a_list_and_nothing_written(world):
    engine, cases = world
    before = snapshot(engine)
    with pytest.raises(MigrationError) as caught:
        engine.migrate("complaint", "r2", actor="admin", now=NOW)
    assert caught.value.cases == [(cases["handling"].number, "in_progress")]
    assert "in_progress" in str(caught.value) and "--map" in str(caught.value)
    with pytest.raises(MigrationError, match="does not have"):
        engine.migrate("complaint", "r2", state_map={"in_progress": "doing"}, actor="admin", now=NOW)
    with pytest.raises(RoleNotAllowed):
        engine.migrate("complaint", "r2", state_map=MAP, actor="wang", now=NOW)
    with pytest.raises(WorkflowNotFound):
        engine.migrate("complaint", "r9", state_map=MAP, actor="admin", now=NOW)
    with pytest.raises(ValueError, match="not a revision"):
        engine.migrate("complaint", "repair@r2", actor="admin", now=NOW)
    assert snapshot(engine) == before
    # a migration to the revision the cases are on moves nothing
    assert engine.migrate("complaint", "r1", actor="admin", now=NOW).moves == ()


def test_a_concurrent_fire_on_a_migrating_case_loses_neither_change(db_url, tmp_path):
    folder = workflow_dir(tmp_path)
    with engine_for(db_url, folder) as engine:
        numbers = [assigned(engine, local(2025, 9, 26, 10)).id for _ in range(24)]
    write_revision_2(folder)
    with engine_for(db_url, folder) as engine:
        engine.load(now=NOW)
        errors: list[BaseException] = []
        start = threading.Barrier(2)

        def fire_all() -> None:
            try:
                start.wait()
                for case_id in reversed(numbers):  # meet the migration (which goes in id order) midway
                    engine.fire(case_id, "report_back", actor="li", data={"feedback": f"反馈{case_id}"}, now=NOW)
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

        worker = threading.Thread(target=fire_all)
        worker.start()
        start.wait()
        plan = engine.migrate("complaint", "r2", state_map=MAP, actor="admin", now=NOW, batch=3)
        worker.join(60)
        assert errors == [] and not worker.is_alive()
        assert {m.from_state for m in plan.moves} <= {"assigned", "in_progress"}
        for case_id in numbers:
            case = engine.get(case_id)
            kinds = [e.kind for e in engine.history(case_id)]
            assert (case.workflow_revision, case.state, case.data["feedback"]) == \
                ("complaint@r2", "handling", f"反馈{case_id}")
            assert kinds.count("migrated") == 1 and kinds.count("transition") == 2  # assign + report_back
            assert case.version == 4  # open, assign, report_back, migrated: every write counted once
            assert clock(engine, case, "feedback").status == "stopped"


def test_a_fire_during_the_migrating_transaction_waits_for_it_and_keeps_both_changes(db_url, tmp_path):
    folder = workflow_dir(tmp_path)
    with engine_for(db_url, folder) as engine:
        ids = [assigned(engine, local(2025, 9, 26, 10)).id for _ in range(3)]
    write_revision_2(folder)
    target = ids[1]
    with engine_for(db_url, folder) as engine:
        engine.load(now=NOW)
        fired: list = []
        waited: list[bool] = []
        worker = threading.Thread(target=lambda: fired.append(engine.fire(
            target, "report_back", actor="li", data={"feedback": "已处理"}, now=NOW)))

        def during_migration(conn, clause, multiparams, params, options):  # noqa: ANN001
            rows = [p for p in (*multiparams, params) if isinstance(p, dict)]
            if not waited and any(r.get("kind") == "migrated" and r.get("case_id") == target for r in rows):
                worker.start()  # fire() on the very case this transaction is migrating
                worker.join(0.5)
                waited.append(worker.is_alive())

        sa.event.listen(engine.db, "before_execute", during_migration)
        try:
            plan = engine.migrate("complaint", "r2", state_map=MAP, actor="admin", now=NOW)
        finally:
            sa.event.remove(engine.db, "before_execute", during_migration)
        worker.join(30)
        assert waited == [True]  # the fire waited on the case's lock until the batch committed
        assert [m.from_state for m in plan.moves] == ["assigned"] * 3
        case = engine.get(target)
        events = [(e.kind, e.from_state, e.to_state) for e in engine.history(target)
                  if e.kind in ("migrated", "transition")]
        # the fire ran after the migration, under r2's rules (report_back now leads to 'handling')
        assert events[-2:] == [("migrated", "assigned", "assigned"), ("transition", "assigned", "handling")]
        assert (case.workflow_revision, case.state, case.data["feedback"], case.version) == \
            ("complaint@r2", "handling", "已处理", 4)
        assert fired[0].version == 4


def test_a_fire_between_the_preview_and_the_run_is_kept(db_url, tmp_path):
    folder = workflow_dir(tmp_path)
    with engine_for(db_url, folder) as engine:
        case = assigned(engine, local(2025, 9, 26, 10))
    write_revision_2(folder)
    with engine_for(db_url, folder) as engine:
        preview = engine.migrate("complaint", "r2", state_map=MAP, dry_run=True, now=NOW)
        engine.fire(case.id, "report_back", actor="li", data={"feedback": "已处理"}, now=NOW)
        done = engine.migrate("complaint", "r2", state_map=MAP, actor="admin", now=NOW)
        assert [(m.from_state, m.to_state) for m in preview.moves] == [("assigned", "assigned")]
        assert [(m.from_state, m.to_state) for m in done.moves] == [("in_progress", "handling")]
        after = engine.get(case.id)
        assert (after.state, after.data["feedback"], after.version) == ("handling", "已处理", 4)


def test_diff_reports_states_transitions_clocks_fields_roles_and_notify(tmp_path):
    old = load_workflow_file(SHIPPED / "repair.yaml")
    text = (SHIPPED / "repair.yaml").read_text(encoding="utf-8")
    text = text.replace('version: "1.0"', 'version: "1.1"')
    text = text.replace("      - {after: 2 working days, notify: [cs_manager], priority: high}",
                        "      - {after: 2 working days, notify: [cs_manager, deputy_gm], priority: urgent}")
    text = text.replace("  consent_by: {type: str, label: {zh: 同意延期的客户, en: Customer who agreed to the extension}}\n", "")
    text = text.replace("  finance: {label: {zh: 财务部, en: Finance}}\n",
                        "  finance: {label: {zh: 财务部, en: Finance}}\n  owner: {label: 业主}\n")
    text = text.replace("  - {event: closed, to: [\"field:phone\"], channel: sms, template: result}\n", "")
    path = tmp_path / "repair.yaml"
    path.write_text(text, encoding="utf-8")
    new = load_workflow_file(path)
    result = diff_specs(old, new, "repair@r1", "repair@r2")
    assert [(c.section, c.key, c.kind) for c in result.changes] == [
        ("workflow", "version", "changed"),
        ("fields", "consent_by", "removed"),
        ("roles", "owner", "added"),
        ("clocks", "repair", "changed"),
        ("notify", "closed → result via sms", "removed"),
    ]
    assert result.section("clocks")[0].details == (
        ("escalate[2].notify", ["cs_manager"], ["cs_manager", "deputy_gm"]),
        ("escalate[2].priority", "high", "urgent"))
    lines = result.lines()
    assert lines[0] == "repair@r1 (version 1.0) → repair@r2 (version 1.1): 5 changes"
    assert "      escalate[2].priority: 'high' → 'urgent'" in lines
    assert diff_specs(old, old).identical


def test_cli_workflows_list_diff_and_migrate(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "actors.yaml").write_text(
        "actors:\n  wang: {roles: [cs_clerk], communities: [lakeside]}\n"
        "  li: {roles: [handler], communities: [lakeside], departments: [engineering]}\n"
        "  admin: {roles: [admin]}\n", encoding="utf-8")
    monkeypatch.setenv("ESTATEFLOW_ACTORS", str(tmp_path / "actors.yaml"))
    monkeypatch.setenv("ESTATEFLOW_WORKFLOWS", str(tmp_path / "wf"))
    monkeypatch.delenv("ESTATEFLOW_DB", raising=False)
    cli = cli_runner()

    cli("init", "--copy-workflows", "wf")
    now = ("--now", "2025-09-26T10:00+08:00")
    cli("open", "complaint", "--as", "wang", "--set", "channel=hotline", "--set", "community=lakeside",
        "--set", "summary=噪音", *now)
    cli("fire", "TS-2025-000001", "assign", "--as", "wang", "--set", "category=service",
        "--set", "department=engineering", "--set", "assignee=li", *now)
    write_revision_2(tmp_path / "wf")
    listed = json.loads(cli("--json", "workflows", "list", "complaint"))
    assert [(r["key"], r["version"], r["open_cases"], r["newest"]) for r in listed] == [
        ("complaint@r1", "1.0", 1, False), ("complaint@r2", "2.0", 0, True)]
    rows = {line.split()[1]: line.split()[1:] for line in cli("workflows", "list").splitlines()
            if "complaint@r" in line}
    assert rows["complaint@r1"][-4:] == ["│", "1", "│", "0"] or rows["complaint@r1"][-5:-1] == ["1", "│", "0", "│"]
    assert rows["complaint@r2"][-2:] == ["yes", "│"] and "yes" not in rows["complaint@r1"]
    out = cli("workflows", "diff", "complaint@r1", "complaint@r2")
    assert "+ intake" in out and "- callback" in out and "target: '3 working days' → '5 working days'" in out
    assert "+ handling" in out and "- in_progress" in out
    assert json.loads(cli("--json", "workflows", "diff", "complaint@r2", "wf/complaint.yaml"))["changes"] == []
    assert "NAME@rN" in cli("workflows", "diff", "complaint", "complaint@r2", code=2)
    out = cli("migrate", "complaint", "--to", "r2", "--dry-run", "--now", "2025-09-27T10:00+08:00")
    assert "TS-2025-000001" in out and "09-30 18:00 → 10-10 18:00" in out and "1 case would move" in out
    assert "--as" in cli("migrate", "complaint", "--to", "r2", code=2)
    out = cli("migrate", "complaint", "--to", "r2", "--as", "wang", code=1)
    assert "may not migrate" in out
    plan = json.loads(cli("--json", "migrate", "complaint", "--to", "r2", "--as", "admin",
                          "--now", "2025-09-27T10:00+08:00"))
    assert [(m["case"], m["to_state"]) for m in plan["moves"]] == [("TS-2025-000001", "assigned")]
    assert json.loads(cli("--json", "show", "TS-2025-000001"))["revision"] == "complaint@r2"


def test_a_state_mapped_to_a_final_state_closes_the_case_and_stops_its_clocks(db_url, tmp_path):
    folder = workflow_dir(tmp_path)
    with engine_for(db_url, folder) as engine:
        case = assigned(engine, local(2025, 9, 26, 10))
    write_revision_2(folder)
    with engine_for(db_url, folder) as engine:
        plan = engine.migrate("complaint", "r2", state_map={"assigned": "withdrawn"}, actor="admin", now=NOW)
        assert [(c.clock, c.action) for c in plan.moves[0].clocks] == [("feedback", "stopped"),
                                                                       ("resolution", "stopped")]
        after = engine.get(case.id)
        assert (after.state, after.closed_at, after.is_open) == ("withdrawn", NOW, False)
        assert {c.status for c in engine.clocks(case.id)} == {"stopped"}
        assert pending(engine, after) == []


def test_a_clock_awaiting_calendar_data_takes_the_new_target_when_the_data_comes(db_url, tmp_path):
    folder = workflow_dir(tmp_path)
    with engine_for(db_url, folder) as engine:
        case = assigned(engine, local(2026, 12, 30, 10))  # 3 working days reach into 2027: no data yet
        assert clock(engine, case, "feedback").status == "awaiting_calendar"
    write_revision_2(folder)
    with engine_for(db_url, folder) as engine:
        plan = engine.migrate("complaint", "r2", state_map=MAP, actor="admin", now=local(2026, 12, 30, 11))
        assert [(c.clock, c.action, c.new_due, c.target) for c in plan.moves[0].clocks] == \
            [("feedback", "recomputed", None, "5 working days")]
        days = {f"2027-01-{d:02d}": d not in (1, 2, 3, 9, 10) for d in range(1, 16)}
        engine.set_calendar_days("cn", days, covered_years=[2027], now=local(2026, 12, 30, 12))
        status = clock(engine, case, "feedback")
        # from Wed 12-30: Thu 12-31, then Mon 01-04 .. Thu 01-07
        assert (status.status, status.target, sh(status.due_at)) == ("running", "5 working days",
                                                                     local(2027, 1, 7, 18))
