"""estateflow: workflow engine for property complaint, repair, move-in and renovation cases.

Names are imported lazily (PEP 562) from :mod:`estateflow.engine`, so ``estateflow --help``
and other light uses do not pay for SQLAlchemy, pydantic and Jinja2 at start-up.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = [
    "ActionContext",
    "ActionError",
    "Actor",
    "ActorNotFound",
    "Attachment",
    "BusinessCalendar",
    "CalendarDataMissing",
    "Case",
    "CaseNotFound",
    "ClockError",
    "ClockStatus",
    "ConditionFailed",
    "ConfigError",
    "ConflictError",
    "Delegation",
    "DeliveryError",
    "Directory",
    "Duration",
    "DurationError",
    "Engine",
    "EstateflowError",
    "Event",
    "ExpressionError",
    "FieldProblem",
    "HOOK_EVENTS",
    "HolidayNotice",
    "ImportProblem",
    "ImportReport",
    "Link",
    "MigrationError",
    "MigrationPlan",
    "MissingFields",
    "NoticeParseError",
    "Problem",
    "PurgeReport",
    "RevisionInfo",
    "RoleNotAllowed",
    "SYSTEM",
    "ScenarioError",
    "SchemaError",
    "SimulationResult",
    "StaticDirectory",
    "StorageError",
    "TickResult",
    "TransitionError",
    "TriggerNotAllowed",
    "WorkflowDiff",
    "WorkflowError",
    "WorkflowNotFound",
    "WorkflowSpec",
    "YamlDirectory",
    "load_scenario",
    "load_workflow",
    "load_workflow_file",
    "parse_notice",
    "simulate",
    "__version__",
]

if TYPE_CHECKING:  # pragma: no cover
    from .engine import *  # noqa: F403


def __getattr__(name: str) -> Any:
    if name in __all__:
        from . import engine

        value = getattr(engine, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'estateflow' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
