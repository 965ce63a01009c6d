"""The engine contract, run against real SQLite and real PostgreSQL (``db_url`` is parametrized)."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from estateflow import (ActionError, CaseNotFound, ConditionFailed, ConflictError, Engine, MissingFields,
                        RoleNotAllowed, SchemaError, TriggerNotAllowed, WorkflowError)
from tests.engine_helpers import at, make_engine, open_ticket, snapshot, start_ticket, ticket_dir


@pytest.fixture
def engine(db_url, tmp_path):
    eng = make_engine(db_url, ticket_dir(tmp_path), attachments_dir=tmp_path / "files")
    yield eng
    eng.close()


def test_open_numbers_case_per_pattern_and_records_history(engine):
    first = open_ticket(engine, at(2025, 12, 31, 23, 30))
    second = open_ticket(engine, at(2026, 1, 1, 0, 10))
    third = open_ticket(engine, at(2026, 1, 2, 9, 0))
    assert (first.number, second.number, third.number) == ("TK-east-2025-0001", "TK-east-2026-0001",
                                                           "TK-east-2026-0002")
    assert first.state == "new" and first.version == 1 and first.workflow_revision == "ticket@r1"
    [event] = engine.history(first.id)
    assert (event.kind, event.to_state, event.actor) == ("opened", "new", "clerk")
    assert engine.get("TK-east-2026-0002").id == third.id


def test_fire_moves_state_bumps_version_and_writes_one_history_row(engine):
    case = start_ticket(engine, at(2025, 9, 26, 10))
    assert (case.state, case.version, case.assignee, case.department) == ("working", 2, "worker", "eng")
    events = [e for e in engine.history(case.id) if e.kind == "transition"]
    assert [(e.trigger, e.from_state, e.to_state, e.actor) for e in events] == [("start", "new", "working", "clerk")]
    assert events[0].data["changed"] == {"assignee": "worker", "department": "eng"}


@pytest.mark.parametrize("call, error", [
    (lambda e, c: e.fire(999_999, "start", actor="clerk"), CaseNotFound),
    (lambda e, c: e.fire(c.id, "finish", actor="worker", data={"amount": "5"}), TriggerNotAllowed),
    (lambda e, c: e.fire(c.id, "no_such_trigger", actor="clerk"), TriggerNotAllowed),
    (lambda e, c: e.fire(c.id, "start", actor="worker", data={"assignee": "w", "department": "eng"}), RoleNotAllowed),
    (lambda e, c: e.fire(c.id, "start", actor="west_clerk", data={"assignee": "w", "department": "eng"}), RoleNotAllowed),
    (lambda e, c: e.fire(c.id, "start", actor="clerk", data={"assignee": "w"}), MissingFields),
    (lambda e, c: e.fire(c.id, "start", actor="clerk", data={"assignee": "w", "department": "eng", "amount": "x"}), MissingFields),
    (lambda e, c: e.fire(c.id, "start", actor="clerk", data={"nonsense": 1}), MissingFields),
    (lambda e, c: e.fire(c.id, "start", actor="clerk", data={"assignee": "w", "department": "eng"}, expected_version=7), ConflictError),
    (lambda e, c: e.open("ticket", {"community": "east"}, actor="clerk"), MissingFields),
    (lambda e, c: e.open("ticket", {"community": "west", "summary": "x"}, actor="clerk"), RoleNotAllowed),
    (lambda e, c: e.open("ticket", {"community": "east", "summary": "x", "amount": "-1"}, actor="clerk"), MissingFields),
])
def test_every_rejected_call_raises_its_error_and_writes_nothing(engine, call, error):
    case = open_ticket(engine, at(2025, 9, 26, 10))
    before = snapshot(engine)
    with pytest.raises(error):
        call(engine, case)
    assert snapshot(engine) == before


def test_missing_fields_lists_every_problem_at_once(engine):
    case = open_ticket(engine, at(2025, 9, 26, 10))
    with pytest.raises(MissingFields) as info:
        engine.fire(case.id, "start", actor="clerk", data={"amount": "abc"})
    assert info.value.fields == ["amount"]  # an invalid value is refused before requirements are checked
    with pytest.raises(MissingFields) as info:
        engine.fire(case.id, "start", actor="clerk")
    assert set(info.value.fields) == {"assignee", "department"}


def test_condition_chooses_transition_and_role_follows_the_chosen_one(engine):
    small = start_ticket(engine, at(2025, 9, 26, 10))
    big = start_ticket(engine, at(2025, 9, 26, 10))
    done = engine.fire(small.id, "finish", actor="worker", data={"amount": "1000"})
    assert done.state == "done" and done.closed_at is not None
    with pytest.raises(RoleNotAllowed):
        engine.fire(big.id, "finish", actor="worker", data={"amount": "1000.01"})
    assert engine.fire(big.id, "finish", actor="boss", data={"amount": "1000.01"}).state == "done"


def test_condition_failed_when_no_condition_holds(engine):
    case = start_ticket(engine, at(2025, 9, 26, 10))
    before = snapshot(engine)
    with pytest.raises(ConditionFailed):
        engine.fire(case.id, "finish", actor="boss", data={"amount": "100000.01"})
    with pytest.raises(MissingFields) as info:  # a missing input is reported as such, not as a failed condition
        engine.fire(case.id, "finish", actor="worker")
    assert info.value.fields == ["amount"]
    assert snapshot(engine) == before


def test_a_step_cannot_change_the_facts_its_condition_is_judged_on(engine):
    case = start_ticket(engine, at(2025, 9, 26, 10))
    case = engine.fire(case.id, "park", actor="worker", data={"amount": "50000"})
    case = engine.fire(case.id, "unpark", actor="worker")
    # 'finish' requires amount, so it may set it; 'park' has no condition and may too
    assert engine.fire(case.id, "finish", actor="boss", data={"amount": "50000"}).state == "done"


def test_department_scoped_role_must_match_case_department(engine):
    case = start_ticket(engine, at(2025, 9, 26, 10))
    with pytest.raises(RoleNotAllowed):
        engine.fire(case.id, "park", actor="other_worker")
    assert engine.fire(case.id, "park", actor="worker").state == "waiting"


def test_stale_version_is_a_conflict(engine):
    case = start_ticket(engine, at(2025, 9, 26, 10))
    engine.fire(case.id, "park", actor="worker", expected_version=case.version)
    with pytest.raises(ConflictError):
        engine.fire(case.id, "unpark", actor="worker", expected_version=case.version)


def test_delegation_lets_a_deputy_act_and_history_says_for_whom(engine):
    case = start_ticket(engine, at(2025, 9, 26, 10))
    with pytest.raises(RoleNotAllowed):
        engine.fire(case.id, "finish", actor="deputy", data={"amount": "5000"}, now=at(2025, 9, 27, 10))
    engine.delegate("deputy", "boss", starts_at=at(2025, 9, 27), ends_at=at(2025, 9, 28), actor="admin")
    done = engine.fire(case.id, "finish", actor="deputy", data={"amount": "5000"}, now=at(2025, 9, 27, 10))
    event = [e for e in engine.history(done.id) if e.kind == "transition"][-1]
    assert (event.actor, event.on_behalf_of, event.actor_display) == ("deputy", "boss", "deputy for boss")


def test_everyday_operations_note_reassign_link_void_attach(engine, tmp_path):
    case = start_ticket(engine, at(2025, 9, 26, 10))
    other = open_ticket(engine, at(2025, 9, 26, 11))
    engine.note(case.id, "called the lift company", actor="clerk")
    moved = engine.reassign(case.id, assignee="other_worker", department="security", actor="clerk", reason="wrong team")
    assert (moved.assignee, moved.department) == ("other_worker", "security")
    engine.link(other.id, case.id, "duplicate_of", actor="clerk")
    assert [(l.case_id, l.other_id, l.kind) for l in engine.links(case.id)] == [(other.id, case.id, "duplicate_of")]
    attachment = engine.attach(case.id, "survey.jpg", actor="clerk", media_type="image/jpeg", content=b"JPEG")
    assert attachment.sha256 == __import__("hashlib").sha256(b"JPEG").hexdigest()
    assert attachment.uri.startswith("file://")
    voided = engine.void(other.id, "duplicate of " + case.number, actor="clerk")
    assert voided.voided and not voided.is_open
    with pytest.raises(TriggerNotAllowed):
        engine.fire(other.id, "start", actor="clerk", data={"assignee": "w", "department": "eng"})
    kinds = [e.kind for e in engine.history(case.id)]
    assert {"note", "reassign", "attach"} <= set(kinds)


def test_force_state_needs_admin_and_is_audited(engine):
    case = start_ticket(engine, at(2025, 9, 26, 10))
    with pytest.raises(RoleNotAllowed):
        engine.force_state(case.id, "done", actor="clerk", reason="x")
    forced = engine.force_state(case.id, "done", actor="admin", reason="closed by phone, system was down")
    assert forced.state == "done" and forced.closed_at is not None
    event = [e for e in engine.history(case.id) if e.kind == "force_state"][0]
    assert (event.from_state, event.to_state, event.data["reason"]) == ("working", "done",
                                                                        "closed by phone, system was down")


def test_find_filters_text_pagination_scope_and_masking(engine):
    a = start_ticket(engine, at(2025, 9, 26, 10), unit="3-1201", customer_name="张三")
    open_ticket(engine, at(2025, 9, 26, 11), unit="5-0801", customer_name="李四", phone="13900139000")
    assert [c.id for c in engine.find(state="working")] == [a.id]
    assert [c.unit for c in engine.find(text="13900139000")] == ["5-0801"]
    assert [c.unit for c in engine.find(text="张三")] == ["3-1201"]
    assert len(engine.find(limit=1)) == 1 and len(engine.find(limit=1, offset=1)) == 1
    assert engine.find(actor="west_clerk") == []
    masked = engine.get(a.id, actor="worker")
    assert masked.data["customer_name"] == "***" and masked.data["summary"] == "lift noise"
    assert engine.get(a.id, actor="clerk").data["customer_name"] == "张三"
    with pytest.raises(CaseNotFound):
        engine.get(a.id, actor="west_clerk")


def test_available_triggers_respect_roles_and_state(engine):
    case = start_ticket(engine, at(2025, 9, 26, 10))
    assert engine.available_triggers(case.id, "worker") == ["park"]
    assert engine.available_triggers(case.id, "clerk") == ["park"]
    assert engine.available_triggers(case.id, "west_clerk") == []


def test_raising_action_rolls_back_and_hooks_see_only_committed_steps(db_url, tmp_path):
    workflows = ticket_dir(tmp_path)
    text = (workflows / "ticket.yaml").read_text(encoding="utf-8")
    (workflows / "ticket.yaml").write_text(text.replace("    dest: waiting\n", "    dest: waiting\n    actions: [audit]\n"),
                                           encoding="utf-8")
    calls = []

    def audit(ctx):
        if ctx.data.get("note") == "boom":
            raise RuntimeError("audit service down")
        return {"note": "audited"}

    engine = make_engine(db_url, workflows, actions={"audit": audit})
    engine.on("transition", lambda case, detail: calls.append((case.state, detail["trigger"])))
    case = start_ticket(engine, at(2025, 9, 26, 10))
    before = snapshot(engine)
    with pytest.raises(ActionError):
        engine.fire(case.id, "park", actor="worker", data={"note": "boom"})
    assert snapshot(engine) == before
    assert calls == [("working", "start")]
    parked = engine.fire(case.id, "park", actor="worker")
    assert parked.data["note"] == "audited" and calls[-1] == ("waiting", "park")
    engine.close()


def test_unknown_action_is_a_load_error(db_url, tmp_path):
    workflows = ticket_dir(tmp_path)
    text = (workflows / "ticket.yaml").read_text(encoding="utf-8")
    (workflows / "ticket.yaml").write_text(text.replace("    dest: waiting\n", "    dest: waiting\n    actions: [nope]\n"),
                                           encoding="utf-8")
    engine = make_engine(db_url, workflows)
    with pytest.raises(WorkflowError, match="unknown action 'nope'"):
        engine.open("ticket", {"community": "east", "summary": "x"}, actor="clerk")
    engine.close()


def test_schema_guard_refuses_missing_empty_and_newer_databases(db_url, tmp_path):
    if db_url.startswith("sqlite"):
        missing = tmp_path / "nope" / "x.db"
        with pytest.raises(SchemaError, match=str(missing)):
            Engine(f"sqlite:///{missing}")
        assert not missing.exists()
        sa.create_engine(db_url).connect().close()  # an empty database file
    with pytest.raises(SchemaError, match="empty"):
        Engine(db_url)
    make_engine(db_url, ticket_dir(tmp_path)).close()
    Engine(db_url, ticket_dir(tmp_path)).close()
    raw = sa.create_engine(db_url.replace("postgresql+psycopg", "postgresql+psycopg"))
    with raw.begin() as conn:
        conn.execute(sa.text("UPDATE alembic_version SET version_num = '9999'"))
    raw.dispose()
    with pytest.raises(SchemaError, match="newer"):
        Engine(db_url)


def test_editing_a_workflow_creates_a_revision_and_running_cases_stay(db_url, tmp_path):
    workflows = ticket_dir(tmp_path)
    engine = make_engine(db_url, workflows)
    old = start_ticket(engine, at(2025, 9, 26, 10))
    engine.close()
    path = workflows / "ticket.yaml"
    path.write_text(path.read_text(encoding="utf-8").replace("amount <= 1000", "amount <= 2000")
                    .replace("amount > 1000", "amount > 2000"), encoding="utf-8")
    engine = make_engine(db_url, workflows)
    warnings = engine.load()
    assert engine.load() == []  # same content again: no new revision, no warning
    assert any("version label" in w for w in warnings)
    new = start_ticket(engine, at(2025, 9, 27, 10))
    assert (old.revision, new.revision) == (1, 2)
    with pytest.raises(RoleNotAllowed):  # r1 rule: 1500 > 1000 needs the boss
        engine.fire(old.id, "finish", actor="worker", data={"amount": "1500"})
    assert engine.fire(new.id, "finish", actor="worker", data={"amount": "1500"}).state == "done"
    assert engine.get(old.id).workflow_revision == "ticket@r1"
    engine.close()
