"""The public Engine: open cases, fire triggers, read the register.

Every writing method is one database transaction: the case row, its history row, its clock
and timer changes and its outbox messages commit together or not at all, and a refused call
raises a specific :class:`EstateflowError` having written nothing. Hooks registered with
:meth:`Engine.on` run only after the commit, so they never see data that could still roll back.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
from collections.abc import Callable, Iterable, Mapping
from datetime import date, datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from ._calendars import CalendarSet
from ._clocks import ClockRules
from ._db import check_schema, connect, describe_url, normalise_url, upgrade_schema
from ._directory import Directory
from ._errors import (ActionError, ActorNotFound, ConflictError, EstateflowError, RoleNotAllowed)
from ._fields import from_json
from ._notices import Notices
from ._outbox import DeliveryResult, OutboxDelivery
from ._registry import WorkflowRegistry, default_workflow_dir
from ._schema import delegations
from ._steps import Steps
from ._store import CaseStore, row_to_case
from ._timers import TickResult, TimerRunner
from ._types import SYSTEM, Actor, Attachment, Case, ClockStatus, Delegation, Event, Link

if TYPE_CHECKING:
    from ._import import ImportReport
    from ._purge import PurgeReport
    from ._diff import WorkflowDiff
    from ._migrate import MigrationPlan
    from ._versions import RevisionInfo

__all__ = ["Engine", "HOOK_EVENTS"]

log = logging.getLogger(__name__)
HOOK_EVENTS = ("opened", "transition", "warning", "breach", "escalation", "closed")
ActionFn = Callable[["ActionContext"], Mapping[str, Any] | None]


class ActionContext:
    """What a registered action sees: the case before the step, the proposed data, who, when."""

    def __init__(self, case: Case | None, data: dict[str, Any], trigger: str | None,
                 actor: Actor, now: datetime, workflow: str) -> None:
        self.case = case
        self.data = data
        self.trigger = trigger
        self.actor = actor
        self.now = now
        self.workflow = workflow


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class Engine:
    """The embedding API.

    ``Engine("sqlite:///estateflow.db")`` opens an existing database with the shipped
    workflows; ``create=True`` creates or migrates the schema first (only then). ``workflows``
    is a directory or file (or a list of them) of workflow YAML. Every method that records or
    reads time takes ``now=`` (aware datetime) so time rules can be tested on a virtual clock.
    """

    def __init__(self, url: str = "sqlite:///estateflow.db", workflows: str | Path | Iterable[str | Path] | None = None,
                 *, create: bool = False, directory: Directory | None = None,
                 actions: Mapping[str, ActionFn] | None = None, calendars: Any = None,
                 attachments_dir: str | Path | None = None, sqlite_synchronous: str = "NORMAL",
                 config: Any = None) -> None:
        self.url = normalise_url(url)
        self.db = connect(self.url, sqlite_synchronous=sqlite_synchronous)
        self._read_db = self.db.execution_options(estateflow_readonly=True)
        if create:
            upgrade_schema(self.db)
        else:
            check_schema(self.db)
        log.info("estateflow using %s", describe_url(self.url))
        self.store = CaseStore(self.db.dialect.name)
        self.directory = directory
        self.attachments_dir = Path(attachments_dir) if attachments_dir else None
        self._actions: dict[str, ActionFn] = dict(_entry_point_actions())
        self._actions.update(actions or {})
        self._hooks: dict[str, list[Callable[..., None]]] = {name: [] for name in HOOK_EVENTS}
        if workflows is None:
            locations = [default_workflow_dir()]
        elif isinstance(workflows, (str, Path)):
            locations = [workflows]
        else:
            locations = list(workflows)
        self._locations = [Path(p) for p in locations]
        self.registry: WorkflowRegistry | None = None
        self.config = config
        self.steps = Steps(self)
        if calendars is None and config is not None:
            configured = getattr(self._loaded_config(), "calendars", None)
            calendars = {**CalendarSet().base, **configured} if configured else None
        self.calendar_set = calendars if isinstance(calendars, CalendarSet) else CalendarSet(calendars)
        self.clock_rules = ClockRules(self)
        self.notices = Notices(self)
        self._policy: Any = None
        self.timer_handlers: dict[str, Callable[..., None]] = {}
        self.timer_runner = TimerRunner(self)
        self.outbox = OutboxDelivery(self, self.timer_runner.worker)
        self._notifiers: dict[str, Any] | None = None
        self.calendar_warn_days = 60
        self.timer_handlers["calendar_check"] = self._calendar_check
        from ..reports._service import Reports

        self.reports = Reports(self)

    # -- set-up ---------------------------------------------------------------------------
    def register_action(self, name: str, fn: ActionFn) -> None:
        """Make ``fn`` available to YAML ``actions:``/``on_enter:`` under ``name``."""
        if not callable(fn):
            raise TypeError(f"action {name!r} must be callable")
        self._actions[name] = fn
        if self.registry is not None:
            self.registry.actions = set(self._actions)

    def on(self, event: str, fn: Callable[..., None]) -> None:
        """Call ``fn(case, event)`` after a commit that opened, moved, warned, breached,
        escalated or closed a case."""
        if event not in self._hooks:
            raise ValueError(f"unknown hook event {event!r}; one of {', '.join(HOOK_EVENTS)}")
        self._hooks[event].append(fn)

    def load(self, now: datetime | None = None) -> list[str]:
        """Validate and record the workflow files (done lazily on first use); returns warnings."""
        registry = WorkflowRegistry(actions=set(self._actions))
        registry.load_paths(self._locations)
        with self.db.begin() as conn:
            warnings = registry.sync(conn, now or utcnow())
        self.registry = registry
        return warnings

    def reload(self, now: datetime | None = None) -> list[str]:
        """Re-read the workflow files; on error the previous revisions stay in use."""
        return self.load(now)

    def workflows(self) -> WorkflowRegistry:
        if self.registry is None:
            self.load()
        assert self.registry is not None
        return self.registry

    def close(self) -> None:
        self.db.dispose()

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def calendar_zone(self, spec: Any) -> str:
        """The time zone case numbers and local dates use (the workflow calendar's zone)."""
        return self.calendar_set.zone_of(spec.calendar)

    def _loaded_config(self) -> Any:
        if isinstance(self.config, (str, Path)):
            from ..notifiers import load_config

            self.config = load_config(self.config)
        return self.config

    def notifiers(self) -> dict[str, Any]:
        """Channels from the configuration (``log`` always exists), built once."""
        if self._notifiers is None:
            from ..notifiers import LogNotifier

            config = self._loaded_config()
            self._notifiers = config.build() if config is not None else {}
            self._notifiers.setdefault("log", LogNotifier("log"))
        return self._notifiers

    def delivery_policy(self) -> Any:
        """Quiet hours, digests, default channel and language from ``estateflow.yaml``."""
        if self._policy is None:
            from ..notifiers._policy import DeliveryPolicy

            config = self._loaded_config()
            self._policy = getattr(config, "policy", None) or DeliveryPolicy()
        return self._policy

    @property
    def default_channel(self) -> str:
        """Where clock notices go when a workflow names no channel (``defaults.channel``)."""
        return self.delivery_policy().defaults.channel

    def channel_wants_html(self, channel: str) -> bool:
        notifier = self.notifiers().get(channel)
        return bool(getattr(notifier, "wants_html", False))

    # -- actors ---------------------------------------------------------------------------
    def resolve_actor(self, actor: Actor | str) -> Actor:
        if isinstance(actor, Actor):
            return actor
        if actor == "system":
            return SYSTEM
        if self.directory is None:
            return Actor(str(actor))
        found = self.directory.get(str(actor))
        if found is None:
            raise ActorNotFound(str(actor))
        return found

    def delegate(self, deputy: str, principal: str, *, starts_at: datetime, ends_at: datetime,
                 actor: Actor | str, now: datetime | None = None) -> Delegation:
        """Let ``deputy`` act for ``principal`` (e.g. an absent manager) in [starts_at, ends_at)."""
        who = self.resolve_actor(actor)
        if ends_at <= starts_at:
            raise ValueError("a delegation must end after it starts")
        now = now or utcnow()
        with self.db.begin() as conn:
            new_id = conn.execute(delegations.insert().values(
                deputy=deputy, principal=principal, starts_at=starts_at, ends_at=ends_at,
                created_by=who.id, created_at=now).returning(delegations.c.id)).scalar_one()
        return Delegation(new_id, deputy, principal, starts_at, ends_at, who.id)

    def principals_for(self, conn: sa.Connection, deputy: str, now: datetime) -> list[Actor]:
        rows = conn.execute(sa.select(delegations.c.principal).where(
            delegations.c.deputy == deputy, delegations.c.starts_at <= now,
            delegations.c.ends_at > now, delegations.c.revoked.is_(False))).scalars().all()
        result = []
        for principal in rows:
            try:
                result.append(self.resolve_actor(principal))
            except ActorNotFound:
                log.warning("delegation to unknown principal %r ignored", principal)
        return result

    # -- writing API (delegated to Steps, one transaction each) ---------------------------
    def open(self, workflow: str, data: Mapping[str, Any] | None = None, *, actor: Actor | str,
             now: datetime | None = None, received_at: datetime | None = None,
             number: str | None = None) -> Case:
        """Register a new case on the newest revision of ``workflow``."""
        return self._run(lambda conn, now_: self.steps.open(
            conn, workflow, dict(data or {}), self.resolve_actor(actor), now_, received_at, number), now)

    def fire(self, case_id: int | str, trigger: str, *, actor: Actor | str,
             data: Mapping[str, Any] | None = None, now: datetime | None = None,
             expected_version: int | None = None) -> Case:
        """Move a case by ``trigger``; raises a TransitionError subclass and writes nothing if refused."""
        return self._run(lambda conn, now_: self.steps.fire(
            conn, case_id, trigger, self.resolve_actor(actor), dict(data or {}), now_,
            expected_version), now)

    def reassign(self, case_id: int | str, *, assignee: str | None = None, department: str | None = None,
                 actor: Actor | str, reason: str = "", now: datetime | None = None,
                 expected_version: int | None = None) -> Case:
        """转单: hand the case to another person and/or department (restarts that department's clocks)."""
        return self._run(lambda conn, now_: self.steps.reassign(
            conn, case_id, assignee, department, self.resolve_actor(actor), reason, now_,
            expected_version), now)

    def note(self, case_id: int | str, text: str, *, actor: Actor | str, now: datetime | None = None) -> Event:
        """A progress note: history without a state change."""
        return self._run(lambda conn, now_: self.steps.note(
            conn, case_id, text, self.resolve_actor(actor), now_), now)

    def void(self, case_id: int | str, reason: str, *, actor: Actor | str, now: datetime | None = None) -> Case:
        """Void a case (duplicate, mistaken entry): stops every clock, cancels its timers."""
        return self._run(lambda conn, now_: self.steps.void(
            conn, case_id, reason, self.resolve_actor(actor), now_), now)

    def force_state(self, case_id: int | str, state: str, *, actor: Actor | str, reason: str,
                    now: datetime | None = None) -> Case:
        """Audited admin override of a case's state (needs role ``admin``; runs no actions)."""
        return self._run(lambda conn, now_: self.steps.force_state(
            conn, case_id, state, self.resolve_actor(actor), reason, now_), now)

    def link(self, case_id: int | str, other_id: int | str, kind: str = "related_to", *,
             actor: Actor | str, now: datetime | None = None) -> Link:
        """Link two cases: ``duplicate_of`` (worked once, via the other) or ``related_to``."""
        return self._run(lambda conn, now_: self.steps.link(
            conn, case_id, other_id, kind, self.resolve_actor(actor), now_), now)

    def attach(self, case_id: int | str, name: str, *, actor: Actor | str, media_type: str = "application/octet-stream",
               content: bytes | None = None, uri: str | None = None, sha256: str | None = None,
               event_id: int | None = None, now: datetime | None = None) -> Attachment:
        """Record a photo, signed sheet or signature: by ``uri`` or as ``content`` kept in
        ``attachments_dir``. Either way the sha256 is stored so tampering can be detected."""
        stored_uri, digest, size = self._store_attachment(name, content, uri, sha256)
        return self._run(lambda conn, now_: self.steps.attach(
            conn, case_id, name, media_type, stored_uri, digest, size, event_id,
            self.resolve_actor(actor), now_), now)

    def _store_attachment(self, name: str, content: bytes | None, uri: str | None,
                          sha256: str | None) -> tuple[str, str, int | None]:
        if (content is None) == (uri is None):
            raise ValueError("attach needs exactly one of content= or uri=")
        if content is None:
            if not sha256 or len(sha256) != 64:
                raise ValueError("an attachment given by uri needs its sha256 (64 hex digits)")
            return str(uri), sha256.lower(), None
        if self.attachments_dir is None:
            raise ValueError("attach(content=...) needs Engine(attachments_dir=...)")
        digest = hashlib.sha256(content).hexdigest()
        if sha256 and sha256.lower() != digest:
            raise ValueError(f"attachment {name!r}: sha256 mismatch (given {sha256}, content {digest})")
        target = self.attachments_dir / digest[:2] / digest
        target.parent.mkdir(parents=True, exist_ok=True)
        if not target.exists():
            tmp = target.with_suffix(".tmp")
            tmp.write_bytes(content)
            shutil.move(str(tmp), str(target))
        return target.resolve().as_uri(), digest, len(content)

    # -- clocks and time ------------------------------------------------------------------
    def extend(self, case_id: int | str, clock: str, *, actor: Actor | str, approved_by: str,
               new_due_at: datetime | None = None, add: str | None = None,
               now: datetime | None = None) -> ClockStatus:
        """Move a running clock's due time, with the consent that allows it recorded in history."""
        def step(conn: sa.Connection, now_: datetime) -> ClockStatus:
            row = self.store.load(conn, case_id, for_update=True)
            who = self.resolve_actor(actor)
            self.steps.check_community(who, row, "extend a deadline")
            revision = self.workflows().get(conn, row.workflow, row.revision)
            return self.clock_rules.extend(conn, revision, self._case(conn, row), clock, who, approved_by,
                                           new_due_at, add, now_)
        return self._run(step, now)

    def clocks(self, case_id: int | str, *, now: datetime | None = None) -> list[ClockStatus]:
        """Every clock cycle of a case: state, elapsed, remaining, due time, breached."""
        from ._schema import sla_clocks

        now = now or utcnow()
        with self._read_db.connect() as conn:
            row = self.store.load(conn, case_id)
            rows = conn.execute(sa.select(sla_clocks).where(sla_clocks.c.case_id == row.id)
                                .order_by(sla_clocks.c.name, sla_clocks.c.cycle)).all()
            return [self.clock_rules.status_of(conn, r, now) for r in rows]

    def _ensure_recurring(self, now: datetime) -> None:
        """Recurring jobs are timer rows too (never APScheduler jobs): one pending row each."""
        from ._schema import timers

        with self.db.begin() as conn:
            if conn.dialect.name == "postgresql":
                conn.execute(sa.text("SELECT pg_advisory_xact_lock(hashtext('estateflow-recurring'))"))
            pending = conn.execute(sa.select(timers.c.id).where(timers.c.kind == "calendar_check",
                                                                timers.c.status == "pending")).first()
            if pending is None:
                conn.execute(timers.insert().values(case_id=None, clock_id=None, kind="calendar_check", step=0,
                                                    due_at=now, status="pending", attempts=0, payload={},
                                                    created_at=now))

    def _calendar_check(self, conn: sa.Connection, timer: Any, now: datetime) -> None:
        """Daily: alert when a calendar's holiday data ends within ``calendar_warn_days``."""
        from datetime import timedelta

        from ._schema import timers

        for name in self.calendar_set.names:
            last = self.calendar_set.reach(conn, name)
            if last is not None and last < now.date() + timedelta(days=self.calendar_warn_days):
                log.warning("calendar %r has holiday data only until %s: load next year's notice", name, last)
                self.notices.system_alert(
                    conn, key=f"calendar:{name}:{last.isoformat()}", now=now,
                    subject=f"【日历数据即将用完】日历 {name} 的节假日数据只到 {last.isoformat()}",
                    body=f"请导入国务院办公厅下一年度节假日安排通知：estateflow calendar import NOTICE.txt "
                         f"--calendar {name}. Calendar {name!r} has holiday data only until {last.isoformat()}.")
        others = conn.execute(sa.select(timers.c.id).where(timers.c.kind == "calendar_check",
                                                           timers.c.status == "pending",
                                                           timers.c.id != timer.id)).first()
        if others is None:
            conn.execute(timers.insert().values(case_id=None, clock_id=None, kind="calendar_check", step=0,
                                                due_at=now + timedelta(days=1), status="pending", attempts=0,
                                                payload={}, created_at=now))

    def tick(self, now: datetime | None = None, *, limit: int | None = None, deliver: bool = True) -> TickResult:
        """Fire every due timer (in due order, each exactly once), then deliver the outbox."""
        now = _aware(now) if now is not None else utcnow()
        self.workflows()
        if deliver:
            self.notifiers()  # a broken estateflow.yaml stops the tick before any timer fires
        self._ensure_recurring(now)
        self.reports.mailer.ensure(now)  # scheduled reports (estateflow.yaml 'reports:') are timer rows
        result = self.timer_runner.tick(now, limit=limit)
        if deliver:
            result.delivered = len(self.deliver(now).sent)
        return result

    def deliver(self, now: datetime | None = None, *, limit: int = 500) -> DeliveryResult:
        """Send what is due in the outbox (retries with backoff; dead letters after the last try)."""
        return self.outbox.deliver(_aware(now) if now is not None else utcnow(), limit=limit)

    def set_calendar_days(self, calendar: str, days: Mapping[Any, bool], *, covered_years: Iterable[int] = (),
                          source: str = "admin", note: str = "", now: datetime | None = None) -> int:
        """Store working-day overrides and recompute the due times of running clocks, atomically.

        Returns how many clocks got a new due time (each recorded in its case's history).
        """
        from datetime import date as _date

        parsed = {(_date.fromisoformat(d) if isinstance(d, str) else d): bool(w) for d, w in days.items()}

        def step(conn: sa.Connection, now_: datetime) -> int:
            self.calendar_set.store_overrides(conn, calendar, parsed, covered_years=covered_years,
                                              source=source, note=note, now=now_)
            return self.clock_rules.recompute_calendar(conn, calendar, now_)
        return self._run(step, now)

    # -- moving in and personal data -------------------------------------------------------
    def import_cases(self, source: str | Path | Iterable[Mapping[str, Any]], *, workflow: str,
                     mapping: Mapping[str, str] | None = None, state_map: Mapping[str, str] | None = None,
                     value_map: Mapping[str, Mapping[str, str]] | None = None, dry_run: bool = False,
                     actor: Actor | str = "system", now: datetime | None = None,
                     progress: Callable[[int, int], None] | None = None) -> ImportReport:
        """Bring cases over from the register kept before (a .csv/.xlsx file, or row mappings):
        original numbers, true received times, states; all rows or none. Row problems are in
        ``report.problems`` (line and column each) and then nothing is written; ``dry_run``
        does everything and rolls back. See :mod:`estateflow.engine._import`."""
        from ._import import Importer

        return Importer(self).run(source, workflow=workflow, mapping=dict(mapping or {}),
                                  state_map=dict(state_map or {}), value_map=dict(value_map or {}),
                                  dry_run=dry_run, actor=self.resolve_actor(actor),
                                  now=_aware(now) if now is not None else utcnow(), progress=progress)

    def purge(self, closed_before: date | datetime, *, workflow: str | None = None, dry_run: bool = False,
              actor: Actor | str = "system", now: datetime | None = None,
              progress: Callable[[int, int], None] | None = None) -> PurgeReport:
        """Anonymise the personal fields of cases closed before ``closed_before`` (a date is
        midnight in the workflow calendar's zone) everywhere they were written, keeping numbers,
        states, times and report columns; one ``purged`` event per case; idempotent. Needs role
        ``admin`` or one of the workflow's ``personal_data_roles``. See :mod:`._purge`."""
        from ._purge import Purger

        return Purger(self).run(closed_before, workflow=workflow, dry_run=dry_run, actor=self.resolve_actor(actor),
                                now=_aware(now) if now is not None else utcnow(), progress=progress)

    # -- revisions and migration (see _versions.py, _diff.py, _migrate.py) -----------------
    def revisions(self, name: str | None = None) -> list[RevisionInfo]:
        """Stored revisions (of ``name``, or all) with version labels and open/closed case counts."""
        from ._versions import list_revisions

        return list_revisions(self, name)

    def diff(self, name: str, old: int | str, new: int | str) -> WorkflowDiff:
        """What changed from ``name@rOLD`` to ``name@rNEW``, section by section (states,
        transitions, clocks, fields, roles, notify, ...), read from the stored revisions."""
        from ._diff import diff_specs
        from ._versions import parse_revision

        a, b = parse_revision(name, old), parse_revision(name, new)
        registry = self.workflows()
        with self._read_db.connect() as conn:
            return diff_specs(registry.spec_of(name, a, conn), registry.spec_of(name, b, conn),
                              f"{name}@r{a}", f"{name}@r{b}")

    def migrate(self, name: str, to_revision: int | str, *, state_map: Mapping[str, str] | None = None,
                dry_run: bool = False, actor: Actor | str = "system", now: datetime | None = None,
                batch: int = 500) -> MigrationPlan:
        """Move every open case of ``name`` to ``to_revision`` (``dry_run``: only plan it).

        Cases in a state the target lacks must be placed by ``state_map`` ({old: new}) or the
        whole migration is refused (:class:`MigrationError`) before anything is written. Clocks
        follow the target's rules: removed → stopped, new target → due time recomputed from the
        start, new clock starting in the case's state → started. Each batch is one transaction;
        each case gets a ``migrated`` history event. The real run needs role ``admin``.
        """
        from ._migrate import migrate

        self.workflows()
        return migrate(self, name, to_revision, state_map=state_map, dry_run=dry_run, actor=actor,
                       now=_aware(now) if now is not None else None, batch=batch)

    # -- reading API ----------------------------------------------------------------------
    def get(self, case_id: int | str, *, actor: Actor | str | None = None) -> Case:
        """A case by id or number; with ``actor``, scoped to its communities and masked."""
        with self._read_db.connect() as conn:
            row = self.store.load(conn, case_id)
            case = self._case(conn, row)
        return self.steps.view(case, self.resolve_actor(actor) if actor else None)

    def find(self, *, workflow: str | None = None, state: str | Iterable[str] | None = None,
             community: str | None = None, building: str | None = None, unit: str | None = None,
             assignee: str | None = None, department: str | None = None, category: str | None = None,
             text: str | None = None, open: bool | None = None, overdue: bool = False,
             due_before: datetime | None = None, limit: int = 50, offset: int = 0,
             actor: Actor | str | None = None, now: datetime | None = None) -> list[Case]:
        """Search the register; ``text`` matches number, customer name/phone and unit."""
        if limit < 1 or limit > 10_000 or offset < 0:
            raise ValueError("limit must be 1..10000 and offset >= 0")
        who = self.resolve_actor(actor) if actor else None
        filters = {"workflow": workflow, "state": list(state) if isinstance(state, (list, tuple, set)) else state,
                   "community": community, "building": building, "unit": unit, "assignee": assignee,
                   "department": department, "category": category}
        with self._read_db.connect() as conn:
            rows = self.store.find(conn, filters=filters, text=text,
                                   communities=who.communities if who and who.communities else None,
                                   overdue_at=(now or utcnow()) if overdue else None,
                                   due_before=due_before, open_only=open, limit=limit, offset=offset)
            return [self.steps.view(self._case(conn, r), who) for r in rows]

    def history(self, case_id: int | str, *, actor: Actor | str | None = None) -> list[Event]:
        """Every event of a case in order: who, when, what changed."""
        with self._read_db.connect() as conn:
            row = self.store.load(conn, case_id)
            if actor is not None:
                self.steps.view(self._case(conn, row), self.resolve_actor(actor))
            return self.store.events(conn, row.id)

    def links(self, case_id: int | str) -> list[Link]:
        with self._read_db.connect() as conn:
            return self.store.links(conn, self.store.load(conn, case_id).id)

    def attachments(self, case_id: int | str) -> list[Attachment]:
        with self._read_db.connect() as conn:
            return self.store.attachments(conn, self.store.load(conn, case_id).id)

    def available_triggers(self, case_id: int | str, actor: Actor | str, *, now: datetime | None = None) -> list[str]:
        """Triggers this actor could fire at ``now`` (roles, delegations, community, conditions)."""
        with self._read_db.connect() as conn:
            return self.steps.available(conn, self.store.load(conn, case_id),
                                        self.resolve_actor(actor), _aware(now) if now else utcnow())

    # -- reports (estateflow.reports; every one masked unless unmasked=True by an allowed actor)
    def report_weekly(self, *, week: str | None = None, start: Any = None, end: Any = None,
                      community: str | None = None, department: str | None = None, workflow: str | None = None,
                      actor: Actor | str | None = None, unmasked: bool = False, lang: str = "zh",
                      limit: int = 200, now: datetime | None = None) -> Any:
        """周报: opened, closed, still open, overdue and on-time rates for a week (default: the last
        full Monday–Sunday week in the calendar's zone), per clock, category, department and handler,
        with the unresolved and major cases. ``week="2025-W40"`` or ``start``/``end`` dates."""
        return self.reports.weekly(week=week, start=start, end=end, community=community, department=department,
                                   workflow=workflow, actor=actor, unmasked=unmasked, lang=lang, limit=limit, now=now)

    def report_register(self, *, week: str | None = None, month: str | None = None, start: Any = None,
                        end: Any = None, community: str | None = None, department: str | None = None,
                        workflow: str | None = None, actor: Actor | str | None = None, unmasked: bool = False,
                        lang: str = "zh", now: datetime | None = None) -> Any:
        """《来电、来访登记表》: every case received in a period (default: last full week)."""
        return self.reports.register(week=week, month=month, start=start, end=end, community=community,
                                     department=department, workflow=workflow, actor=actor, unmasked=unmasked,
                                     lang=lang, now=now)

    def report_sla(self, *, week: str | None = None, month: str | None = None, quarter: str | None = None,
                   year: str | int | None = None, start: Any = None, end: Any = None, community: str | None = None,
                   department: str | None = None, workflow: str | None = None, actor: Actor | str | None = None,
                   lang: str = "zh", now: datetime | None = None) -> Any:
        """SLA compliance of the clock cycles started in a period (default: last full month): met,
        breached, running, median and p90 hours to stop, breaches by escalation level."""
        return self.reports.sla(week=week, month=month, quarter=quarter, year=year, start=start, end=end,
                                community=community, department=department, workflow=workflow, actor=actor,
                                lang=lang, now=now)

    def report_ratings(self, *, quarter: str | None = None, year: str | int | None = None, start: Any = None,
                       end: Any = None, community: str | None = None, workflow: str = "repair",
                       actor: Actor | str | None = None, lang: str = "zh", now: datetime | None = None) -> Any:
        """Quarterly/yearly ratings of repair workers and their managers (DOMAIN.md §2.6), from the
        customer's signed comment on the work order and the callback (default: last full quarter)."""
        return self.reports.ratings(quarter=quarter, year=year, start=start, end=end, community=community,
                                    workflow=workflow, actor=actor, lang=lang, now=now)

    # -- plumbing -------------------------------------------------------------------------
    def _case(self, conn: sa.Connection, row: Any) -> Case:
        spec = self.workflows().get(conn, row.workflow, row.revision).spec
        return row_to_case(row, from_json(spec.fields, row.data))

    def _run(self, step: Callable[[sa.Connection, datetime], Any], now: datetime | None) -> Any:
        now = _aware(now) if now is not None else utcnow()
        self.workflows()
        after: list[tuple[str, Any, Any]] = []
        with self.db.begin() as conn:
            conn.info["estateflow_after"] = after
            try:
                result = step(conn, now)
            finally:
                conn.info.pop("estateflow_after", None)
        self._emit(after)
        return result

    def _emit(self, after: list[tuple[str, Any, Any]]) -> None:
        for event, case, detail in after:
            for fn in self._hooks.get(event, []):
                try:
                    fn(case, detail)
                except Exception:  # a hook must not undo a committed step
                    log.exception("hook %r for %s failed", fn, event)

    def call_action(self, name: str, ctx: ActionContext) -> Mapping[str, Any] | None:
        fn = self._actions.get(name)
        if fn is None:
            raise ActionError(name, LookupError("no such action registered"))
        try:
            return fn(ctx)
        except EstateflowError:
            raise
        except Exception as exc:
            raise ActionError(name, exc) from exc

    def check_roles_or_delegation(self, conn: sa.Connection, actor: Actor, allowed: Callable[[Actor], bool],
                                  what: str, needed: Iterable[str], now: datetime) -> str | None:
        """Returns the principal's id when acting under a delegation, None when acting as oneself."""
        if allowed(actor):
            return None
        for principal in self.principals_for(conn, actor.id, now):
            if allowed(principal):
                return principal.id
        raise RoleNotAllowed(actor.id, what, needed)

    def conflict(self, case: str, expected: int, actual: int | None) -> ConflictError:
        return ConflictError(case, expected, actual)


def _aware(now: datetime) -> datetime:
    if now.tzinfo is None:
        raise ValueError(f"now={now!r} is naive; pass a timezone-aware datetime")
    return now


def _entry_point_actions() -> dict[str, ActionFn]:
    from importlib.metadata import entry_points

    found: dict[str, ActionFn] = {}
    for ep in entry_points(group="estateflow.actions"):
        try:
            found[ep.name] = ep.load()
        except Exception:  # a broken plugin must be visible, not fatal to unrelated workflows
            log.exception("cannot load estateflow.actions entry point %s", ep.name)
    return found
