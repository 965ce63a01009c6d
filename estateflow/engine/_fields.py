"""Typed case data: checking values against field specs and converting to and from JSON.

Why explicit conversion: money must stay :class:`~decimal.Decimal` end to end (a float would
put 1000.0000001 in the wrong approval band), and JSON has no Decimal or date, so values are
stored as text and turned back into their types on every read.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from ._errors import FieldProblem
from ._spec import FieldSpec

__all__ = ["coerce_value", "from_json", "text_problem", "to_json", "validate_data"]

_SURROGATE = re.compile("[\ud800-\udfff]")


def text_problem(value: str) -> str | None:
    """Why ``value`` cannot be stored as text on every backend, or None.

    PostgreSQL refuses NUL characters and unpaired surrogates (not valid UTF-8) that SQLite
    would store, so they are refused here, the same way on both, as a field problem.
    """
    if "\x00" in value:
        return "contains a NUL character (\\x00)"
    if _SURROGATE.search(value):
        return "contains an unpaired surrogate (not valid Unicode text)"
    return None


def _scalar(kind: str, value: Any) -> Any:
    if kind == "str":
        if not isinstance(value, str):
            if isinstance(value, (int, Decimal)) and not isinstance(value, bool):
                return str(value)
            raise ValueError(f"expected text, got {type(value).__name__}")
        problem = text_problem(value)
        if problem:
            raise ValueError(problem)
        return value
    if kind == "int":
        if isinstance(value, bool):
            raise ValueError("expected a whole number, got a boolean")
        if isinstance(value, int):
            return value
        if isinstance(value, (str, Decimal)) and re.fullmatch(r"[-+]?\d+", str(value).strip()):
            return int(str(value).strip())
        raise ValueError(f"expected a whole number, got {value!r}")
    if kind == "decimal":
        if isinstance(value, bool):
            raise ValueError("expected an amount, got a boolean")
        try:
            result = Decimal(str(value).strip().replace(",", "")) if not isinstance(value, Decimal) else value
        except InvalidOperation:
            raise ValueError(f"expected an amount, got {value!r}") from None
        if not result.is_finite():
            raise ValueError(f"expected a finite amount, got {value!r}")
        return result
    raise AssertionError(kind)  # pragma: no cover


def coerce_value(name: str, field: FieldSpec, value: Any) -> Any:
    """Return ``value`` converted to the field's Python type, or raise ValueError saying why."""
    if value is None:
        return None
    kind = field.type
    if kind in ("str", "int", "decimal"):
        result = _scalar(kind, value)
    elif kind == "bool":
        if isinstance(value, bool):
            result = value
        elif isinstance(value, str) and value.lower() in ("true", "false"):
            result = value.lower() == "true"
        else:
            raise ValueError(f"expected true or false, got {value!r}")
    elif kind == "enum":
        if value not in (field.values or []):
            raise ValueError(f"{value!r} is not one of {', '.join(field.values or [])}")
        result = value
    elif kind == "date":
        if isinstance(value, datetime):
            raise ValueError("expected a date, got a date and time")
        if isinstance(value, date):
            result = value
        else:
            try:
                result = date.fromisoformat(str(value))
            except ValueError:
                raise ValueError(f"expected a date like 2025-09-26, got {value!r}") from None
    elif kind == "datetime":
        if isinstance(value, datetime):
            result = value
        else:
            try:
                result = datetime.fromisoformat(str(value))
            except ValueError:
                raise ValueError(f"expected a date and time like 2025-09-26T10:00+08:00, got {value!r}") from None
        if result.tzinfo is None:
            raise ValueError("a date and time needs a UTC offset, e.g. 2025-09-26T10:00+08:00")
    elif kind == "list":
        if not isinstance(value, (list, tuple)):
            raise ValueError(f"expected a list, got {type(value).__name__}")
        result = [_scalar(field.items, item) for item in value]
    else:  # pragma: no cover
        raise AssertionError(kind)
    _check_limits(field, result)
    return result


def _check_limits(field: FieldSpec, value: Any) -> None:
    if field.type in ("int", "decimal"):
        if field.min is not None and value < field.min:
            raise ValueError(f"must be at least {field.min}")
        if field.max is not None and value > field.max:
            raise ValueError(f"must be at most {field.max}")
    if field.type == "str":
        if field.max_length is not None and len(value) > field.max_length:
            raise ValueError(f"longer than {field.max_length} characters")
        if field.pattern is not None and not re.fullmatch(field.pattern, value):
            raise ValueError(f"does not match the pattern {field.pattern}")
    if field.type == "list" and field.max_length is not None and len(value) > field.max_length:
        raise ValueError(f"more than {field.max_length} items")


def validate_data(fields: Mapping[str, FieldSpec], data: Mapping[str, Any]) -> tuple[dict[str, Any], list[FieldProblem]]:
    """Convert every given value; unknown names and bad values are all reported together."""
    clean: dict[str, Any] = {}
    problems: list[FieldProblem] = []
    for name, value in data.items():
        field = fields.get(name)
        if field is None:
            problems.append(FieldProblem(name, "not a field of this workflow"))
            continue
        try:
            clean[name] = coerce_value(name, field, value)
        except ValueError as exc:
            problems.append(FieldProblem(name, str(exc)))
            continue
        limit = column_limit(name)
        if limit is not None and clean[name] is not None and len(str(clean[name])) > limit:
            # PostgreSQL refuses what does not fit the indexed column; SQLite would store it
            problems.append(FieldProblem(name, f"longer than {limit} characters"))
    return clean, problems


def column_limit(name: str) -> int | None:
    """The length of the ``cases`` column a field of this name also fills, if any."""
    from ._schema import cases

    if name not in ("community", "building", "unit", "category", "department", "assignee", "priority"):
        return None
    return cases.c[name].type.length


def is_missing(value: Any) -> bool:
    return value is None or value == "" or value == []


def to_json(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, (date, datetime)):
        return value.isoformat()
    if isinstance(value, (list, tuple)):
        return [to_json(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): to_json(v) for k, v in value.items()}
    return value


def from_json(fields: Mapping[str, FieldSpec], data: Mapping[str, Any]) -> dict[str, Any]:
    """Stored JSON back to typed values; unknown keys (from older revisions) pass through."""
    result: dict[str, Any] = {}
    for name, value in data.items():
        field = fields.get(name)
        if field is None or value is None:
            result[name] = value
            continue
        try:
            result[name] = coerce_value(name, field, value)
        except ValueError:
            result[name] = value
    return result
