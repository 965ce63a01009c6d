"""The engine: workflow specs, calendar, state machine, storage, clocks and timers.

Implementation lives in private modules; this package re-exports the public names.
"""

from ._calendar import BusinessCalendar
from ._diff import WorkflowDiff
from ._directory import Directory, StaticDirectory, YamlDirectory
from ._engine import HOOK_EVENTS, ActionContext, Engine
from ._migrate import MigrationPlan
from ._errors import *  # noqa: F403
from ._errors import __all__ as _errors_all
from ._durations import Duration
from ._import import ImportProblem, ImportReport
from ._notice import HolidayNotice, parse_notice
from ._purge import PurgeReport
from ._scenario import load_scenario
from ._simulate import SimulationResult, simulate
from ._spec import WorkflowSpec
from ._timers import TickResult
from ._types import SYSTEM, Actor, Attachment, Case, ClockStatus, Delegation, Event, Link
from ._validate import load_workflow, load_workflow_file
from ._versions import RevisionInfo

__all__ = [
    *_errors_all,
    "HOOK_EVENTS",
    "SYSTEM",
    "ActionContext",
    "Actor",
    "Attachment",
    "BusinessCalendar",
    "Case",
    "ClockStatus",
    "Delegation",
    "Directory",
    "Duration",
    "Engine",
    "Event",
    "HolidayNotice",
    "ImportProblem",
    "ImportReport",
    "Link",
    "PurgeReport",
    "MigrationPlan",
    "RevisionInfo",
    "SimulationResult",
    "StaticDirectory",
    "TickResult",
    "WorkflowDiff",
    "WorkflowSpec",
    "YamlDirectory",
    "load_scenario",
    "load_workflow",
    "load_workflow_file",
    "parse_notice",
    "simulate",
]
