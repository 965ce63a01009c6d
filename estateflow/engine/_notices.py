"""Turning case events into outbox rows (rendered, addressed, keyed), inside the causing transaction.

Why render at write time: the outbox row is then a complete, self-contained message; a
delivery retried an hour later sends exactly what the event meant, even if a template file was
edited in between, and a template error is recorded on the row instead of crashing a daemon.
Idempotency keys are derived from the cause (the case version of a transition, the id of a
timer), so a re-run of the same cause can never queue a second copy.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from ._errors import ExpressionError
from ._expr import default_sandbox
from ._fields import to_json
from ._registry import Revision
from ._schema import outbox
from ._spec import WorkflowSpec
from ._types import Case

if TYPE_CHECKING:
    from ._engine import Engine

__all__ = ["DEFAULT_TEMPLATES", "Notices"]

log = logging.getLogger(__name__)

# Shipped templates for the notices the engine itself sends; a workflow's own ``templates:``
# section overrides any of them by name. First line = subject.
DEFAULT_TEMPLATES: dict[str, dict[str, str]] = {
    "acknowledge": {
        "zh": "您的{{ workflow_title }}已受理\n编号 {{ case.number }}。我们将在 {{ reply_due|datetime('%Y-%m-%d %H:%M', tz=zone) if reply_due else '尽快' }} 前答复您。",
        "en": "Your {{ workflow_title }} was registered\nNumber {{ case.number }}. We will reply by {{ reply_due|datetime('%Y-%m-%d %H:%M', tz=zone) if reply_due else 'as soon as possible' }}.",
    },
    "result": {
        "zh": "您的{{ workflow_title }}已办结\n编号 {{ case.number }} 已处理完毕，感谢您的反馈。",
        "en": "Your {{ workflow_title }} is closed\nCase {{ case.number }} has been completed. Thank you.",
    },
    "warning": {
        "zh": "【即将超时】{{ case.number }} {{ clock_label }}\n{{ case.number }}（{{ case.state }}）将于 {{ due_at|datetime('%Y-%m-%d %H:%M', tz=zone) }} 到期，请及时处理。",
        "en": "[Due soon] {{ case.number }} {{ clock_label }}\n{{ case.number }} ({{ case.state }}) is due at {{ due_at|datetime('%Y-%m-%d %H:%M', tz=zone) }}.",
    },
    "breach": {
        "zh": "【已超时】{{ case.number }} {{ clock_label }}\n{{ case.number }}（{{ case.state }}）已于 {{ due_at|datetime('%Y-%m-%d %H:%M', tz=zone) }} 超时。",
        "en": "[Overdue] {{ case.number }} {{ clock_label }}\n{{ case.number }} ({{ case.state }}) was due at {{ due_at|datetime('%Y-%m-%d %H:%M', tz=zone) }}.",
    },
    "escalation": {
        "zh": "【超时升级{{ level }}级】{{ case.number }} {{ clock_label }}\n{{ case.number }}（{{ case.state }}）已于 {{ due_at|datetime('%Y-%m-%d %H:%M', tz=zone) }} 超时，现升级至您处理。",
        "en": "[Escalation level {{ level }}] {{ case.number }} {{ clock_label }}\n{{ case.number }} ({{ case.state }}) was due at {{ due_at|datetime('%Y-%m-%d %H:%M', tz=zone) }} and is escalated to you.",
    },
    "major_complaint": {
        "zh": "【重大投诉】{{ case.number }}\n{{ case.number }} 已升级为重大投诉，请总经理/副总经理确定处理措施并召开专题会议。",
        "en": "[Major complaint] {{ case.number }}\n{{ case.number }} was upgraded to a major complaint: the GM/deputy GM sets the measures and CS holds a special meeting.",
    },
    "callback_due": {
        "zh": "【待回访】{{ case.number }}\n{{ case.number }} 已完工验收，请于1个工作日内电话回访。",
        "en": "[Callback due] {{ case.number }}\nWork on {{ case.number }} passed inspection: call the customer back within 1 working day.",
    },
    "calendar_missing": {
        "zh": "【日历数据缺失】{{ case.number }} {{ clock_label }}\n日历 {{ calendar }} 没有 {{ year }} 年的节假日数据，时限暂无法计算。请导入国务院办公厅节假日安排通知。",
        "en": "[Calendar data missing] {{ case.number }} {{ clock_label }}\nCalendar {{ calendar }} has no holiday data for {{ year }}; the deadline will be computed once it is loaded.",
    },
}

def _digest(address: str) -> str:
    """Keys must not carry personal data (phone numbers) into logs and receivers' headers."""
    return hashlib.sha256(address.encode()).hexdigest()[:16]


CONTEXT_NAMES = {"case", "workflow_title", "reply_due", "zone", "clock_label", "due_at", "level", "calendar",
                 "year", "data", "event", "trigger", "actor"}


class Notices:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    # -- events from transitions -----------------------------------------------------------
    def on_change(self, conn: sa.Connection, revision: Revision, case: Case, from_state: str | None,
                  to_state: str, trigger: str | None, actor: Any, now: datetime, opened: bool) -> None:
        spec = revision.spec
        closed = from_state != to_state and spec.state(to_state).final
        for index, note in enumerate(spec.notify):
            if note.event == "opened" and not opened:
                continue
            if note.event == "closed" and not closed:
                continue
            if note.event == "transition" and (opened or (note.trigger and trigger not in note.trigger)):
                continue
            if note.event not in ("opened", "closed", "transition"):
                continue
            if note.when:
                ctx = self.engine.steps.context(spec, self.engine.steps.case_dict(case), case.data, actor, now)
                try:
                    if not default_sandbox().compile_condition(note.when, set(ctx))(ctx):
                        continue
                except ExpressionError as exc:
                    log.warning("notify[%d] of %s: condition failed: %s", index, spec.name, exc)
                    continue
            extra = {"reply_due": self._first_due(conn, case) if note.event == "opened" else None,
                     "event": note.event, "trigger": trigger}
            self.queue(conn, spec, case, note.event, note.template, note.to, note.channel,
                       f"c{case.id}:v{case.version}:n{index}", now, extra)

    def _first_due(self, conn: sa.Connection, case: Case) -> datetime | None:
        from ._schema import sla_clocks

        return conn.execute(sa.select(sa.func.min(sla_clocks.c.due_at)).where(
            sla_clocks.c.case_id == case.id, sla_clocks.c.status == "running")).scalar()

    # -- clocks ------------------------------------------------------------------------------
    def clock_notice(self, conn: sa.Connection, spec: WorkflowSpec, case: Case, *, event: str, template: str,
                     recipients: Iterable[str], clock: str, due_at: datetime | None, level: int, cause: str,
                     now: datetime) -> int:
        return self.insert(conn, self.clock_rows(spec, case, event=event, template=template, recipients=recipients,
                                                 clock=clock, due_at=due_at, level=level, cause=cause, now=now))

    def clock_rows(self, spec: WorkflowSpec, case: Case, *, event: str, template: str, recipients: Iterable[str],
                   clock: str, due_at: datetime | None, level: int, cause: str, now: datetime) -> list[dict[str, Any]]:
        """The outbox rows of a clock notice, not yet written: the timer loop inserts a whole
        batch's rows in one statement (bench/README.md, tick)."""
        label = spec.clocks[clock].label if clock in spec.clocks else None
        extra = {"clock_label": label.zh if label else clock, "due_at": due_at, "level": level}
        return self.rows(spec, case, event, template, list(recipients), self.engine.default_channel, cause, now,
                         extra)

    def calendar_missing(self, conn: sa.Connection, case: Case, clock: str, exc: Exception, now: datetime) -> None:
        spec = self.engine.workflows().get(conn, case.workflow, case.revision).spec
        extra = {"clock_label": clock, "calendar": getattr(exc, "calendar", ""), "year": getattr(exc, "year", "")}
        self.queue(conn, spec, case, "calendar", "calendar_missing", ["role:cs_manager", "assignee"],
                   self.engine.default_channel, f"c{case.id}:cal:{clock}:{getattr(exc, 'year', '')}", now, extra)

    # -- rendering and addressing --------------------------------------------------------------
    def recipients(self, case: Case, targets: Iterable[str], channel: str,
                   spec: WorkflowSpec | None = None) -> list[tuple[str, str]]:
        """(address, label) pairs; role targets resolve through the directory in the case's community
        (and in the case's department only for roles declared ``scope: department``)."""
        found: list[tuple[str, str]] = []
        directory = self.engine.directory
        for target in targets:
            kind, _, name = target.partition(":") if ":" in target else ("role", "", target)
            if target in ("assignee", "handler"):
                if case.assignee:
                    actor = directory.get(case.assignee) if directory else None
                    found.append((self._address(actor, case.assignee, channel), target))
                continue
            if kind == "field":
                value = case.data.get(name)
                if value:
                    found.append((str(value), target))
            elif kind == "address":
                found.append((name, target))
            else:
                role = name or target
                scoped = spec is not None and role in spec.roles and spec.role(role).scope == "department"
                members = directory.members(role, case.community, case.department if scoped else None) \
                    if directory and hasattr(directory, "members") else []
                if not members:
                    found.append((f"role:{role}", target))
                for actor in members:
                    found.append((self._address(actor, actor.id, channel), target))
        unique: dict[str, str] = {}
        for address, label in found:
            unique.setdefault(address, label)
        return list(unique.items())

    @staticmethod
    def _address(actor: Any, fallback: str, channel: str) -> str:
        if actor is not None:
            if channel.startswith("email") and actor.email:
                return actor.email
            if channel.startswith("sms") and actor.phone:
                return actor.phone
        return fallback

    def template_text(self, spec: WorkflowSpec, name: str, language: str) -> str | None:
        texts = spec.templates.get(name) or DEFAULT_TEMPLATES.get(name)
        if not texts:
            return None
        return texts.get(language) or texts.get("zh") or next(iter(texts.values()))

    def render(self, spec: WorkflowSpec, name: str, language: str, context: Mapping[str, Any]) -> tuple[str, str]:
        text = self.template_text(spec, name, language)
        if text is None:
            raise ExpressionError(name, "no such template")
        rendered = default_sandbox().compile_template(text, set(context)).render(context)
        subject, _, body = rendered.partition("\n")
        return subject.strip(), (body.strip() or subject.strip())

    def queue(self, conn: sa.Connection, spec: WorkflowSpec, case: Case, event: str, template: str,
              targets: Iterable[str], channel: str, cause: str, now: datetime, extra: Mapping[str, Any]) -> int:
        """Write one outbox row per recipient; returns how many rows were new."""
        return self.insert(conn, self.rows(spec, case, event, template, targets, channel, cause, now, extra))

    def rows(self, spec: WorkflowSpec, case: Case, event: str, template: str, targets: Iterable[str],
             channel: str, cause: str, now: datetime, extra: Mapping[str, Any]) -> list[dict[str, Any]]:
        """One rendered, addressed, keyed outbox row per recipient."""
        title = spec.title.zh if spec.title else spec.name
        context = {"case": self.engine.steps.case_dict(case) | {"data": dict(case.data)},
                   "workflow_title": title, "zone": self.engine.calendar_zone(spec), "data": dict(case.data),
                   "reply_due": None, "clock_label": "", "due_at": None, "level": 0, "calendar": "", "year": "",
                   "event": event, "trigger": None, "actor": None}
        context.update(extra)
        rows = []
        for address, label in self.recipients(case, targets, channel, spec):
            status, error = "pending", None
            try:
                subject, body = self.render(spec, template, "zh", context)
            except ExpressionError as exc:
                subject, body, status, error = f"[template error] {template}", "", "dead", str(exc)
                log.error("template %r of %s failed: %s", template, spec.name, exc)
            rows.append({"case_id": case.id, "event": event, "channel": channel, "recipient": address,
                         "language": "zh", "subject": subject, "body": body, "html": None,
                         "payload": to_json({"case": case.number, "event": event, "template": template,
                                             "to": label, "workflow": case.workflow, "state": case.state,
                                             "due_at": context.get("due_at"), "level": context.get("level")}),
                         "idempotency_key": f"{cause}:{_digest(address)}", "status": status, "attempts": 0,
                         "next_attempt_at": now, "last_error": error, "created_at": now})
        return rows

    _INSERT = {"postgresql": pg_insert(outbox).on_conflict_do_nothing(index_elements=["idempotency_key"]),
               "sqlite": sqlite_insert(outbox).on_conflict_do_nothing(index_elements=["idempotency_key"])}

    def insert(self, conn: sa.Connection, rows: list[dict[str, Any]]) -> int:
        """Insert outbox rows, skipping any whose idempotency key exists; returns how many were new."""
        if not rows:
            return 0
        result = conn.execute(self._INSERT[conn.dialect.name], rows)
        return result.rowcount if result.rowcount is not None and result.rowcount >= 0 else len(rows)

    def system_alert(self, conn: sa.Connection, *, key: str, subject: str, body: str, now: datetime,
                     recipients: Iterable[str] = ("role:cs_manager", "role:admin")) -> int:
        """An alert with no case (calendar data running out): one row per recipient, keyed by ``key``."""
        rows = [{"case_id": None, "event": "system", "channel": self.engine.default_channel, "recipient": r,
                 "language": "zh", "subject": subject, "body": body, "html": None, "payload": {"alert": key},
                 "idempotency_key": f"sys:{key}:{r}"[:200], "status": "pending", "attempts": 0,
                 "next_attempt_at": now, "last_error": None, "created_at": now} for r in recipients]
        insert = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
        return conn.execute(insert(outbox).on_conflict_do_nothing(index_elements=["idempotency_key"]), rows).rowcount

