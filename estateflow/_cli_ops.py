"""CLI commands for operators: tick, run, status, clocks, extend and the calendar."""

from __future__ import annotations

import logging
from datetime import date, datetime, timedelta, timezone
from typing import Any

import click

from estateflow.cli import State, _now, console, emit_json, fail, handle_errors, main

pass_state = click.make_pass_decorator(State)


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not verbose:
        logging.getLogger("apscheduler").setLevel(logging.WARNING)


@main.command()
@click.option("--now", default=None, help="Virtual time (ISO 8601 with offset); default: the real time.")
@click.option("--limit", type=int, default=None, help="Fire at most this many timers.")
@pass_state
@handle_errors
def tick(state: State, now: str | None, limit: int | None) -> None:
    """Fire every due timer once and deliver the outbox, then exit (for system cron)."""
    with state.engine() as engine:
        result = engine.tick(now=_now(now), limit=limit)
    if state.json:
        emit_json({"fired": [{"timer": t, "kind": k, "case": n} for t, k, n in result.fired],
                   "failed": [{"timer": t, "error": e} for t, e in result.failed],
                   "parked": result.parked, "delivered": result.delivered})
        return
    for timer_id, kind, number in result.fired:
        console().print(f"fired {kind} timer {timer_id} for {number}")
    for timer_id, error in result.failed:
        console(stderr=True).print(f"[red]timer {timer_id} failed:[/] {error}")
    console().print(f"{result.count} timers fired, {len(result.failed)} failed, {result.delivered} messages sent")


@main.command()
@click.option("--interval", type=float, default=1.0, show_default=True, help="Longest wait between ticks (the daemon also wakes at each timer's due time).")
@click.option("--config", "config_path", envvar="ESTATEFLOW_CONFIG", default=None,
              help="estateflow.yaml with notification channels (env ESTATEFLOW_CONFIG).")
@click.option("--clock-file", default=None, hidden=True, help="Test only: read the current time from this file.")
@click.option("--max-ticks", type=int, default=None, hidden=True)
@click.option("-v", "--verbose", is_flag=True)
@pass_state
@handle_errors
def run(state: State, interval: float, config_path: str | None, clock_file: str | None, max_ticks: int | None,
        verbose: bool) -> None:
    """Run the daemon: tick, deliver notifications and reload edited workflows until SIGTERM."""
    from estateflow import Engine
    from estateflow._daemon import Daemon, file_clock
    from estateflow.engine._directory import YamlDirectory

    _setup_logging(verbose)
    if interval <= 0:
        raise click.BadParameter("must be positive", param_hint="--interval")
    directory = YamlDirectory(state.actors) if state.actors else None
    engine = Engine(state.db, state.workflows, directory=directory, config=config_path or state.config)
    engine.notifiers()  # a bad configuration fails now, not at 3 a.m.
    engine.load()
    try:
        Daemon(engine, interval=interval, clock=file_clock(clock_file) if clock_file else None,
               max_ticks=max_ticks).run()
    finally:
        engine.close()


@main.command()
@click.option("--max-age", type=int, default=10, show_default=True,
              help="Minutes without a tick before the daemon counts as dead.")
@click.option("--calendar-warn-days", type=int, default=60, show_default=True)
@click.option("--now", default=None)
@pass_state
@handle_errors
def status(state: State, max_age: int, calendar_warn_days: int, now: str | None) -> None:
    """Health for operators and monitors; exits 1 when something needs a person."""
    import sqlalchemy as sa

    from estateflow.engine._schema import heartbeats, outbox, timers

    moment = _now(now) or datetime.now(timezone.utc)
    problems: list[str] = []
    with state.engine() as engine:
        with engine.db.connect() as conn:
            beats = conn.execute(sa.select(heartbeats).order_by(heartbeats.c.last_tick_at.desc())).all()
            overdue = conn.execute(sa.select(sa.func.count()).where(
                timers.c.status == "pending", timers.c.due_at < moment - timedelta(minutes=max_age))).scalar()
            parked = conn.execute(sa.select(sa.func.count()).where(timers.c.status == "parked")).scalar()
            parked_rows = conn.execute(sa.select(timers.c.id, timers.c.kind, timers.c.case_id, timers.c.last_error)
                                       .where(timers.c.status == "parked").order_by(timers.c.id).limit(20)).all()
            dead = conn.execute(sa.select(sa.func.count()).where(outbox.c.status == "dead")).scalar()
            pending = conn.execute(sa.select(sa.func.count()).where(outbox.c.status == "pending")).scalar()
            uncertain = conn.execute(sa.select(sa.func.coalesce(sa.func.sum(outbox.c.uncertain_sends), 0))).scalar()
            reach = {name: engine.calendar_set.reach(conn, name) for name in engine.calendar_set.names}
    last = beats[0].last_tick_at if beats else None
    if last is None or moment - last > timedelta(minutes=max_age):
        problems.append(f"no tick for more than {max_age} minutes" if last else "no tick ever recorded")
    if overdue:
        problems.append(f"{overdue} timers overdue by more than {max_age} minutes")
    if parked:
        problems.append(f"{parked} parked timers need a look (estateflow tick shows why)")
    if dead:
        problems.append(f"{dead} dead letters in the outbox")
    for name, last_day in reach.items():
        if last_day is not None and last_day < moment.date() + timedelta(days=calendar_warn_days):
            problems.append(f"calendar {name!r} has data only until {last_day}: load next year's notice")
    report = {"last_tick": last.isoformat() if last else None,
              "workers": [{"worker": b.worker, "last_tick": b.last_tick_at.isoformat()} for b in beats[:10]],
              "overdue_timers": overdue, "parked_timers": parked, "dead_letters": dead,
              "parked": [{"timer": r.id, "kind": r.kind, "case_id": r.case_id, "error": r.last_error}
                         for r in parked_rows],
              "pending_messages": pending, "possible_repeats": int(uncertain),
              "calendars": {k: (v.isoformat() if v else None) for k, v in reach.items()}, "problems": problems}
    if state.json:
        emit_json(report)
    else:
        out = console()
        out.print(f"last tick: {report['last_tick'] or 'never'}")
        out.print(f"overdue timers: {overdue}, parked: {parked}, dead letters: {dead}, pending messages: {pending}")
        if uncertain:
            out.print(f"possible repeats: {uncertain} sends were interrupted by a crash and retried; webhook "
                      "receivers de-duplicate them by Idempotency-Key, e-mail recipients may see them twice")
        for r in parked_rows:
            out.print(f"parked timer {r.id} ({r.kind}, case {r.case_id}): {r.last_error}")
        for name, value in report["calendars"].items():
            out.print(f"calendar {name}: data until {value or 'unbounded'}")
        for problem in problems:
            console(stderr=True).print(f"[red]problem:[/] {problem}")
    if problems:
        raise SystemExit(1)


@main.command()
@click.argument("case")
@click.option("--now", default=None)
@pass_state
@handle_errors
def clocks(state: State, case: str, now: str | None) -> None:
    """The SLA clocks of a case: state, due time, elapsed, remaining, breached."""
    from rich.table import Table

    with state.engine() as engine:
        found = engine.get(case)
        zone = engine.calendar_zone(engine.workflows().get(None, found.workflow, found.revision).spec)
        statuses = engine.clocks(case, now=_now(now))
    if state.json:
        emit_json([{"name": c.name, "cycle": c.cycle, "status": c.status, "target": c.target,
                    "due_at": c.due_at.isoformat() if c.due_at else None, "breached": c.breached,
                    "escalation_level": c.escalation_level, "elapsed_seconds": c.elapsed.total_seconds(),
                    "remaining_seconds": c.remaining.total_seconds() if c.remaining is not None else None}
                   for c in statuses])
        return
    from zoneinfo import ZoneInfo

    table = Table(title=f"Clocks of {found.number}")
    for column in ("Clock", "Cycle", "Status", "Target", f"Due ({zone})", "Breached", "Level"):
        table.add_column(column)
    for c in statuses:
        due = c.due_at.astimezone(ZoneInfo(zone)).strftime("%Y-%m-%d %H:%M") if c.due_at else "—"
        table.add_row(c.name, str(c.cycle), c.status, c.target, due, "yes" if c.breached else "", str(c.escalation_level))
    console().print(table)


@main.command()
@click.argument("case")
@click.argument("clock")
@click.option("--add", "add", default=None, help='Extra time, e.g. "2 working days".')
@click.option("--until", "until", default=None, help="New due time (ISO 8601 with offset).")
@click.option("--approved-by", required=True, help="Who consented (the customer, for repairs).")
@click.option("--as", "actor", required=True)
@pass_state
@handle_errors
def extend(state: State, case: str, clock: str, add: str | None, until: str | None, approved_by: str,
           actor: str) -> None:
    """Extend a running deadline with recorded consent."""
    with state.engine() as engine:
        result = engine.extend(case, clock, actor=actor, approved_by=approved_by, add=add, new_due_at=_now(until))
    console().print(f"{clock} now due {result.due_at.isoformat() if result.due_at else '—'}")


@main.group()
def calendar() -> None:
    """Working-day calendar: deadlines, holidays, overrides, the yearly notice."""


def _base_calendar(name: str) -> Any:
    from estateflow.engine._calendar import BusinessCalendar

    return BusinessCalendar(name) if name == "cn" else BusinessCalendar(name, country=name.upper())


def _calendar(state: State, name: str) -> Any:
    """The calendar with the database overrides when a database exists, else the shipped data."""
    from estateflow import SchemaError

    try:
        with state.engine() as engine, engine.db.connect() as conn:
            return engine.calendar_set.get(conn, name)
    except (SchemaError, LookupError):
        return _base_calendar(name)


@calendar.command("add")
@click.argument("start")
@click.argument("duration")
@click.option("--calendar", "name", default="cn", show_default=True)
@pass_state
@handle_errors
def calendar_add(state: State, start: str, duration: str, name: str) -> None:
    """Print START + DURATION (START is local time in the calendar's zone)."""
    cal = _calendar(state, name)
    moment = datetime.fromisoformat(start)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=cal.zone)
    result = cal.add(moment, duration)
    emit_json({"start": moment.isoformat(), "duration": duration, "due": result.isoformat()}) if state.json \
        else click.echo(result.isoformat())


@calendar.command("show")
@click.argument("year", type=int)
@click.option("--calendar", "name", default="cn", show_default=True)
@pass_state
@handle_errors
def calendar_show(state: State, year: int, name: str) -> None:
    """List the year's days off on weekdays and working days on weekends (调休)."""
    cal = _calendar(state, name)
    off, on = [], []
    day = date(year, 1, 1)
    while day.year == year:
        working = cal.is_working_day(day)
        if day.weekday() < 5 and not working:
            off.append(day.isoformat())
        elif day.weekday() >= 5 and working:
            on.append(day.isoformat())
        day += timedelta(days=1)
    if state.json:
        emit_json({"year": year, "holidays": off, "workdays": on})
        return
    console().print(f"[bold]{year}[/] weekday holidays: {', '.join(off) or '—'}")
    console().print(f"[bold]{year}[/] make-up working days: {', '.join(on) or '—'}")


@calendar.command("check")
@click.option("--calendar", "name", default="cn", show_default=True)
@click.option("--warn-days", type=int, default=60, show_default=True)
@pass_state
@handle_errors
def calendar_check(state: State, name: str, warn_days: int) -> None:
    """How far the calendar data reaches; exits 1 when it ends within --warn-days."""
    cal = _calendar(state, name)
    first, last = cal.data_range()
    today = datetime.now(cal.zone).date()
    if state.json:
        emit_json({"calendar": name, "from": first.isoformat() if first else None,
                   "until": last.isoformat() if last else None})
    else:
        console().print(f"calendar {name}: data from {first or 'unbounded'} until {last or 'unbounded'}")
    if last is not None and last < today + timedelta(days=warn_days):
        fail(f"calendar {name!r} data ends {last}: load next year's State Council notice "
             f"with 'estateflow calendar import NOTICE.txt'")


@calendar.command("import")
@click.argument("notice", type=click.Path(exists=True, dir_okay=False))
@click.option("--calendar", "name", default="cn", show_default=True)
@click.option("--dry-run", is_flag=True, help="Show what would be stored; store nothing.")
@pass_state
@handle_errors
def calendar_import(state: State, notice: str, name: str, dry_run: bool) -> None:
    """Read the State Council's holiday notice and store its days as overrides."""
    from pathlib import Path

    from estateflow.engine._notice import parse_notice

    parsed = parse_notice(Path(notice).read_text(encoding="utf-8-sig"))
    if state.json:
        emit_json(parsed.as_json())
    else:
        out = console()
        out.print(f"[bold]{parsed.year}[/] holidays ({len(parsed.holidays)} days):")
        for festival, first, last in parsed.festivals:
            out.print(f"  {festival}: {first} – {last}")
        out.print(f"make-up working days: {', '.join(d.isoformat() for d in parsed.workdays) or '—'}")
    if dry_run:
        return
    with state.engine() as engine:
        changed = engine.set_calendar_days(name, parsed.overrides(), covered_years=[parsed.year],
                                           source=f"notice {parsed.year}", note=Path(notice).name)
    if not state.json:
        console().print(f"stored {len(parsed.overrides())} days for {parsed.year} in calendar {name}; "
                        f"{changed} running deadlines recomputed")


@calendar.command("load")
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.option("--calendar", "name", default="cn", show_default=True)
@pass_state
@handle_errors
def calendar_load(state: State, file: str, name: str) -> None:
    """Store an admin's YAML of days: {days: {2027-01-01: off, 2027-02-06: working}, complete_years: [2027]}."""
    from pathlib import Path

    from estateflow.engine._errors import ConfigError
    from estateflow.engine._yaml import load_yaml

    loaded = load_yaml(Path(file).read_text(encoding="utf-8"), file)
    problems = list(loaded.problems)
    days: dict[date, bool] = {}
    data = loaded.data if isinstance(loaded.data, dict) else {}
    if not problems and not isinstance(data.get("days"), dict):
        problems.append(loaded.problem((), "expected a mapping 'days:' of ISO dates to 'working' or 'off'"))
    for key, value in (data.get("days") or {}).items():
        try:
            day = date.fromisoformat(str(key))
        except ValueError:
            problems.append(loaded.problem(("days", key), f"{key!r} is not a date like 2027-01-01", key=True))
            continue
        if value not in ("working", "off"):
            problems.append(loaded.problem(("days", key), f"{value!r} must be 'working' or 'off'"))
            continue
        days[day] = value == "working"
    years = data.get("complete_years") or []
    if problems:
        raise ConfigError(problems)
    with state.engine() as engine:
        changed = engine.set_calendar_days(name, days, covered_years=[int(y) for y in years], source="yaml",
                                           note=Path(file).name)
    console().print(f"stored {len(days)} days in calendar {name}; {changed} running deadlines recomputed")


@main.group()
def outbox() -> None:
    """Operator commands for outgoing messages: list, show, retry, purge."""


def _outbox_rows(state: State, status: str | None, limit: int) -> list[Any]:
    import sqlalchemy as sa

    from estateflow.engine._schema import outbox as table

    with state.engine() as engine, engine.db.connect() as conn:
        query = sa.select(table).order_by(table.c.id.desc()).limit(limit)
        if status:
            query = query.where(table.c.status == status)
        return conn.execute(query).all()


@outbox.command("list")
@click.option("--status", type=click.Choice(["pending", "sent", "dead", "digested"]), default=None)
@click.option("--limit", default=50, show_default=True)
@pass_state
@handle_errors
def outbox_list(state: State, status: str | None, limit: int) -> None:
    """Recent messages, newest first; recipients and subjects are masked."""
    from rich.table import Table

    from estateflow.notifiers import mask_personal

    rows = _outbox_rows(state, status, limit)
    items = [{"id": r.id, "status": r.status, "channel": r.channel, "recipient": mask_personal(r.recipient),
              "subject": mask_personal(r.subject), "attempts": r.attempts, "event": r.event,
              "next_attempt_at": r.next_attempt_at.isoformat(), "last_error": r.last_error,
              "possible_repeats": r.uncertain_sends} for r in rows]
    if state.json:
        emit_json(items)
        return
    table = Table(title="Outbox")
    for column in ("Id", "Status", "Channel", "To", "Subject", "Tries", "Last error"):
        table.add_column(column)
    for i in items:
        table.add_row(str(i["id"]), i["status"], i["channel"], i["recipient"], i["subject"], str(i["attempts"]),
                      (i["last_error"] or "")[:60])
    console().print(table)


@outbox.command("show")
@click.argument("message_id", type=int)
@pass_state
@handle_errors
def outbox_show(state: State, message_id: int) -> None:
    """One message in full (personal data masked)."""
    import sqlalchemy as sa

    from estateflow.engine._schema import outbox as table
    from estateflow.notifiers import mask_personal

    with state.engine() as engine, engine.db.connect() as conn:
        row = conn.execute(sa.select(table).where(table.c.id == message_id)).first()
    if row is None:
        fail(f"no outbox message {message_id}")
    data = {k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in row._mapping.items()}
    for key in ("recipient", "subject", "body"):
        data[key] = mask_personal(str(data[key] or ""))
    emit_json(data)


@outbox.command("retry")
@click.argument("message_ids", type=int, nargs=-1)
@click.option("--all-dead", is_flag=True, help="Retry every dead letter.")
@pass_state
@handle_errors
def outbox_retry(state: State, message_ids: tuple[int, ...], all_dead: bool) -> None:
    """Put dead letters back in the queue (attempts start again)."""

    from estateflow.engine._schema import outbox as table

    if not message_ids and not all_dead:
        raise click.UsageError("give message ids or --all-dead")
    with state.engine() as engine, engine.db.begin() as conn:
        query = table.update().where(table.c.status == "dead")
        if message_ids:
            query = query.where(table.c.id.in_(message_ids))
        count = conn.execute(query.values(status="pending", attempts=0, next_attempt_at=datetime.now(timezone.utc),
                                          claimed_by=None, lease_until=None)).rowcount
    console().print(f"{count} messages queued again")


@outbox.command("purge")
@click.option("--sent-before", required=True, help="Delete sent messages older than this (ISO date).")
@pass_state
@handle_errors
def outbox_purge(state: State, sent_before: str) -> None:
    """Delete delivered messages older than a date (dead letters are kept)."""

    from estateflow.engine._schema import outbox as table

    cutoff = datetime.fromisoformat(sent_before)
    if cutoff.tzinfo is None:
        cutoff = cutoff.replace(tzinfo=timezone.utc)
    with state.engine() as engine, engine.db.begin() as conn:
        count = conn.execute(table.delete().where(table.c.status.in_(("sent", "digested")),
                                                  table.c.sent_at < cutoff)).rowcount
    console().print(f"{count} sent messages purged")
