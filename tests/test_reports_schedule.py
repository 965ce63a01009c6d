"""The weekly report on a schedule: estateflow.yaml's ``reports:`` section and the report timer."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from estateflow import ConfigError, Engine, StaticDirectory
from estateflow.engine._schema import outbox, timers
from estateflow.notifiers import parse_config

from .helpers import ACTORS, local

CONFIG = """\
channels:
  ops: {kind: log}
reports:
  weekly:
    at: "MON 09:00"
    to: [role:cs_manager, address:cs-weekly@example.com]
    channel: ops
    community: lakeside
"""


def engine_with(db_url, text=CONFIG):
    return Engine(db_url, create=True, directory=StaticDirectory(ACTORS),
                  config=parse_config(text, "estateflow.yaml") if text is not None else None)


def report_timers(engine):
    with engine.db.connect() as conn:
        return conn.execute(sa.select(timers.c.id, timers.c.status, timers.c.due_at, timers.c.payload)
                            .where(timers.c.kind == "report").order_by(timers.c.id)).all()


def mails(engine):
    with engine.db.connect() as conn:
        return conn.execute(sa.select(outbox).where(outbox.c.event == "report").order_by(outbox.c.id)).all()


def open_complaint(engine, when, name="张三"):
    return engine.open("complaint", {"channel": "hotline", "community": "lakeside", "customer_name": name,
                                     "phone": "13800138000", "summary": "电梯噪音大"}, actor="wang", now=when)


def test_a_missed_monday_is_sent_once_for_the_latest_week_then_the_schedule_goes_on(db_url):
    engine = engine_with(db_url)
    open_complaint(engine, local(2025, 9, 16, 10))  # in 2025-W38
    engine.tick(now=local(2025, 9, 10, 10))  # first start, a Wednesday: the first report is due Mon 09-15
    [pending] = report_timers(engine)
    assert (pending.status, pending.due_at) == ("pending", local(2025, 9, 15, 9, 0))
    # Down from then until Wednesday 09-24: Mondays 09-15 and 09-22 were missed.
    result = engine.tick(now=local(2025, 9, 24, 11, 0), deliver=False)
    assert [kind for _, kind in result.system].count("report") == 1
    sent = mails(engine)
    assert [(m.recipient, m.channel) for m in sent] == [("sun", "ops"), ("cs-weekly@example.com", "ops")]
    assert {m.payload["period"] for m in sent} == {"2025-W38"}  # the latest full week, once
    mail = sent[0]
    assert mail.subject == "【客服周报】lakeside 2025-W38（2025-09-15 至 2025-09-21）"
    assert "本周受理 1 件" in mail.body and "未办结事项" in mail.body
    assert "<svg" in mail.html and "<table>" in mail.html
    assert "张三" not in mail.body + mail.html and "张*" not in mail.body  # masked (name not in the weekly)
    fired, following = report_timers(engine)
    assert fired.status == "fired"
    assert (following.status, following.due_at) == ("pending", local(2025, 9, 29, 9, 0))
    engine.tick(now=local(2025, 9, 24, 12, 0), deliver=False)
    assert len(mails(engine)) == 2  # nothing more until the next Monday
    engine.tick(now=local(2025, 9, 29, 9, 0), deliver=False)
    assert [m.payload["period"] for m in mails(engine)] == ["2025-W38"] * 2 + ["2025-W39"] * 2
    assert report_timers(engine)[-1].due_at == local(2025, 10, 6, 9, 0)
    engine.close()


def test_schedules_follow_the_configuration_and_a_cron_tick_without_it_leaves_them(db_url):
    engine = engine_with(db_url)
    engine.tick(now=local(2025, 9, 10, 10))
    engine.close()
    english = CONFIG.replace('at: "MON 09:00"', 'at: "FRI 17:30"') + "    language: en\n"
    engine = engine_with(db_url, english)
    engine.tick(now=local(2025, 9, 11, 10), deliver=False)
    [pending] = report_timers(engine)  # the same row, moved to the new time
    assert pending.due_at == local(2025, 9, 12, 17, 30) and pending.payload["language"] == "en"
    engine.tick(now=local(2025, 9, 12, 17, 30), deliver=False)
    assert mails(engine)[0].subject == "[Weekly report] lakeside 2025-W36 (2025-09-01 to 2025-09-07)"
    engine.close()
    cron = engine_with(db_url, None)  # `estateflow tick` from cron, no --config
    cron.tick(now=local(2025, 9, 13, 10), deliver=False)
    assert [t.status for t in report_timers(cron)] == ["fired", "pending"]
    cron.close()
    gone = engine_with(db_url, "channels: {}\n")  # the schedule was removed from the file
    gone.tick(now=local(2025, 9, 13, 11), deliver=False)
    assert [t.status for t in report_timers(gone)] == ["fired", "cancelled"]
    gone.close()


@pytest.mark.parametrize(("section", "where", "message"), [
    ('  weekly: {at: "MONDAY 9:00", to: [x]}\n', (4, 16), "weekday and a local time"),
    ('  weekly: {at: "MON 09:00", to: [x], chanel: ops}\n', (4, 38), "did you mean 'channel'"),
    ('  weekly: {at: "MON 09:00", to: [x], channel: email}\n', (4, 47), "not defined in 'channels'"),
    ('  weekly: {at: "MON 09:00"}\n', (4, 3), "needs recipients"),
    ('  monthly: {at: "MON 09:00", to: [x]}\n', (4, 3), "only 'weekly' can be scheduled"),
    ('  weekly:\n    - {to: [x]}\n    - {to: [y]}\n', (6, 7), "same scope"),
])
def test_report_schedule_mistakes_name_file_line_and_column(section, where, message):
    text = "channels:\n  ops: {kind: log}\nreports:\n" + section
    with pytest.raises(ConfigError) as caught:
        parse_config(text, "estateflow.yaml")
    [problem] = caught.value.problems
    assert (problem.file, problem.line, problem.column) == ("estateflow.yaml", *where)
    assert message in str(problem)


def test_the_daemon_mails_the_weekly_report_from_its_config_file(tmp_path):
    """`estateflow run --config` end to end: a first run on Wednesday schedules Monday 09:00; a
    run that starts on Monday 09:05 sends the report through the configured channel."""
    import subprocess
    import sys

    url = f"sqlite:///{tmp_path / 'estateflow.db'}"
    engine_with(url, None).close()
    (tmp_path / "estateflow.yaml").write_text(CONFIG, encoding="utf-8")
    clock = tmp_path / "clock"

    def run(now):
        clock.write_text(now.isoformat(), encoding="utf-8")
        done = subprocess.run([sys.executable, "-m", "estateflow", "--db", url, "run", "--config",
                               str(tmp_path / "estateflow.yaml"), "--clock-file", str(clock), "--max-ticks", "1",
                               "--interval", "0.1"], capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        return done.stderr

    def sent():
        with engine_with(url, None) as engine:
            return mails(engine)

    run(local(2025, 9, 10, 10))
    assert sent() == []
    log = run(local(2025, 9, 15, 9, 5))
    assert [(m.recipient, m.status, m.payload["period"]) for m in sent()] == [
        ("role:cs_manager", "sent", "2025-W37"), ("cs-weekly@example.com", "sent", "2025-W37")]
    assert "weekly report weekly[community=lakeside] for 2025-W37 queued to 2 recipients" in log
