"""SQL pieces every report shares: the case filter, JSON reads, durations and percentiles.

Why here and not in each report: the same scope (community, department, workflow, the
actor's communities, never voided cases) must mean the same rows in every figure of a report,
and the two backends spell JSON access, time differences and percentiles differently.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.expression import ColumnElement

from ..engine._schema import case_events, cases, sla_clocks

__all__ = ["Scope", "breach_recorded", "clock_met", "json_int", "json_text", "no_index", "percentiles",
           "seconds_between"]


class no_index(ColumnElement[Any]):  # noqa: N801 - reads as a function at the call site
    """A column the SQLite planner must not pick an index for (rendered ``+column`` there).

    Why: SQLite's planner has no range statistics, so for ``closed_at >= :t AND received_at < :t``
    it may walk the ``received_at`` index over nearly every case instead of the few rows closed
    after ``:t``. PostgreSQL estimates ranges itself and gets the plain column.
    """

    inherit_cache = True

    def __init__(self, column: Any) -> None:
        self.column = column
        self.type = column.type


@compiles(no_index)
def _plain(element: no_index, compiler: Any, **kw: Any) -> str:
    return str(compiler.process(element.column, **kw))


@compiles(no_index, "sqlite")
def _unary_plus(element: no_index, compiler: Any, **kw: Any) -> str:
    return "+" + str(compiler.process(element.column, **kw))


@dataclass(frozen=True)
class Scope:
    """Which cases a report counts. ``communities`` is the reading actor's (None: all)."""

    community: str | None = None
    department: str | None = None
    workflow: str | None = None
    communities: frozenset[str] | None = None

    def clauses(self) -> list[Any]:
        found: list[Any] = [cases.c.voided.is_(False)]
        if self.community is not None:
            found.append(cases.c.community == self.community)
        if self.department is not None:
            found.append(cases.c.department == self.department)
        if self.workflow is not None:
            found.append(cases.c.workflow == self.workflow)
        if self.communities is not None:
            found.append(cases.c.community.in_(sorted(self.communities)))
        return found

    def to_dict(self) -> dict[str, Any]:
        return {"community": self.community, "department": self.department, "workflow": self.workflow}


def json_text(column: Any, key: str) -> Any:
    return column[key].as_string()


def json_int(column: Any, key: str) -> Any:
    return column[key].as_integer()


def seconds_between(dialect: str, start: Any, end: Any) -> Any:
    """``end - start`` in seconds, computed by the database (SQLite's julianday keeps about a
    millisecond, so its result is rounded to the second)."""
    if dialect == "postgresql":
        return sa.extract("epoch", end - start)
    return sa.func.round((sa.func.julianday(end) - sa.func.julianday(start)) * 86400.0)


def breach_recorded(clock: Any = sla_clocks) -> Any:
    """A ``clock_breach`` event exists for this clock cycle in the case's history.

    Needed because an extension granted after a breach clears ``breached_at`` (DESIGN-NOTES):
    history is the only record that the deadline was once missed.
    """
    e = case_events.alias("breach_event")
    return sa.exists().where(e.c.case_id == clock.c.case_id, e.c.kind == "clock_breach",
                             json_text(e.c.data, "clock") == clock.c.name,
                             json_int(e.c.data, "cycle") == clock.c.cycle)


def ever_breached(clock: Any = sla_clocks) -> Any:
    """The cycle missed its deadline at some point (cheap tests first, history only after an
    extension, the one case where ``breached_at`` may have been cleared)."""
    stopped_late = sa.and_(clock.c.status == "stopped",
                           sa.func.coalesce(clock.c.data["met"].as_boolean(), sa.false()).is_(sa.false()))
    return sa.or_(clock.c.breached_at.is_not(None), stopped_late,
                  sa.and_(clock.c.extensions > 0, breach_recorded(clock)))


def clock_met(clock: Any = sla_clocks) -> Any:
    """A stopped cycle that met its target and never breached (1/0 for summing)."""
    met = sa.func.coalesce(clock.c.data["met"].as_boolean(), sa.false())
    return sa.case((sa.and_(clock.c.status == "stopped", met.is_(sa.true()), clock.c.breached_at.is_(None),
                            sa.or_(clock.c.extensions == 0, ~breach_recorded(clock))), 1), else_=0)


def percentiles(conn: sa.Connection, value: Any, groups: Sequence[Any], where: Iterable[Any],
                fractions: Sequence[float], joins: Any) -> dict[tuple[Any, ...], list[float | None]]:
    """Continuous percentiles (as PostgreSQL's ``percentile_cont``) of ``value`` per group.

    PostgreSQL computes them itself. SQLite has no percentile function: one window query
    numbers the rows of each group in value order and returns only the (at most two) rows
    around each wanted position, which are interpolated here — a handful of rows per group
    leave the database, never the group itself.
    """
    where = list(where)
    if conn.dialect.name == "postgresql":
        columns = [sa.func.percentile_cont(f).within_group(value) for f in fractions]
        rows = conn.execute(sa.select(*groups, *columns).select_from(joins).where(*where).group_by(*groups)).all()
        return {tuple(r[: len(groups)]): [None if v is None else float(v) for v in r[len(groups):]] for r in rows}
    keys = [g.label(f"g{i}") for i, g in enumerate(groups)]
    inner = (sa.select(*keys, value.label("v"),
                       sa.func.row_number().over(partition_by=groups, order_by=value).label("rn"),
                       sa.func.count().over(partition_by=groups).label("n"))
             .select_from(joins).where(*where, value.is_not(None)).subquery())
    wanted = []
    for f in fractions:
        position = sa.cast((inner.c.n - 1) * f, sa.Integer)  # floor: positions are never negative
        wanted += [inner.c.rn == position + 1, inner.c.rn == position + 2]
    rows = conn.execute(sa.select(*[inner.c[f"g{i}"] for i in range(len(groups))], inner.c.rn, inner.c.n,
                                  inner.c.v).where(sa.or_(*wanted))).all()
    found: dict[tuple[Any, ...], dict[int, float]] = {}
    sizes: dict[tuple[Any, ...], int] = {}
    for row in rows:
        key = tuple(row[: len(groups)])
        found.setdefault(key, {})[row.rn - 1] = float(row.v)
        sizes[key] = row.n
    result: dict[tuple[Any, ...], list[float | None]] = {}
    for key, values in found.items():
        n = sizes[key]
        out: list[float | None] = []
        for f in fractions:
            position = (n - 1) * f
            lo = math.floor(position)
            low = values.get(lo)
            high = values.get(min(lo + 1, n - 1), low)
            out.append(None if low is None else low + (position - lo) * ((high if high is not None else low) - low))
        result[key] = out
    return result
