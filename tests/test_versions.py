"""Workflow revisions: an edited file is a new revision only when its content changed, and a
version edit never changes a running case — on SQLite and PostgreSQL.

The shipped complaint workflow is copied into a temporary directory and edited there the way
an admin would (a new feedback target, a role added to a step); every assertion reads the
database back through a fresh Engine, as another process would.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import sqlalchemy as sa

from estateflow import Engine, RoleNotAllowed, StaticDirectory, WorkflowNotFound

from .engine_helpers import SHIPPED
from .helpers import ACTORS, SHANGHAI, local

COMPLAINT = {"channel": "hotline", "community": "lakeside", "summary": "电梯噪音大", "phone": "13800138000"}
ASSIGN = {"category": "service", "severity": "ordinary", "department": "engineering", "assignee": "li"}
CASE_TABLES = ("cases", "case_events", "sla_clocks", "timers", "outbox")


def copy_complaint(tmp_path: Path) -> Path:
    target = tmp_path / "workflows"
    target.mkdir()
    shutil.copy(SHIPPED / "complaint.yaml", target / "complaint.yaml")
    return target / "complaint.yaml"


def engine_for(db_url: str, workflows: Path) -> Engine:
    return Engine(db_url, workflows, create=True, directory=StaticDirectory(ACTORS))


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text, old
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


def rows(engine: Engine) -> dict[str, list[tuple]]:
    with engine.db.connect() as conn:
        return {t: sorted(tuple(map(str, r)) for r in conn.execute(sa.text(f"SELECT * FROM {t}")).all())
                for t in CASE_TABLES}


def feedback_due(engine: Engine, case_id: int):
    [clock] = [c for c in engine.clocks(case_id) if c.name == "feedback"]
    return clock.due_at.astimezone(SHANGHAI)


def assigned(engine: Engine, when) -> object:
    case = engine.open("complaint", COMPLAINT, actor="wang", now=when)
    return engine.fire(case.id, "assign", actor="wang", data=ASSIGN, now=when)


def test_a_file_edited_only_in_comments_and_layout_is_not_a_new_revision(db_url, tmp_path):
    path = copy_complaint(tmp_path)
    with engine_for(db_url, path.parent) as engine:
        assert engine.load() == []
    text = path.read_text(encoding="utf-8")
    path.write_text("# edited by the admin, nothing else\n" + text.replace("  - trigger: assign\n",
                                                                           "\n  - trigger: assign   # first step\n"),
                    encoding="utf-8")
    with engine_for(db_url, path.parent) as engine:
        assert engine.load() == []
        with engine.db.connect() as conn:
            assert [r.key for r in engine.workflows().revisions(conn, "complaint")] == ["complaint@r1"]
        assert engine.open("complaint", COMPLAINT, actor="wang", now=local(2025, 9, 26, 10)).revision == 1


def test_a_version_edit_never_changes_a_running_case(db_url, tmp_path):
    path = copy_complaint(tmp_path)
    with engine_for(db_url, path.parent) as engine:
        old = assigned(engine, local(2025, 9, 26, 10))
        assert feedback_due(engine, old.id) == local(2025, 9, 30, 18)
        before = rows(engine)

    edit(path, 'version: "1.0"', 'version: "1.1"')
    edit(path, "target: 3 working days", "target: 2 working days")
    edit(path, "dest: in_progress\n    label: {zh: 责任部门反馈, en: Department reports back to CS}\n"
               "    roles: [handler, department_head]",
         "dest: in_progress\n    label: {zh: 责任部门反馈, en: Department reports back to CS}\n"
         "    roles: [handler, department_head, cs_clerk]")
    with engine_for(db_url, path.parent) as engine:
        assert engine.load() == []  # a new version label: no warning
        # loading the edit wrote a revision and nothing else
        assert rows(engine) == before
        case = engine.get(old.id)
        assert (case.workflow_revision, case.state, case.version) == ("complaint@r1", "assigned", old.version)
        assert feedback_due(engine, old.id) == local(2025, 9, 30, 18)

        new = assigned(engine, local(2025, 9, 26, 11))
        assert new.workflow_revision == "complaint@r2"
        assert feedback_due(engine, new.id) == local(2025, 9, 29, 18)  # Sun 09-28 worked: 2 WD → Mon

        # each case runs by its own revision's rules
        with pytest.raises(RoleNotAllowed):
            engine.fire(old.id, "report_back", actor="wang", data={"feedback": "已联系"}, now=local(2025, 9, 27, 9))
        assert engine.fire(new.id, "report_back", actor="wang", data={"feedback": "已联系"},
                           now=local(2025, 9, 27, 9)).state == "in_progress"
        # timers of the old case keep the old due time and fire then, under r1
        fired = engine.tick(now=local(2025, 9, 30, 18))
        assert [(kind, number) for _, kind, number in fired.fired if number == old.number][-2:] == \
            [("breach", old.number), ("escalate#0", old.number)]
        with engine.db.connect() as conn:
            listed = engine.workflows().revisions(conn, "complaint")
        assert [(r.key, r.version_label) for r in listed] == [("complaint@r1", "1.0"), ("complaint@r2", "1.1")]
        assert listed[0].digest != listed[1].digest and listed[0].created_at <= listed[1].created_at


def test_newest_means_the_highest_revision_in_the_database_not_the_file_a_process_loaded(db_url, tmp_path):
    path = copy_complaint(tmp_path)
    original = path.read_text(encoding="utf-8")
    stale_dir = tmp_path / "stale"
    stale_dir.mkdir()
    (stale_dir / "complaint.yaml").write_text(original, encoding="utf-8")
    with engine_for(db_url, path.parent) as engine:
        engine.load()
    edit(path, "target: 3 working days", "target: 5 working days")
    with engine_for(db_url, path.parent) as engine:
        assert any("version label" in w for w in engine.load())  # changed without a new label: warned
    # a process still reading the old file records nothing new and opens on r2 all the same
    with engine_for(db_url, stale_dir) as stale:
        assert stale.load() == []
        case = assigned(stale, local(2025, 9, 26, 10))
        assert case.workflow_revision == "complaint@r2"
        assert feedback_due(stale, case.id) == local(2025, 10, 10, 18)
        with stale.db.connect() as conn:
            assert [r.key for r in stale.workflows().revisions(conn)] == ["complaint@r1", "complaint@r2"]
    # reverting the file to r1's content reuses r1's row: no r3
    path.write_text(original, encoding="utf-8")
    with engine_for(db_url, path.parent) as engine:
        assert engine.load() == []
        with engine.db.connect() as conn:
            assert [r.key for r in engine.workflows().revisions(conn, "complaint")] == ["complaint@r1", "complaint@r2"]
        assert engine.workflows().latest("complaint") == 2


def test_an_old_revision_is_rebuilt_from_its_stored_text_in_a_process_that_never_loaded_it(db_url, tmp_path):
    path = copy_complaint(tmp_path)
    with engine_for(db_url, path.parent) as engine:
        old = assigned(engine, local(2025, 9, 26, 10))
    edit(path, "target: 3 working days", "target: 2 working days")
    with engine_for(db_url, path.parent) as engine:
        registry = engine.workflows()
        with pytest.raises(WorkflowNotFound):  # not in memory and no connection: never guessed
            registry.spec_of("complaint", 1)
        assert engine.get(old.id, actor="li").data["phone"] == "***"  # masked by r1's rules
        assert registry.spec_of("complaint", 1).clocks["feedback"].target == "3 working days"
        with engine.db.connect() as conn:
            assert registry.spec_of("complaint", 2, conn).clocks["feedback"].target == "2 working days"
            with pytest.raises(WorkflowNotFound):
                registry.spec_of("complaint", 3, conn)
        assert registry.file_spec("complaint").clocks["feedback"].target == "2 working days"
        assert registry.file_names == ["complaint"]
