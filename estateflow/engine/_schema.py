"""Tables (SQLAlchemy Core). The store knows nothing about YAML; it holds rows.

All times are stored in UTC through :class:`UTCDateTime`, because SQLite hands
``DateTime(timezone=True)`` values back naive and a naive time in a deadline engine is a bug
waiting for a server in another zone.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import sqlalchemy as sa
import sqlalchemy.dialects.postgresql
from sqlalchemy.types import TypeDecorator

__all__ = ["SCHEMA_REVISION", "UTCDateTime", "metadata"]

# Alembic head this code speaks; bump together with a new migration.
SCHEMA_REVISION = "0003"

metadata = sa.MetaData()


class UTCDateTime(TypeDecorator[datetime]):
    """Aware datetimes in, aware UTC datetimes out, on every backend."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r} given to the database; pass an aware one")
        value = value.astimezone(timezone.utc)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=timezone.utc)
        return value.astimezone(timezone.utc)


Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
JSON = sa.JSON().with_variant(sa.dialects.postgresql.JSONB(), "postgresql")

workflow_versions = sa.Table(
    "workflow_versions", metadata,
    sa.Column("id", Id, primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(100), nullable=False),
    sa.Column("revision", sa.Integer, nullable=False),
    sa.Column("version_label", sa.String(100), nullable=False),
    sa.Column("digest", sa.String(64), nullable=False),
    sa.Column("source", sa.Text, nullable=False),
    sa.Column("path", sa.Text),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.UniqueConstraint("name", "revision", name="uq_workflow_revision"),
    sa.UniqueConstraint("name", "digest", name="uq_workflow_digest"),
)

cases = sa.Table(
    "cases", metadata,
    sa.Column("id", Id, primary_key=True, autoincrement=True),
    sa.Column("number", sa.String(64), nullable=False, unique=True),
    sa.Column("workflow", sa.String(100), nullable=False),
    sa.Column("revision", sa.Integer, nullable=False),
    sa.Column("state", sa.String(100), nullable=False),
    sa.Column("community", sa.String(100)),
    sa.Column("building", sa.String(100)),
    sa.Column("unit", sa.String(100)),
    sa.Column("category", sa.String(100)),
    sa.Column("department", sa.String(100)),
    sa.Column("assignee", sa.String(100)),
    sa.Column("priority", sa.String(20), nullable=False, server_default="normal"),
    sa.Column("major", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("data", JSON, nullable=False),
    sa.Column("search_text", sa.Text, nullable=False, server_default=""),
    sa.Column("received_at", UTCDateTime, nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
    sa.Column("closed_at", UTCDateTime),
    sa.Column("voided", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("row_version", sa.Integer, nullable=False),
    sa.Index("ix_cases_workflow_state", "workflow", "state"),
    sa.Index("ix_cases_community", "community", "building", "unit"),
    sa.Index("ix_cases_assignee", "assignee"),
    sa.Index("ix_cases_department", "department"),
    sa.Index("ix_cases_category", "category"),
    sa.Index("ix_cases_created_at", "created_at"),
    sa.Index("ix_cases_closed_at", "closed_at"),
    sa.Index("ix_cases_received_at", "received_at"),
)

case_events = sa.Table(
    "case_events", metadata,
    sa.Column("id", Id, primary_key=True, autoincrement=True),
    sa.Column("case_id", Id, sa.ForeignKey("cases.id"), nullable=False),
    sa.Column("kind", sa.String(30), nullable=False),
    sa.Column("trigger", sa.String(100)),
    sa.Column("from_state", sa.String(100)),
    sa.Column("to_state", sa.String(100)),
    sa.Column("actor", sa.String(100), nullable=False),
    sa.Column("on_behalf_of", sa.String(100)),
    sa.Column("data", JSON, nullable=False),
    sa.Column("at", UTCDateTime, nullable=False),
    sa.Index("ix_case_events_case", "case_id", "id"),
    sa.Index("ix_case_events_kind_at", "kind", "at"),
)

case_links = sa.Table(
    "case_links", metadata,
    sa.Column("id", Id, primary_key=True, autoincrement=True),
    sa.Column("case_id", Id, sa.ForeignKey("cases.id"), nullable=False),
    sa.Column("other_id", Id, sa.ForeignKey("cases.id"), nullable=False),
    sa.Column("kind", sa.String(30), nullable=False),
    sa.Column("actor", sa.String(100), nullable=False),
    sa.Column("at", UTCDateTime, nullable=False),
    sa.UniqueConstraint("case_id", "other_id", "kind", name="uq_case_link"),
    sa.Index("ix_case_links_other", "other_id"),
)

attachments = sa.Table(
    "attachments", metadata,
    sa.Column("id", Id, primary_key=True, autoincrement=True),
    sa.Column("case_id", Id, sa.ForeignKey("cases.id"), nullable=False),
    sa.Column("event_id", Id, sa.ForeignKey("case_events.id")),
    sa.Column("name", sa.String(255), nullable=False),
    sa.Column("media_type", sa.String(100), nullable=False),
    sa.Column("sha256", sa.String(64), nullable=False),
    sa.Column("size", sa.BigInteger),
    sa.Column("uri", sa.Text, nullable=False),
    sa.Column("actor", sa.String(100), nullable=False),
    sa.Column("at", UTCDateTime, nullable=False),
    sa.Index("ix_attachments_case", "case_id"),
)

sequences = sa.Table(
    "sequences", metadata,
    sa.Column("key", sa.String(200), primary_key=True),
    sa.Column("value", sa.BigInteger, nullable=False),
)

delegations = sa.Table(
    "delegations", metadata,
    sa.Column("id", Id, primary_key=True, autoincrement=True),
    sa.Column("deputy", sa.String(100), nullable=False),
    sa.Column("principal", sa.String(100), nullable=False),
    sa.Column("starts_at", UTCDateTime, nullable=False),
    sa.Column("ends_at", UTCDateTime, nullable=False),
    sa.Column("created_by", sa.String(100), nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("revoked", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Index("ix_delegations_deputy", "deputy", "starts_at"),
)

sla_clocks = sa.Table(
    "sla_clocks", metadata,
    sa.Column("id", Id, primary_key=True, autoincrement=True),
    sa.Column("case_id", Id, sa.ForeignKey("cases.id"), nullable=False),
    sa.Column("name", sa.String(100), nullable=False),
    sa.Column("cycle", sa.Integer, nullable=False),
    sa.Column("status", sa.String(20), nullable=False),  # running/paused/stopped/awaiting_calendar
    sa.Column("target", sa.String(100), nullable=False),
    sa.Column("calendar", sa.String(100), nullable=False),
    sa.Column("started_at", UTCDateTime, nullable=False),
    sa.Column("due_at", UTCDateTime),
    sa.Column("paused_at", UTCDateTime),
    sa.Column("stopped_at", UTCDateTime),
    sa.Column("breached_at", UTCDateTime),
    sa.Column("escalation_level", sa.Integer, nullable=False, server_default="0"),
    sa.Column("extensions", sa.Integer, nullable=False, server_default="0"),
    sa.Column("data", JSON, nullable=False),
    sa.UniqueConstraint("case_id", "name", "cycle", name="uq_clock_cycle"),
    sa.Index("ix_sla_clocks_status_due", "status", "due_at"),
    sa.Index("ix_sla_clocks_name_started", "name", "started_at"),
    sa.Index("ix_sla_clocks_started", "started_at"),
    sa.Index("ix_sla_clocks_stopped", "stopped_at"),
)

timers = sa.Table(
    "timers", metadata,
    sa.Column("id", Id, primary_key=True, autoincrement=True),
    sa.Column("case_id", Id, sa.ForeignKey("cases.id")),
    sa.Column("clock_id", Id, sa.ForeignKey("sla_clocks.id")),
    sa.Column("kind", sa.String(30), nullable=False),  # warn/breach/escalate/report/calendar
    sa.Column("step", sa.Integer, nullable=False, server_default="0"),
    sa.Column("due_at", UTCDateTime, nullable=False),
    sa.Column("status", sa.String(20), nullable=False),  # pending/fired/cancelled/parked
    sa.Column("claimed_by", sa.String(100)),
    sa.Column("lease_until", UTCDateTime),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("last_error", sa.Text),
    sa.Column("payload", JSON, nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("fired_at", UTCDateTime),
    sa.Index("ix_timers_status_due", "status", "due_at"),
    sa.Index("ix_timers_case", "case_id"),
)

outbox = sa.Table(
    "outbox", metadata,
    sa.Column("id", Id, primary_key=True, autoincrement=True),
    sa.Column("case_id", Id, sa.ForeignKey("cases.id")),
    sa.Column("event", sa.String(30), nullable=False),
    sa.Column("channel", sa.String(100), nullable=False),
    sa.Column("recipient", sa.String(255), nullable=False),
    sa.Column("language", sa.String(5), nullable=False, server_default="zh"),
    sa.Column("subject", sa.Text, nullable=False),
    sa.Column("body", sa.Text, nullable=False),
    sa.Column("html", sa.Text),
    sa.Column("payload", JSON, nullable=False),
    sa.Column("idempotency_key", sa.String(200), nullable=False, unique=True),
    sa.Column("status", sa.String(20), nullable=False),  # pending/sent/dead/held
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("next_attempt_at", UTCDateTime, nullable=False),
    sa.Column("claimed_by", sa.String(100)),
    sa.Column("lease_until", UTCDateTime),
    sa.Column("last_error", sa.Text),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("sent_at", UTCDateTime),
    # Rows with the same digest key that are due together go out as one message.
    sa.Column("digest_key", sa.String(200)),
    # Attempts whose outcome is unknown (lease expired mid-send): possible repeats at receivers.
    sa.Column("uncertain_sends", sa.Integer, nullable=False, server_default="0"),
    sa.Index("ix_outbox_status_next", "status", "next_attempt_at"),
)

calendar_overrides = sa.Table(
    "calendar_overrides", metadata,
    sa.Column("calendar", sa.String(100), primary_key=True),
    sa.Column("day", sa.Date, primary_key=True),
    sa.Column("working", sa.Boolean, nullable=False),
    sa.Column("note", sa.Text, nullable=False, server_default=""),
    sa.Column("source", sa.String(100), nullable=False, server_default="admin"),
    sa.Column("created_at", UTCDateTime, nullable=False),
)

calendar_years = sa.Table(
    "calendar_years", metadata,
    sa.Column("calendar", sa.String(100), primary_key=True),
    sa.Column("year", sa.Integer, primary_key=True),
    sa.Column("source", sa.String(100), nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
)

heartbeats = sa.Table(
    "heartbeats", metadata,
    sa.Column("worker", sa.String(200), primary_key=True),
    sa.Column("started_at", UTCDateTime, nullable=False),
    sa.Column("last_tick_at", UTCDateTime, nullable=False),
    sa.Column("info", JSON, nullable=False),
)

rate_windows = sa.Table(
    "rate_windows", metadata,
    sa.Column("key", sa.String(200), primary_key=True),
    sa.Column("window_start", UTCDateTime, nullable=False),
    sa.Column("count", sa.Integer, nullable=False),
)
