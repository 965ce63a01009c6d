"""Rows in and out: the small set of statements the hot path runs, and the read queries.

The store knows tables, not YAML: it is handed plain values by the engine and gives back
frozen dataclasses.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from ._errors import CaseNotFound
from ._fields import text_problem
from ._schema import attachments, case_events, case_links, cases, sequences, sla_clocks
from ._types import Attachment, Case, Event, Link

__all__ = ["CaseStore"]

INDEXED = ("community", "building", "unit", "category", "department", "assignee")


def row_to_case(row: Any, data: Mapping[str, Any] | None = None) -> Case:
    return Case(
        id=row.id, number=row.number, workflow=row.workflow, revision=row.revision, state=row.state,
        community=row.community, building=row.building, unit=row.unit, category=row.category,
        department=row.department, assignee=row.assignee, priority=row.priority, major=row.major,
        data=dict(row.data if data is None else data), received_at=row.received_at,
        created_at=row.created_at, updated_at=row.updated_at, closed_at=row.closed_at,
        voided=row.voided, version=row.row_version,
    )


def row_to_event(row: Any) -> Event:
    return Event(row.id, row.case_id, row.kind, row.trigger, row.from_state, row.to_state,
                 row.actor, row.on_behalf_of, dict(row.data), row.at)


class CaseStore:
    """Statements on cases, events, links, attachments and number sequences."""

    def __init__(self, dialect: str) -> None:
        self.dialect = dialect
        self._updates: dict[frozenset[str], Any] = {}

    # -- reads --------------------------------------------------------------------------
    _BY_ID = sa.select(cases).where(cases.c.id == sa.bindparam("w_key"))
    _BY_NUMBER = sa.select(cases).where(cases.c.number == sa.bindparam("w_key"))
    _LOCKED = {False: (_BY_ID, _BY_NUMBER), True: (_BY_ID.with_for_update(), _BY_NUMBER.with_for_update())}

    def load(self, conn: sa.Connection, key: int | str, *, for_update: bool = False) -> Any:
        by_id, by_number = self._LOCKED[for_update and self.dialect == "postgresql"]
        if isinstance(key, str) and key.isascii() and key.isdigit():
            key = int(key)  # not '²'.isdigit(), which int() refuses
        if isinstance(key, int) and not isinstance(key, bool):
            # an id outside BIGINT makes the driver raise (OverflowError, DataError): no such case
            row = conn.execute(by_id, {"w_key": key}).first() if -2**63 <= key < 2**63 else None
        elif text_problem(str(key)):
            row = None  # PostgreSQL refuses NUL and lone surrogates in text: no case has them
        else:
            row = conn.execute(by_number, {"w_key": str(key)}).first()
        if row is None:
            raise CaseNotFound(key)
        return row

    def events(self, conn: sa.Connection, case_id: int) -> list[Event]:
        rows = conn.execute(sa.select(case_events).where(case_events.c.case_id == case_id)
                            .order_by(case_events.c.id)).all()
        return [row_to_event(r) for r in rows]

    def links(self, conn: sa.Connection, case_id: int) -> list[Link]:
        rows = conn.execute(sa.select(case_links).where(
            sa.or_(case_links.c.case_id == case_id, case_links.c.other_id == case_id))
            .order_by(case_links.c.id)).all()
        return [Link(r.case_id, r.other_id, r.kind, r.actor, r.at) for r in rows]

    def attachments(self, conn: sa.Connection, case_id: int) -> list[Attachment]:
        rows = conn.execute(sa.select(attachments).where(attachments.c.case_id == case_id)
                            .order_by(attachments.c.id)).all()
        return [Attachment(r.id, r.case_id, r.event_id, r.name, r.media_type, r.sha256, r.size,
                           r.uri, r.actor, r.at) for r in rows]

    def find(self, conn: sa.Connection, *, filters: Mapping[str, Any], text: str | None,
             communities: Iterable[str] | None, overdue_at: datetime | None,
             due_before: datetime | None, open_only: bool | None, limit: int, offset: int) -> list[Any]:
        query = sa.select(cases)
        for name, value in filters.items():
            if value is None:
                continue
            column = cases.c[name]
            query = query.where(column.in_(value) if isinstance(value, (list, tuple, set)) else column == value)
        if communities is not None:
            query = query.where(cases.c.community.in_(list(communities)))
        if text:
            query = query.where(cases.c.search_text.contains(text.strip().lower(), autoescape=True))
        if open_only is True:
            query = query.where(cases.c.closed_at.is_(None), cases.c.voided.is_(False))
        elif open_only is False:
            query = query.where(sa.or_(cases.c.closed_at.is_not(None), cases.c.voided.is_(True)))
        if overdue_at is not None or due_before is not None:
            running = sa.select(sla_clocks.c.case_id).where(sla_clocks.c.status == "running")
            if overdue_at is not None:
                running = running.where(sla_clocks.c.due_at <= overdue_at)
            if due_before is not None:
                running = running.where(sla_clocks.c.due_at <= due_before)
            query = query.where(cases.c.id.in_(running))
        query = query.order_by(cases.c.id).limit(limit).offset(offset)
        return conn.execute(query).all()

    # -- writes -------------------------------------------------------------------------
    def next_number(self, conn: sa.Connection, key: str) -> int:
        """Atomically bump the counter for ``key`` (locked until the transaction ends)."""
        stmt = sa.text(
            "INSERT INTO sequences (key, value) VALUES (:key, 1) "
            "ON CONFLICT (key) DO UPDATE SET value = sequences.value + 1 RETURNING value"
        )
        return conn.execute(stmt, {"key": key}).scalar_one()

    def bump_number_past(self, conn: sa.Connection, key: str, value: int) -> None:
        """Move the counter ``key`` to at least ``value`` in one statement, so a number brought
        in from elsewhere is never generated again (no read-then-write race with ``open``)."""
        bigger = "GREATEST" if self.dialect == "postgresql" else "MAX"
        conn.execute(sa.text("INSERT INTO sequences (key, value) VALUES (:key, :value) ON CONFLICT (key) "
                             f"DO UPDATE SET value = {bigger}(sequences.value, excluded.value)"),
                     {"key": key, "value": value})

    def insert_case(self, conn: sa.Connection, values: Mapping[str, Any]) -> int:
        return conn.execute(cases.insert().values(**values).returning(cases.c.id)).scalar_one()

    def _update_statement(self, keys: frozenset[str]) -> Any:
        """Prebuilt per set of columns: building ``.values(**row)`` on every call cost more than
        the database itself (bench/README.md, fire profile)."""
        stmt = self._updates.get(keys)
        if stmt is None:
            stmt = (cases.update()
                    .where(cases.c.id == sa.bindparam("w_id"), cases.c.row_version == sa.bindparam("w_version"))
                    .values({k: sa.bindparam(f"v_{k}", type_=cases.c[k].type) for k in sorted(keys)})
                    .returning(*cases.c))
            self._updates[keys] = stmt
        return stmt

    def update_case(self, conn: sa.Connection, case_id: int, version: int, values: Mapping[str, Any]) -> Any:
        """The updated row (one statement, ``RETURNING``), or None when the version was stale."""
        values = dict(values, row_version=version + 1)
        params = {f"v_{k}": v for k, v in values.items()}
        params.update(w_id=case_id, w_version=version)
        return conn.execute(self._update_statement(frozenset(values)), params).first()

    _insert_event = case_events.insert().returning(case_events.c.id)
    _insert_events = case_events.insert()

    def add_event(self, conn: sa.Connection, **values: Any) -> int | None:
        """Insert a history row; its id, or None when deferred by :meth:`events_together`."""
        row = {c: None for c in ("trigger", "from_state", "to_state", "on_behalf_of")}
        row.update(values)
        row.setdefault("data", {})
        pending = conn.info.get("estateflow_events")
        if pending is not None:
            pending.append(row)
            return None
        return conn.execute(self._insert_event, row).scalar_one()

    @contextmanager
    def events_together(self, conn: sa.Connection) -> Iterator[None]:
        """History rows added inside are inserted with one statement at the end (a transition's
        own row and its clock events: one statement fewer per fire, bench/README.md). Nothing is
        inserted if the block raises; nested blocks join the outer one."""
        if "estateflow_events" in conn.info:
            yield
            return
        pending: list[dict[str, Any]] = []
        conn.info["estateflow_events"] = pending
        try:
            yield
        finally:
            conn.info.pop("estateflow_events", None)
        if pending:
            conn.execute(self._insert_events, pending)

    def add_link(self, conn: sa.Connection, case_id: int, other_id: int, kind: str, actor: str,
                 at: datetime) -> None:
        conn.execute(case_links.insert().values(case_id=case_id, other_id=other_id, kind=kind,
                                                actor=actor, at=at))

    def add_attachment(self, conn: sa.Connection, **values: Any) -> int:
        return conn.execute(attachments.insert().values(**values).returning(attachments.c.id)).scalar_one()
