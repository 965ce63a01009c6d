"""Workflow revisions: files on disk, revisions in the database, machines in memory.

Why revisions live in the database: several processes (the app, cron's ``tick``, daemons)
load files at different times; "newest" must mean the same thing to all of them, and a case
must keep running on the exact spec it started with even after the file is edited. So every
distinct canonical spec gets a row ``name@rN`` holding its YAML text, and an old revision can be
rebuilt from that text in any process.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import sqlalchemy as sa

from ._errors import WorkflowError, WorkflowNotFound
from ._machine import WorkflowMachine
from ._schema import workflow_versions
from ._spec import WorkflowSpec
from ._validate import load_workflow, load_workflow_file

__all__ = ["Revision", "StoredRevision", "WorkflowRegistry", "default_workflow_dir", "workflow_files"]

log = logging.getLogger(__name__)


def default_workflow_dir() -> Path:
    return Path(__file__).resolve().parent.parent / "workflows"


def workflow_files(location: str | Path) -> list[Path]:
    path = Path(location)
    if path.is_file():
        return [path]
    if not path.is_dir():
        from ._errors import Problem

        raise WorkflowError([Problem(str(path), 1, 1, "no such file or directory",
                                     "give a workflow YAML file or a directory of them")])
    return sorted(p for p in path.iterdir() if p.suffix in (".yaml", ".yml") and not p.name.startswith("."))


@dataclass(frozen=True)
class Revision:
    name: str
    revision: int
    version_label: str
    digest: str
    spec: WorkflowSpec
    machine: WorkflowMachine
    path: str | None
    created_at: datetime | None = None

    @property
    def key(self) -> str:
        return f"{self.name}@r{self.revision}"


@dataclass(frozen=True)
class StoredRevision:
    """A row of ``workflow_versions`` as listed to people: no spec is parsed to list it."""

    name: str
    revision: int
    version_label: str
    digest: str
    created_at: datetime
    path: str | None

    @property
    def key(self) -> str:
        return f"{self.name}@r{self.revision}"


class WorkflowRegistry:
    """Loaded specs and their revisions; thread-safe for reads once synced."""

    def __init__(self, actions: Collection[str] | None = None) -> None:
        self.actions = actions
        self._files: dict[str, tuple[WorkflowSpec, str, str]] = {}  # name -> (spec, text, path)
        self._revisions: dict[tuple[str, int], Revision] = {}
        self._latest: dict[str, int] = {}

    # -- loading ------------------------------------------------------------------------
    def load_paths(self, locations: Iterable[str | Path]) -> None:
        """Validate every file first; load none if any is broken (all problems at once)."""
        problems = []
        loaded: dict[str, tuple[WorkflowSpec, str, str]] = {}
        for location in locations:
            for path in workflow_files(location):
                try:
                    spec = load_workflow_file(path, actions=self.actions)
                except WorkflowError as exc:
                    problems.extend(exc.problems)
                    continue
                loaded[spec.name] = (spec, path.read_text(encoding="utf-8"), str(path))
        problems.extend(self._cross_check(loaded))
        if problems:
            raise WorkflowError(problems)
        self._files.update(loaded)

    def load_text(self, text: str, filename: str = "<string>") -> WorkflowSpec:
        spec = load_workflow(text, filename, actions=self.actions)
        self._files[spec.name] = (spec, text, filename)
        return spec

    def _cross_check(self, loaded: dict[str, tuple[WorkflowSpec, str, str]]) -> list:
        from ._errors import Problem

        from ._yaml import load_yaml

        names = set(loaded) | set(self._files)
        problems = []
        for spec, text, path in loaded.values():
            positions = None
            for i, t in enumerate(spec.transitions):
                if t.spawn is not None and t.spawn.workflow not in names:
                    positions = positions or load_yaml(text, path)
                    line, column = positions.where(("transitions", i, "spawn", "workflow"))
                    problems.append(Problem(path, line, column, f"spawns unknown workflow {t.spawn.workflow!r}",
                                            f"known: {', '.join(sorted(names))}"))
        return problems

    @property
    def names(self) -> list[str]:
        return sorted(set(self._files) | set(self._latest))

    @property
    def file_names(self) -> list[str]:
        """Workflows read from files by this registry (not yet necessarily recorded)."""
        return sorted(self._files)

    def file_spec(self, name: str) -> WorkflowSpec:
        """The spec of the loaded file named ``name`` (what ``graph`` and ``validate`` show)."""
        if name not in self._files:
            raise WorkflowNotFound(name, self._files)
        return self._files[name][0]

    def file_text(self, name: str) -> tuple[str, str]:
        """(YAML text, path) of the loaded file named ``name``."""
        if name not in self._files:
            raise WorkflowNotFound(name, self._files)
        _, text, path = self._files[name]
        return text, path

    # -- revisions ------------------------------------------------------------------------
    def sync(self, conn: sa.Connection, now: datetime) -> list[str]:
        """Record loaded files as revisions; returns warnings. Call inside a transaction."""
        if conn.dialect.name == "postgresql":
            # Several daemons (or threads) loading the same new file at once would each insert
            # revision N and all but one die on uq_workflow_digest; SQLite's BEGIN IMMEDIATE
            # already serialises this check-then-insert.
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(hashtext('estateflow-workflows'))"))
        warnings = []
        for name, (spec, text, path) in sorted(self._files.items()):
            digest = spec.digest()
            row = conn.execute(sa.select(workflow_versions.c.revision).where(
                workflow_versions.c.name == name, workflow_versions.c.digest == digest)).first()
            if row is None:
                last = conn.execute(
                    sa.select(workflow_versions.c.revision, workflow_versions.c.version_label)
                    .where(workflow_versions.c.name == name)
                    .order_by(workflow_versions.c.revision.desc()).limit(1)).first()
                number = (last.revision + 1) if last else 1
                conn.execute(workflow_versions.insert().values(
                    name=name, revision=number, version_label=spec.version, digest=digest,
                    source=text, path=path, created_at=now))
                if last is not None and last.version_label == spec.version:
                    warnings.append(f"{path}: workflow {name!r} changed but its version label "
                                    f"{spec.version!r} did not; recorded as {name}@r{number}")
                log.info("workflow %s recorded as %s@r%d (version %s)", path, name, number, spec.version)
                revision = number
            else:
                revision = row.revision
            self._remember(name, revision, spec, path, digest)
        for warning in warnings:
            log.warning(warning)
        self.refresh_latest(conn)
        return warnings

    def refresh_latest(self, conn: sa.Connection) -> None:
        rows = conn.execute(sa.select(workflow_versions.c.name,
                                      sa.func.max(workflow_versions.c.revision))
                            .group_by(workflow_versions.c.name)).all()
        for name, revision in rows:
            self._latest[name] = revision

    def _remember(self, name: str, revision: int, spec: WorkflowSpec, path: str | None,
                  digest: str) -> Revision:
        key = (name, revision)
        if key not in self._revisions:
            self._revisions[key] = Revision(name, revision, spec.version, digest, spec,
                                            WorkflowMachine(spec), path)
        return self._revisions[key]

    def latest(self, name: str) -> int:
        """The newest revision number of ``name`` in the database (as of the last sync)."""
        if name not in self._latest:
            raise WorkflowNotFound(name, self.names)
        return self._latest[name]

    def revisions(self, conn: sa.Connection, name: str | None = None) -> list[StoredRevision]:
        """Every stored revision (of ``name``, or of all workflows), oldest first per name."""
        query = sa.select(workflow_versions.c.name, workflow_versions.c.revision, workflow_versions.c.version_label,
                          workflow_versions.c.digest, workflow_versions.c.created_at, workflow_versions.c.path)
        if name is not None:
            query = query.where(workflow_versions.c.name == name)
        rows = conn.execute(query.order_by(workflow_versions.c.name, workflow_versions.c.revision)).all()
        return [StoredRevision(r.name, r.revision, r.version_label, r.digest, r.created_at, r.path) for r in rows]

    def spec_of(self, name: str, revision: int, conn: sa.Connection | None = None) -> WorkflowSpec:
        """The spec of ``name@rREVISION``; without ``conn`` only a revision already in memory.

        Raises :class:`WorkflowNotFound` rather than guessing, so a caller that masks personal
        data by the spec's rules fails closed.
        """
        return self.get(conn, name, revision).spec

    def get(self, conn: sa.Connection | None, name: str, revision: int | None = None) -> Revision:
        """A revision (default: the newest in the database), rebuilt from stored text if needed."""
        if revision is None:
            if name not in self._latest:
                raise WorkflowNotFound(name, self.names)
            revision = self._latest[name]
        cached = self._revisions.get((name, revision))
        if cached is not None:
            return cached
        if conn is None:
            raise WorkflowNotFound(f"{name}@r{revision}", self.names)
        row = conn.execute(sa.select(workflow_versions).where(
            workflow_versions.c.name == name, workflow_versions.c.revision == revision)).first()
        if row is None:
            raise WorkflowNotFound(f"{name}@r{revision}", self.names)
        spec = load_workflow(row.source, f"{name}@r{revision}")
        return self._remember(name, revision, spec, row.path, row.digest)
