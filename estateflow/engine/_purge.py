"""Anonymising the personal data of old closed cases (retention under PIPL).

What counts as personal is declared per workflow: fields marked ``personal: true`` (names,
phone numbers, addresses/units) in the case's own revision or in the newest one, so marking a
field later also covers old cases. Their values are replaced by ``***`` (lists keep their
length; non-text fields become empty) wherever they were written:

* ``cases.data``, ``cases.search_text`` and an indexed column fed by a personal field (``unit``);
* history: field values in ``case_events`` (``opened``/``imported`` fields, ``changed`` diffs),
  and the same values inside free text (notes, reasons, other text fields);
* the outbox rows of the case: a recipient that was one of those values (an SMS to the
  customer's phone), subjects, bodies, errors, and the idempotency key that carried a digest of
  that address (a 16-hex digest of a phone number can be reversed by trying every number).

Numbers, states, times, categories, departments, handlers, priorities, clocks and every other
column reports count are left exactly as they were (``updated_at`` included). Inside free text
a value is replaced wherever it occurs if it is distinctive (two characters or more, and five or
more when it is only digits); a short all-digit value (unit ``12``) is replaced only where it is
the whole text, so amounts and times are never cut up. The case number is never altered.

Each purged case gets a ``purged`` history event; a case already purged since it was last
closed is not a candidate again, so purging twice is harmless. One transaction: all or nothing;
``dry_run`` runs the same code and rolls back.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, time
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa

from ._errors import RoleNotAllowed
from ._fields import to_json
from ._schema import case_events, cases, outbox
from ._spec import FieldSpec, WorkflowSpec
from ._store import INDEXED
from ._types import Actor

if TYPE_CHECKING:
    from ._engine import Engine

__all__ = ["MARK", "PurgeReport", "Purger", "purge_roles"]

log = logging.getLogger(__name__)
MARK = "***"
ADMIN = "admin"
_FIELD_MAPS = ("fields", "changed")  # event data keys holding {field: value}


@dataclass
class PurgeReport:
    """What a purge did (or, with ``dry_run``, would do)."""

    closed_before: str
    dry_run: bool
    committed: bool = False
    cases: list[str] = field(default_factory=list)
    events: int = 0
    outbox: int = 0
    fields: dict[str, list[str]] = field(default_factory=dict)  # workflow -> personal fields

    @property
    def count(self) -> int:
        return len(self.cases)

    def to_dict(self) -> dict[str, Any]:
        return dict(asdict(self), count=self.count)


def purge_roles(spec: WorkflowSpec) -> set[str]:
    """Who may purge a workflow's cases: ``admin``, and the roles trusted to see its personal
    data (``personal_data_roles``) — those answerable for the data may also erase it."""
    return {ADMIN, *spec.personal_data_roles}


def personal_fields(*specs: WorkflowSpec) -> dict[str, FieldSpec]:
    found: dict[str, FieldSpec] = {}
    for spec in specs:
        for name, f in spec.fields.items():
            if f.personal:
                found.setdefault(name, f)
    return found


class Scrubber:
    """Replaces one case's personal values in text and JSON, never touching ``keep`` (its number)."""

    def __init__(self, values: Iterable[str], keep: str) -> None:
        self.exact = {v for v in values if v and v != MARK}
        partial = sorted((v for v in self.exact if _distinctive(v)), key=len, reverse=True)
        self.partial = re.compile("|".join(map(re.escape, partial))) if partial else None
        self.keep = keep

    def text(self, value: str) -> str:
        if value in self.exact:
            return MARK
        if self.partial is None or _is_timestamp(value):
            return value
        pieces = value.split(self.keep) if self.keep else [value]
        return self.keep.join(self.partial.sub(MARK, piece) for piece in pieces)

    def json(self, value: Any, personal: dict[str, FieldSpec], types: dict[str, FieldSpec]) -> Any:
        if isinstance(value, dict):
            result = {}
            for key, item in value.items():
                if key in _FIELD_MAPS and isinstance(item, dict):
                    result[key] = {name: (masked(v, personal[name]) if name in personal
                                          else self.json(v, personal, types) if _is_text(types.get(name)) else v)
                                   for name, v in item.items()}
                else:
                    result[key] = self.json(item, personal, types)
            return result
        if isinstance(value, list):
            return [self.json(v, personal, types) for v in value]
        if isinstance(value, str):
            return self.text(value)
        return value


def _distinctive(value: str) -> bool:
    return len(value) >= 2 and (not value.isdigit() or len(value) >= 5)


def _is_timestamp(value: str) -> bool:
    try:
        datetime.fromisoformat(value)
    except ValueError:
        return False
    return True


def _is_text(spec: FieldSpec | None) -> bool:
    return spec is None or spec.type in ("str", "list")


def masked(value: Any, spec: FieldSpec) -> Any:
    """The anonymised form of a personal value: ``***`` for text, one ``***`` per list item,
    empty for anything else (a date of birth)."""
    if value is None or value == "":
        return value
    if isinstance(value, list):
        return [MARK] * len(value)
    return MARK if isinstance(value, str) and spec.type in ("str", "enum") else None


def _values(data: Any, personal: dict[str, FieldSpec]) -> set[str]:
    found: set[str] = set()
    if not isinstance(data, dict):
        return found
    for name in personal:
        value = data.get(name)
        for item in value if isinstance(value, list) else [value]:
            if item not in (None, "", MARK):
                found.add(str(item))
    return found


class Purger:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def run(self, closed_before: date | datetime, *, workflow: str | None, dry_run: bool, actor: Actor,
            now: datetime, progress: Callable[[int, int], None] | None = None) -> PurgeReport:
        if isinstance(closed_before, datetime) and closed_before.tzinfo is None:
            raise ValueError(f"closed_before={closed_before!r} is naive; pass a date or an aware datetime")
        registry = self.engine.workflows()
        names = [workflow] if workflow else registry.names
        report = PurgeReport(_text(closed_before), dry_run)
        with self.engine.db.connect() as conn:
            transaction = conn.begin()
            try:
                # newest revisions read from the database: a workflow whose file was removed
                # still has cases (and personal data) to purge
                newest = {name: registry.get(conn, name).spec for name in names}
                for name, spec in newest.items():
                    if "system" not in actor.roles and not actor.roles & purge_roles(spec):
                        raise RoleNotAllowed(actor.id, f"purge personal data of {name} cases", purge_roles(spec))
                todo = [(name, case_id) for name in names
                        for case_id in self._candidates(conn, name, self._cutoff(closed_before, newest[name]), actor)]
                for index, (name, case_id) in enumerate(todo, start=1):
                    self._purge_case(conn, case_id, newest[name], actor, now, report)
                    if progress is not None:
                        progress(index, len(todo))
                if dry_run:
                    transaction.rollback()
                else:
                    transaction.commit()
                    report.committed = True
            except BaseException:
                transaction.rollback()
                raise
        log.info("purge of cases closed before %s: %d cases%s", report.closed_before, report.count,
                 " (dry run, rolled back)" if dry_run else "")
        return report

    def _cutoff(self, closed_before: date | datetime, spec: WorkflowSpec) -> datetime:
        if isinstance(closed_before, datetime):
            return closed_before
        return datetime.combine(closed_before, time(0), tzinfo=ZoneInfo(self.engine.calendar_zone(spec)))

    @staticmethod
    def _candidates(conn: sa.Connection, workflow: str, cutoff: datetime, actor: Actor) -> list[int]:
        purged = sa.select(case_events.c.id).where(case_events.c.case_id == cases.c.id,
                                                   case_events.c.kind == "purged",
                                                   case_events.c.at >= cases.c.closed_at)
        query = sa.select(cases.c.id).where(cases.c.workflow == workflow, cases.c.closed_at < cutoff,
                                            ~sa.exists(purged))
        if actor.communities:
            query = query.where(cases.c.community.in_(sorted(actor.communities)))
        return list(conn.execute(query.order_by(cases.c.id)).scalars())

    def _purge_case(self, conn: sa.Connection, case_id: int, newest: WorkflowSpec, actor: Actor, now: datetime,
                    report: PurgeReport) -> None:
        store = self.engine.store
        row = store.load(conn, case_id, for_update=True)
        spec = self.engine.workflows().get(conn, row.workflow, row.revision).spec
        personal = personal_fields(spec, newest)
        types = {**newest.fields, **spec.fields}
        events = conn.execute(sa.select(case_events.c.id, case_events.c.data)
                              .where(case_events.c.case_id == case_id).order_by(case_events.c.id)).all()
        values = _values(row.data, personal)
        for event in events:
            for key in _FIELD_MAPS:
                values |= _values((event.data or {}).get(key), personal)
        scrub = Scrubber(values, row.number)
        data = {name: (masked(v, personal[name]) if name in personal
                       else scrub.json(v, personal, types) if _is_text(types.get(name)) else v)
                for name, v in (row.data or {}).items()}
        update: dict[str, Any] = {"data": data, "row_version": row.row_version + 1,
                                  "search_text": self.engine.steps.row_values(spec, data, row.state,
                                                                              row.number)["search_text"]}
        for name in INDEXED:
            if name in personal and getattr(row, name) not in (None, ""):
                update[name] = MARK
        conn.execute(cases.update().where(cases.c.id == case_id).values(**update))
        changed_events = 0
        for event in events:
            new = scrub.json(event.data or {}, personal, types)
            if new != event.data:
                conn.execute(case_events.update().where(case_events.c.id == event.id).values(data=new))
                changed_events += 1
        changed_outbox = self._outbox(conn, case_id, scrub, personal, types)
        store.add_event(conn, case_id=case_id, kind="purged", actor=actor.id, at=now, data=to_json({
            "closed_before": report.closed_before, "fields": sorted(personal), "events": changed_events,
            "outbox": changed_outbox}))
        report.cases.append(row.number)
        report.events += changed_events
        report.outbox += changed_outbox
        report.fields.setdefault(row.workflow, sorted(personal))

    @staticmethod
    def _outbox(conn: sa.Connection, case_id: int, scrub: Scrubber, personal: dict[str, FieldSpec],
                types: dict[str, FieldSpec]) -> int:
        rows = conn.execute(sa.select(outbox).where(outbox.c.case_id == case_id).order_by(outbox.c.id)).all()
        changed = 0
        for row in rows:
            payload = row.payload or {}
            label = str(payload.get("to") or "")
            to_person = row.recipient in scrub.exact or (label.startswith("field:") and label[6:] in personal)
            values: dict[str, Any] = {
                "subject": scrub.text(row.subject), "body": scrub.text(row.body),
                "html": scrub.text(row.html) if row.html else row.html,
                "last_error": scrub.text(row.last_error) if row.last_error else row.last_error,
                "payload": scrub.json(payload, personal, types)}
            if to_person and row.recipient != MARK:
                values.update(recipient=MARK, idempotency_key=f"purged:{row.id}")
                if row.status == "pending":  # nobody to send it to any more
                    values.update(status="dead", last_error="recipient anonymised by purge", lease_until=None)
            values = {k: v for k, v in values.items() if v != getattr(row, k)}
            if values:
                conn.execute(outbox.update().where(outbox.c.id == row.id).values(**values))
                changed += 1
        return changed


def _text(value: date | datetime) -> str:
    return value.isoformat()
