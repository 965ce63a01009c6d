"""Workflow files → validated, immutable specs.

The schema is pydantic (``extra="forbid"`` so a misspelt key is an error, not a silently
ignored option); the rules that span the whole file — unknown states, unreachable states,
shadowed transitions, band gaps — are checked in :mod:`._validate`. Parsing never raises on
the first problem: every problem of a file is collected and reported at once.
"""

from __future__ import annotations

import hashlib
import json
import re
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator

__all__ = [
    "BandTableSpec",
    "ClockSpec",
    "EscalationStep",
    "FieldSpec",
    "Label",
    "NotifySpec",
    "RoleSpec",
    "SpawnSpec",
    "StateSpec",
    "TransitionSpec",
    "WarrantySpec",
    "WorkflowSpec",
]

NAME = r"^[a-z][a-z0-9_]*$"
FIELD_TYPES = ("str", "int", "decimal", "bool", "date", "datetime", "enum", "list")
RESERVED_NAMES = {"case", "actor", "band", "state", "now", "in_warranty", "trigger", "data"}


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)


def _label(value: Any) -> Any:
    if isinstance(value, str):
        return {"zh": value, "en": value}
    return value


class Label(_Model):
    """A zh/en pair; a plain string is used for both."""

    zh: str
    en: str

    def get(self, language: str) -> str:
        return self.en if language == "en" else self.zh


LabelField = Annotated[Label | None, BeforeValidator(_label)]


def _as_list(value: Any) -> Any:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    return value


StrList = Annotated[list[str], BeforeValidator(_as_list)]


class FieldSpec(_Model):
    """A typed case field; ``personal`` marks names, phone numbers and addresses."""

    type: Literal["str", "int", "decimal", "bool", "date", "datetime", "enum", "list"] = "str"
    label: LabelField = None
    description: str = ""
    required: bool = False
    default: Any = None
    values: list[str] | None = None
    items: Literal["str", "int", "decimal"] = "str"
    min: Decimal | None = None
    max: Decimal | None = None
    pattern: str | None = None
    max_length: int | None = Field(default=None, ge=1)
    personal: bool = False


class RoleSpec(_Model):
    """A role; a scoped role must match the case's community or department."""

    label: LabelField = None
    scope: Literal["global", "community", "department"] = "global"


class StateSpec(_Model):
    label: LabelField = None
    description: str = ""
    initial: bool = False
    final: bool = False
    on_enter: StrList = Field(default_factory=list)


class SpawnSpec(_Model):
    """Open a linked case in another workflow, e.g. one repair case per handover defect."""

    workflow: str
    data: dict[str, Any] = Field(default_factory=dict)
    each: str | None = None  # a list field: one case per item, bound as ``item``
    link: str = "spawned_from"


class TransitionSpec(_Model):
    trigger: str = Field(pattern=NAME)
    source: StrList
    dest: str | None = None
    label: LabelField = None
    roles: StrList = Field(default_factory=list)
    requires: StrList = Field(default_factory=list)
    accepts: StrList = Field(default_factory=list)  # fields this step may change besides requires
    when: str | None = None
    set: dict[str, Any] = Field(default_factory=dict)
    defaults: dict[str, Any] = Field(default_factory=dict)
    actions: StrList = Field(default_factory=list)
    spawn: SpawnSpec | None = None
    consent: str | None = None  # a field that must record who agreed (e.g. the customer)


class Bound(_Model):
    name: str = Field(pattern=NAME)
    range: str
    label: LabelField = None
    roles: StrList = Field(default_factory=list)


class BandTableSpec(_Model):
    """A table of money bands over one decimal field, checked for gaps and overlaps."""

    field: str
    label: LabelField = None
    bands: list[Bound]


class WarrantySpec(_Model):
    """Statutory warranty periods: component → years from the handover date."""

    component_field: str
    handover_field: str
    years: dict[str, int | None]  # None: for the design life of the building


class EscalationStep(_Model):
    after: str = "0 minutes"
    notify: StrList = Field(default_factory=list)
    reassign_to: str | None = None
    priority: Literal["low", "normal", "high", "urgent"] | None = None
    fire: str | None = None
    mark_major: bool = False
    template: str | None = None


class ClockSpec(_Model):
    """An SLA clock: when it runs, its target, warnings and the ladder after breach."""

    label: LabelField = None
    target: str
    calendar: str | None = None
    calendar_field: str | None = None
    start: StrList = Field(default_factory=list)  # "enter:state", "leave:state", "trigger:name"
    stop: StrList = Field(default_factory=list)
    pause: StrList = Field(default_factory=list)
    resume: StrList = Field(default_factory=list)
    warn: StrList = Field(default_factory=list)  # "75%", "4 business hours before"
    warn_outside_hours: Literal["defer", "send"] = "defer"
    breach: bool = True
    escalate: list[EscalationStep] = Field(default_factory=list)
    extension_requires: str | None = None  # e.g. "customer": approved_by must name them
    restart_on: StrList = Field(default_factory=list)
    soft: bool = False  # warn only, e.g. the 7-day resolution target
    assumption: bool = False


class NotifySpec(_Model):
    """A notice sent on an event (opened, transition, warning, breach, escalation, closed)."""

    event: str
    trigger: StrList = Field(default_factory=list)
    clock: StrList = Field(default_factory=list)
    to: StrList
    channel: str = "log"
    template: str
    when: str | None = None


class WorkflowSpec(_Model):
    """One parsed workflow file."""

    name: str = Field(pattern=NAME)
    version: str
    title: LabelField = None
    description: str = ""
    number: str
    calendar: str = "cn"
    dimensions: StrList = Field(default_factory=lambda: ["category", "department"])
    fields: dict[str, FieldSpec] = Field(default_factory=dict)
    roles: dict[str, RoleSpec | None] = Field(default_factory=dict)
    states: dict[str, StateSpec | None]
    transitions: list[TransitionSpec]
    bands: dict[str, BandTableSpec] = Field(default_factory=dict)
    warranty: WarrantySpec | None = None
    clocks: dict[str, ClockSpec] = Field(default_factory=dict)
    notify: list[NotifySpec] = Field(default_factory=list)
    templates: dict[str, dict[str, str]] = Field(default_factory=dict)
    personal_data_roles: StrList = Field(default_factory=lambda: ["cs_clerk", "records_clerk", "cs_manager"])

    @field_validator("version", mode="before")
    @classmethod
    def _version_text(cls, value: Any) -> Any:
        return str(value) if isinstance(value, (int, Decimal)) else value

    # -- derived views -------------------------------------------------------------------
    def state(self, name: str) -> StateSpec:
        return self.states[name] or StateSpec()

    def role(self, name: str) -> RoleSpec:
        return self.roles[name] or RoleSpec()

    @property
    def initial_state(self) -> str:
        return next(name for name in self.states if self.state(name).initial)

    @property
    def final_states(self) -> frozenset[str]:
        return frozenset(name for name in self.states if self.state(name).final)

    def sources(self, transition: TransitionSpec) -> list[str]:
        """Expand ``*``: every state that is not final (final states have no exits)."""
        if transition.source == ["*"]:
            return [s for s in self.states if not self.state(s).final]
        return list(transition.source)

    def canonical_json(self) -> str:
        return json.dumps(self.model_dump(mode="json"), sort_keys=True, ensure_ascii=False,
                          separators=(",", ":"))

    def digest(self) -> str:
        return hashlib.sha256(self.canonical_json().encode()).hexdigest()

    def variables(self) -> set[str]:
        """Names a condition may read: every field plus the reserved context names."""
        return set(self.fields) | RESERVED_NAMES

    def number_prefix_fields(self) -> set[str]:
        return set(re.findall(r"\{(\w+)", self.number)) - {"year", "month", "seq"}
