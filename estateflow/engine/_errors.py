"""The exception tree.

Every error estateflow raises derives from :class:`EstateflowError` and also from the builtin
that matches its kind, so callers may catch either (``except LookupError`` finds an unknown
case). Each exception builds its message from its arguments: raise sites pass facts, never
prose, which keeps messages consistent and makes them testable.

::

    EstateflowError
    ├── WorkflowError (ValueError)         invalid workflow YAML; .problems carry file:line:col
    ├── ConfigError (ValueError)           invalid estateflow.yaml; same shape as WorkflowError
    ├── ScenarioError (ValueError)         invalid simulation scenario; same shape as WorkflowError
    ├── ExpressionError (ValueError)       a condition/template that does not compile or render
    ├── NoticeParseError (ValueError)      a holiday notice line that cannot be read
    ├── DurationError (ValueError)         duration text such as '3 working days' that cannot be read
    ├── CaseNotFound (LookupError)
    ├── WorkflowNotFound (LookupError)
    ├── ActorNotFound (LookupError)
    ├── CalendarDataMissing (LookupError)  names the year and how to add an override
    ├── TransitionError (ValueError)
    │   ├── TriggerNotAllowed              not possible from the current state
    │   ├── RoleNotAllowed (PermissionError)
    │   ├── MissingFields                  every missing or invalid field, at once
    │   └── ConditionFailed
    ├── ActionError (RuntimeError)         a registered action raised; the step was rolled back
    ├── ConflictError (RuntimeError)       stale row_version; safe to retry
    ├── SchemaError (RuntimeError)         database missing, empty, older or newer than the code
    ├── StorageError (OSError)             the database refused the operation (disk full, read-only,
    │                                      unreachable); the transaction was rolled back
    ├── ClockError (ValueError)            e.g. extension without recorded consent
    ├── MigrationError (ValueError)        cases a migration cannot place; nothing was written
    └── DeliveryError (OSError)            notifier failure (kept in the outbox, never raised
                                           into a transition)
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date

__all__ = [
    "ActionError",
    "ActorNotFound",
    "CalendarDataMissing",
    "CaseNotFound",
    "ClockError",
    "ConditionFailed",
    "ConfigError",
    "ConflictError",
    "DeliveryError",
    "DurationError",
    "EstateflowError",
    "ExpressionError",
    "FieldProblem",
    "MigrationError",
    "MissingFields",
    "NoticeParseError",
    "Problem",
    "RoleNotAllowed",
    "ScenarioError",
    "SchemaError",
    "StorageError",
    "TransitionError",
    "TriggerNotAllowed",
    "WorkflowError",
    "WorkflowNotFound",
]


class EstateflowError(Exception):
    """Root of every error estateflow raises on purpose."""


@dataclass(frozen=True)
class Problem:
    """One finding in a file: where it is, what is wrong, and how to fix it."""

    file: str
    line: int  # 1-based
    column: int  # 1-based
    message: str
    hint: str = ""

    def __str__(self) -> str:
        text = f"{self.file}:{self.line}:{self.column}: {self.message}"
        return f"{text} (hint: {self.hint})" if self.hint else text


class _ProblemsError(EstateflowError, ValueError):
    """Shared shape of file-validation errors: a list of every problem found, not just the first."""

    kind = "file"

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = list(problems)
        lines = "\n".join(str(p) for p in self.problems)
        count = len(self.problems)
        super().__init__(f"{count} problem{'s' if count != 1 else ''} in {self.kind}:\n{lines}")


class WorkflowError(_ProblemsError):
    """A workflow file is not valid; every problem carries file, line, column and a hint."""

    kind = "workflow"


class ConfigError(_ProblemsError):
    """The estateflow.yaml configuration is not valid."""

    kind = "configuration"


class ScenarioError(_ProblemsError):
    """A simulation scenario file is not valid (or names workflows, triggers or states that do not exist)."""

    kind = "scenario"


class ExpressionError(EstateflowError, ValueError):
    """A sandboxed condition or template failed to compile, was refused, or failed to render."""

    def __init__(self, source: str, reason: str) -> None:
        self.source = source
        self.reason = reason
        super().__init__(f"expression {source!r}: {reason}")


class NoticeParseError(EstateflowError, ValueError):
    """A line of a State Council holiday notice could not be read unambiguously."""

    def __init__(self, line_no: int, line: str, reason: str) -> None:
        self.line_no = line_no
        self.line = line
        self.reason = reason
        super().__init__(f"line {line_no}: {reason}: {line.strip()!r}")


class DurationError(EstateflowError, ValueError):
    """A duration such as ``3 working days`` or ``8个工作小时`` could not be read."""

    FORMS = (
        "N working days", "N business hours", "N business minutes", "N days", "N hours",
        "N minutes", "N个工作日", "N个工作小时", "N天", "N小时", "N分钟",
    )

    def __init__(self, text: object, reason: str = "not a duration") -> None:
        self.text = text
        self.reason = reason
        super().__init__(
            f"{text!r}: {reason}; expected a whole number N >= 0 and one of: "
            f"{', '.join(self.FORMS)}"
        )


class CaseNotFound(EstateflowError, LookupError):
    """No case has the given id or number."""

    def __init__(self, key: object) -> None:
        self.key = key
        super().__init__(f"no case with id or number {key!r}")


class WorkflowNotFound(EstateflowError, LookupError):
    """No workflow (or revision) of that name is loaded."""

    def __init__(self, name: str, known: Iterable[str] = ()) -> None:
        self.name = name
        known = sorted(known)
        extra = f"; known: {', '.join(known)}" if known else ""
        super().__init__(f"no workflow {name!r}{extra}")


class ActorNotFound(EstateflowError, LookupError):
    """An actor id that the directory does not know."""

    def __init__(self, actor_id: str) -> None:
        self.actor_id = actor_id
        super().__init__(f"no actor {actor_id!r} in the directory")


class CalendarDataMissing(EstateflowError, LookupError):
    """The calendar has no holiday data for a date, and guessing would be wrong."""

    def __init__(self, calendar: str, day: date) -> None:
        self.calendar = calendar
        self.day = day
        self.year = day.year
        super().__init__(
            f"calendar {calendar!r} has no holiday data for {day.year} (asked about {day}); "
            f"load the official schedule with 'estateflow calendar import NOTICE.txt "
            f"--calendar {calendar}' or 'estateflow calendar load FILE.yaml'"
        )


class TransitionError(EstateflowError, ValueError):
    """A trigger was refused; nothing was written."""


class TriggerNotAllowed(TransitionError):
    """The trigger does not exist, or is not possible from the case's current state."""

    def __init__(self, case: str, trigger: str, state: str, allowed: Iterable[str] = ()) -> None:
        self.case = case
        self.trigger = trigger
        self.state = state
        self.allowed = sorted(allowed)
        options = ", ".join(self.allowed) or "none"
        super().__init__(
            f"case {case}: trigger {trigger!r} is not allowed in state {state!r} "
            f"(allowed: {options})"
        )


class RoleNotAllowed(TransitionError, PermissionError):
    """The actor lacks the role, community or department the step requires."""

    def __init__(self, actor: str, action: str, needed: Iterable[str], reason: str = "") -> None:
        self.actor = actor
        self.action = action
        self.needed = sorted(needed)
        why = f" ({reason})" if reason else ""
        super().__init__(
            f"actor {actor!r} may not {action}: needs one of roles {', '.join(self.needed)}{why}"
        )


@dataclass(frozen=True)
class FieldProblem:
    """One missing or invalid field."""

    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.field}: {self.message}"


class MissingFields(TransitionError):
    """Lists every missing or invalid field at once, so a form can mark them all."""

    def __init__(self, action: str, problems: Sequence[FieldProblem]) -> None:
        self.action = action
        self.problems = list(problems)
        self.fields = [p.field for p in self.problems]
        detail = "; ".join(str(p) for p in self.problems)
        super().__init__(f"{action}: {detail}")


class ConditionFailed(TransitionError):
    """Every candidate transition's ``when`` condition was false."""

    def __init__(self, case: str, trigger: str, conditions: Iterable[str]) -> None:
        self.case = case
        self.trigger = trigger
        self.conditions = list(conditions)
        detail = " / ".join(self.conditions)
        super().__init__(f"case {case}: trigger {trigger!r} refused: no condition held ({detail})")


class ActionError(EstateflowError, RuntimeError):
    """A registered action raised; the whole step was rolled back."""

    def __init__(self, action: str, error: BaseException) -> None:
        self.action = action
        self.error = error
        super().__init__(f"action {action!r} failed: {type(error).__name__}: {error}")


class ConflictError(EstateflowError, RuntimeError):
    """The case changed since it was read (stale row_version); re-read and retry."""

    def __init__(self, case: str, expected: int, actual: int | None) -> None:
        self.case = case
        self.expected = expected
        self.actual = actual
        super().__init__(
            f"case {case} was changed concurrently: expected version {expected}, found {actual}"
        )


class SchemaError(EstateflowError, RuntimeError):
    """The database is missing, empty, or at a schema version this code does not speak."""

    def __init__(self, where: str, reason: str) -> None:
        self.where = where
        self.reason = reason
        super().__init__(f"{where}: {reason}")


class StorageError(EstateflowError, OSError):
    """The database could not do what was asked: disk full, read-only file, server gone.

    Raised instead of the driver's error so that callers (and the command line) get one line
    naming the database; the transaction was rolled back, so a refused step wrote nothing.
    """

    def __init__(self, where: str, reason: str) -> None:
        self.where = where
        self.reason = reason
        super().__init__(f"{where}: {reason}")


class ClockError(EstateflowError, ValueError):
    """An SLA clock operation is not allowed (unknown clock, extension without consent, ...)."""

    def __init__(self, case: str, clock: str, reason: str) -> None:
        self.case = case
        self.clock = clock
        self.reason = reason
        super().__init__(f"case {case}, clock {clock!r}: {reason}")


class MigrationError(EstateflowError, ValueError):
    """A migration was refused before anything was written: ``cases`` lists (number, state) pairs
    that have no place in the target revision, ``reason`` says why."""

    def __init__(self, workflow: str, reason: str, cases: Sequence[tuple[str, str]] = ()) -> None:
        self.workflow = workflow
        self.reason = reason
        self.cases = list(cases)
        listed = ", ".join(f"{number} ({state})" for number, state in self.cases[:20])
        more = f" and {len(self.cases) - 20} more" if len(self.cases) > 20 else ""
        super().__init__(f"migration of {workflow} refused: {reason}" + (f": {listed}{more}" if listed else ""))


class DeliveryError(EstateflowError, OSError):
    """A notifier could not deliver a message; the outbox keeps it and retries."""

    def __init__(self, channel: str, reason: str, *, retryable: bool = True) -> None:
        self.channel = channel
        self.reason = reason
        self.retryable = retryable
        super().__init__(f"{channel}: {reason}")
