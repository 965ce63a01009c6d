"""Disk full and read-only database: a clear error naming the database, and no partial step.

Tests run as root, where ``chmod`` does not stop writes, so the faults are made by SQLite
itself: ``PRAGMA max_page_count`` set to the current size on every connection makes any write
that needs a new page fail with SQLITE_FULL (the same error as a full disk), and a
``file:...?mode=ro&uri=true`` URL opens the file read-only. A statement counter shows that the
refused steps had already written rows before the failure, so "nothing changed" proves the
rollback, not luck.
"""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from estateflow import EstateflowError, StorageError
from tests.engine_helpers import at, make_engine, open_ticket, snapshot, start_ticket, ticket_dir
from tests.reliability._oracle import timer_effect_problems

ROOT = Path(__file__).resolve().parents[2]
FAR = at(2025, 11, 30, 12)


def limit_to_current_size(engine, extra: int = 0) -> list[str]:
    """Every new connection may grow the file by ``extra`` pages at most; returns the list of
    writes that succeeded (cleared by the caller before each call)."""
    writes: list[str] = []

    @sa.event.listens_for(engine.db, "connect")
    def _full(dbapi_conn, _record) -> None:
        cursor = dbapi_conn.cursor()
        pages = cursor.execute("PRAGMA page_count").fetchone()[0]
        cursor.execute(f"PRAGMA max_page_count = {pages + extra}")
        cursor.close()

    @sa.event.listens_for(engine.db, "after_cursor_execute")
    def _count(conn, cursor, statement, *args) -> None:
        if statement.lstrip()[:6].upper() in ("INSERT", "UPDATE", "DELETE"):
            writes.append(" ".join(statement.split()[:3]))

    engine.db.dispose()
    return writes


def fill_disk(url: str) -> None:
    """Use up what is left: some more pages of other data, then no page to spare."""
    import sqlite3

    conn = sqlite3.connect(url.removeprefix("sqlite:///"), isolation_level=None)
    try:
        pages = conn.execute("PRAGMA page_count").fetchone()[0]
        conn.execute(f"PRAGMA max_page_count = {pages + 8}")
        conn.execute("CREATE TABLE IF NOT EXISTS other_data (b BLOB)")
        for size in (4096, 1024, 256, 64, 16, 1):
            try:
                while True:
                    conn.execute("INSERT INTO other_data VALUES (randomblob(?))", (size,))
            except sqlite3.OperationalError as exc:
                assert "full" in str(exc)
    finally:
        conn.close()


def integrity(url: str) -> str:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return conn.exec_driver_sql("PRAGMA integrity_check").scalar()
    finally:
        engine.dispose()


def noisy_ticket(tmp_path: Path) -> Path:
    """The ticket workflow plus an 18 KB notice on every transition: the last write of a step
    needs several new pages, after the case row and its history found room."""
    workflows = ticket_dir(tmp_path)
    text = (workflows / "ticket.yaml").read_text(encoding="utf-8")
    text += ("notify:\n  - {event: transition, to: [\"address:ops\"], template: long}\n"
             f"templates:\n  long: {{zh: \"{{{{ case.number }}}}\\n{'漏' * 6000}\", en: \"x\"}}\n")
    (workflows / "ticket.yaml").write_text(text, encoding="utf-8")
    return workflows


def test_full_disk_refuses_the_whole_step_with_a_clear_error(sqlite_url, tmp_path):
    workflows = noisy_ticket(tmp_path)
    engine = make_engine(sqlite_url, workflows)
    fresh = [open_ticket(engine, at(2025, 10, 9, 11, i)) for i in range(3)]
    fill_disk(sqlite_url)
    writes = limit_to_current_size(engine, extra=3)
    path = sqlite_url.removeprefix("sqlite:///")
    calls = {
        # starting a case writes the case row, its history, its clock and timers, then the notice
        "start": lambda: engine.fire(fresh[0].id, "start", actor="clerk", now=at(2025, 10, 9, 12),
                                     data={"assignee": "worker", "department": "eng"}),
        "open": lambda: open_ticket(engine, at(2025, 10, 9, 12), summary="漏水" * 2000),
        "note": lambda: engine.note(fresh[1].id, "很长的进展说明" * 3000, actor="clerk", now=at(2025, 10, 9, 12)),
    }
    for name, call in calls.items():
        before = snapshot(engine)
        writes.clear()
        with pytest.raises(StorageError) as caught:
            call()
        assert isinstance(caught.value, EstateflowError) and isinstance(caught.value, OSError)
        assert path in str(caught.value) and "full" in str(caught.value), str(caught.value)
        assert "\n" not in str(caught.value)
        assert snapshot(engine) == before, f"{name}: a refused step left rows behind"
        if name == "start":  # rows were written before the failure: the rollback is what undid them
            # (the case row, then its clock and timers; history and clock events go in one last
            # statement since they were batched, so which write hits the full disk may vary)
            assert "UPDATE cases SET" in writes and len(set(writes)) >= 2, writes
    engine.close()

    # room again (the other data is removed): the same step goes through, the file is sound
    engine = make_engine(sqlite_url, workflows)
    with engine.db.begin() as conn:
        conn.exec_driver_sql("DROP TABLE other_data")
    case = engine.fire(fresh[0].id, "start", actor="clerk", now=at(2025, 10, 9, 13),
                       data={"assignee": "worker", "department": "eng"})
    assert case.state == "working"
    engine.close()
    assert integrity(sqlite_url) == "ok"


def test_full_disk_during_a_tick_fires_nothing_by_half(sqlite_url, tmp_path):
    workflows = ticket_dir(tmp_path)
    engine = make_engine(sqlite_url, workflows)
    started = [start_ticket(engine, at(2025, 10, 9, 10, i)) for i in range(20)]
    fill_disk(sqlite_url)
    limit_to_current_size(engine)
    before = snapshot(engine)
    path = sqlite_url.removeprefix("sqlite:///")
    try:
        result = engine.tick(now=FAR)
    except StorageError as exc:
        assert path in str(exc) and "full" in str(exc)
    else:
        assert result.failed or not result.fired, result
    after = snapshot(engine)
    assert {t: after[t] for t in after if t != "timers"} == {t: before[t] for t in before if t != "timers"}
    assert timer_effect_problems(sqlite_url) == []
    engine.close()

    engine = make_engine(sqlite_url, workflows)
    with engine.db.begin() as conn:
        conn.exec_driver_sql("DROP TABLE other_data")
    # leases of the failed tick expire after 2 minutes; then every timer fires once
    assert engine.tick(now=FAR + timedelta(minutes=3)).count == 4 * len(started)
    assert timer_effect_problems(sqlite_url) == []
    engine.close()
    assert integrity(sqlite_url) == "ok"


def read_only(url: str) -> str:
    return f"sqlite:///file:{url.removeprefix('sqlite:///')}?mode=ro&uri=true"


def test_read_only_database_reads_but_refuses_writes(sqlite_url, tmp_path):
    workflows = ticket_dir(tmp_path)
    writer = make_engine(sqlite_url, workflows)
    case = start_ticket(writer, at(2025, 10, 9, 10))
    before = snapshot(writer)
    path = sqlite_url.removeprefix("sqlite:///")

    engine = make_engine(read_only(sqlite_url), workflows)  # create=True: schema is current, no write
    assert engine.get(case.id).state == "working"
    assert [e.kind for e in engine.history(case.id)][:2] == ["opened", "transition"]
    assert engine.find(workflow="ticket")
    refused = {
        "fire": lambda: engine.fire(case.id, "park", actor="worker", now=at(2025, 10, 9, 11)),
        "open": lambda: open_ticket(engine, at(2025, 10, 9, 11)),
        "note": lambda: engine.note(case.id, "x", actor="clerk", now=at(2025, 10, 9, 11)),
        "tick": lambda: engine.tick(now=FAR),
    }
    for name, call in refused.items():
        with pytest.raises(StorageError) as caught:
            call()
        message = str(caught.value)
        assert path in message and "readonly" in message and "\n" not in message, (name, message)
    engine.close()
    assert snapshot(writer) == before
    writer.close()


def test_read_only_database_on_the_command_line(sqlite_url, tmp_path):
    workflows = ticket_dir(tmp_path)
    writer = make_engine(sqlite_url, workflows)
    case = start_ticket(writer, at(2025, 10, 9, 10))
    before = snapshot(writer)
    actors = tmp_path / "actors.yaml"
    actors.write_text("actors:\n  worker: {roles: [worker], communities: [east], departments: [eng]}\n",
                      encoding="utf-8")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    base = [sys.executable, "-m", "estateflow", "--db", read_only(sqlite_url), "--workflows", str(workflows),
            "--actors", str(actors)]

    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([*base, *args], capture_output=True, text=True, timeout=120, env=env, cwd=tmp_path)

    shown = cli("show", case.number)
    assert shown.returncode == 0, shown.stderr
    for args in (("fire", case.number, "park", "--as", "worker"), ("tick", "--now", FAR.isoformat())):
        done = cli(*args)
        assert done.returncode == 1, (args, done.stdout, done.stderr)
        assert "Traceback" not in done.stdout + done.stderr
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: SQLite database file:"), done.stderr
        assert "readonly" in lines[0]
    assert snapshot(writer) == before
    writer.close()
