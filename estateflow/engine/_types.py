"""Plain values returned by the engine: frozen dataclasses, never live ORM objects.

Why frozen: a caller holding a Case must not believe it changed the database by setting an
attribute; every change goes through an Engine method that writes history.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType
from typing import Any

__all__ = ["Actor", "Attachment", "Case", "ClockStatus", "Delegation", "Event", "Link", "SYSTEM"]


@dataclass(frozen=True)
class Actor:
    """Someone who acts on cases: roles, and the communities and departments they serve.

    Empty ``communities`` means every community (head-office staff); a role listed in a
    workflow with ``scope: community`` or ``scope: department`` must also match the case.
    """

    id: str
    roles: frozenset[str] = frozenset()
    communities: frozenset[str] = frozenset()
    departments: frozenset[str] = frozenset()
    name: str = ""
    email: str | None = None
    phone: str | None = None
    language: str | None = None  # "zh" or "en" for notifications; None = the configured default

    def __post_init__(self) -> None:
        for attr in ("roles", "communities", "departments"):
            value = getattr(self, attr)
            if not isinstance(value, frozenset):
                object.__setattr__(self, attr, frozenset([value] if isinstance(value, str) else value))

    def serves(self, community: str | None) -> bool:
        return not self.communities or community is None or community in self.communities


SYSTEM = Actor("system", frozenset({"system"}))


def _frozen(data: Mapping[str, Any]) -> Mapping[str, Any]:
    return MappingProxyType(dict(data))


@dataclass(frozen=True)
class Case:
    id: int
    number: str
    workflow: str
    revision: int
    state: str
    community: str | None
    building: str | None
    unit: str | None
    category: str | None
    department: str | None
    assignee: str | None
    priority: str
    major: bool
    data: Mapping[str, Any]
    received_at: datetime
    created_at: datetime
    updated_at: datetime
    closed_at: datetime | None
    voided: bool
    version: int

    @property
    def workflow_revision(self) -> str:
        return f"{self.workflow}@r{self.revision}"

    @property
    def is_open(self) -> bool:
        return self.closed_at is None and not self.voided


@dataclass(frozen=True)
class Event:
    id: int
    case_id: int
    kind: str
    trigger: str | None
    from_state: str | None
    to_state: str | None
    actor: str
    on_behalf_of: str | None
    data: Mapping[str, Any]
    at: datetime

    @property
    def actor_display(self) -> str:
        return f"{self.actor} for {self.on_behalf_of}" if self.on_behalf_of else self.actor


@dataclass(frozen=True)
class Link:
    case_id: int
    other_id: int
    kind: str
    actor: str
    at: datetime


@dataclass(frozen=True)
class Attachment:
    id: int
    case_id: int
    event_id: int | None
    name: str
    media_type: str
    sha256: str
    size: int | None
    uri: str
    actor: str
    at: datetime


@dataclass(frozen=True)
class Delegation:
    id: int
    deputy: str
    principal: str
    starts_at: datetime
    ends_at: datetime
    created_by: str


@dataclass(frozen=True)
class ClockStatus:
    """An SLA clock as a person reads it; durations are real time (timedelta) unless named."""

    case_id: int
    name: str
    cycle: int
    status: str
    target: str
    calendar: str
    started_at: datetime
    due_at: datetime | None
    breached_at: datetime | None
    stopped_at: datetime | None
    escalation_level: int
    elapsed: Any = None
    remaining: Any = None
    breached: bool = False
    extra: Mapping[str, Any] = field(default_factory=dict)
