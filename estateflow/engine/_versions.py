"""Workflow revisions as an admin sees them: what is stored, how many cases run on each.

Why counts per revision: before migrating or retiring a revision an admin needs to know which
revisions still carry open cases; the counts come from one grouped query over the indexed
``(workflow, state)`` columns, never from a Python loop over cases.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from ._errors import WorkflowNotFound
from ._schema import cases

if TYPE_CHECKING:
    from ._engine import Engine

__all__ = ["RevisionInfo", "list_revisions", "parse_revision"]

_REF = re.compile(r"^(?:(?P<name>[a-z][a-z0-9_]*)@)?r?(?P<number>\d+)$")


@dataclass(frozen=True)
class RevisionInfo:
    name: str
    revision: int
    version_label: str
    created_at: datetime
    digest: str
    path: str | None
    open_cases: int
    closed_cases: int
    newest: bool

    @property
    def key(self) -> str:
        return f"{self.name}@r{self.revision}"

    def to_json(self) -> dict[str, Any]:
        return {"workflow": self.name, "revision": self.revision, "key": self.key, "version": self.version_label,
                "created_at": self.created_at.isoformat(), "digest": self.digest, "path": self.path,
                "open_cases": self.open_cases, "closed_cases": self.closed_cases, "newest": self.newest}


def parse_revision(name: str, ref: int | str) -> int:
    """``3``, ``"r3"``, ``"3"`` or ``"repair@r3"`` → 3; the name, when given, must be ``name``."""
    if isinstance(ref, int):
        return ref
    match = _REF.match(str(ref).strip())
    if match is None or (match.group("name") and match.group("name") != name):
        raise ValueError(f"{ref!r} is not a revision of {name}; write r3 or {name}@r3")
    return int(match.group("number"))


def list_revisions(engine: Engine, name: str | None = None) -> list[RevisionInfo]:
    """Every stored revision (of ``name`` or of all workflows) with its open and closed case counts."""
    registry = engine.workflows()
    is_open = sa.and_(cases.c.closed_at.is_(None), cases.c.voided.is_(False))
    counts = (sa.select(cases.c.workflow, cases.c.revision,
                        sa.func.count().filter(is_open).label("open"),
                        sa.func.count().filter(sa.not_(is_open)).label("closed"))
              .group_by(cases.c.workflow, cases.c.revision))
    if name is not None:
        counts = counts.where(cases.c.workflow == name)
    with engine.db.execution_options(estateflow_readonly=True).connect() as conn:
        stored = registry.revisions(conn, name)
        tally = {(r.workflow, r.revision): (r.open, r.closed) for r in conn.execute(counts)}
    if name is not None and not stored:
        raise WorkflowNotFound(name, registry.names)
    newest: dict[str, int] = {}
    for row in stored:
        newest[row.name] = max(newest.get(row.name, 0), row.revision)
    return [RevisionInfo(r.name, r.revision, r.version_label, r.created_at, r.digest, r.path,
                         *tally.get((r.name, r.revision), (0, 0)), newest[r.name] == r.revision)
            for r in stored]
