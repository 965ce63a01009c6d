"""The shape every report is rendered from: titled sections of typed columns, plus one chart.

Why one neutral shape: the rich table, CSV, XLSX, HTML and the plain-text mail body must show
the same figures; each renderer only decides how a typed cell looks (a rate as ``85.7%`` in
text, as a percentage-formatted number in a spreadsheet).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

__all__ = ["Chart", "Column", "Section", "format_cell"]


@dataclass(frozen=True)
class Column:
    """``kind``: text, int, rate (0..1), hours, number, time (aware datetime), date."""

    title: str
    kind: str = "text"


@dataclass
class Section:
    title: str
    columns: Sequence[Column]
    rows: list[Sequence[Any]] = field(default_factory=list)
    note: str = ""


@dataclass(frozen=True)
class Chart:
    """A small bar chart: one group of bars per label, one bar per series."""

    title: str
    labels: Sequence[str]
    series: Sequence[tuple[str, Sequence[float]]]
    percent: bool = False


def format_cell(value: Any, kind: str, zone: str | None = None) -> str:
    """A cell as people read it in text (tables, CSV, mail)."""
    if value is None:
        return ""
    if kind == "rate":
        return f"{float(value) * 100:.1f}%"
    if kind in ("hours", "number"):
        return f"{float(value):.1f}"
    if kind == "int":
        return str(int(value))
    if isinstance(value, datetime):
        local = value.astimezone(ZoneInfo(zone)) if zone else value
        return local.strftime("%Y-%m-%d %H:%M")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, timedelta):
        return f"{value.total_seconds() / 86400:.1f}"
    if isinstance(value, bool):
        return "✓" if value else ""
    return str(value)
