"""A structural diff of two workflow specs: what an admin's edit changes, section by section.

Why not a text diff of the YAML: reordering keys, reformatting or editing comments changes the
text but not the workflow, while one changed number buried in an escalation ladder matters.
Specs are compared as parsed models: states, transitions, clocks, fields, roles, bands, notify
rules and templates are each matched by identity (a name, or for list entries a stable key) and
their differences reported by path (``escalate[2].notify``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from ._spec import WorkflowSpec

__all__ = ["Change", "WorkflowDiff", "diff_specs"]

SECTIONS = ("workflow", "fields", "roles", "states", "transitions", "bands", "clocks", "notify", "templates")
_TOP = ("name", "version", "title", "description", "number", "calendar", "dimensions", "personal_data_roles",
        "warranty")


@dataclass(frozen=True)
class Change:
    """One added, removed or changed item; ``details`` holds (path, old, new) for a change."""

    section: str
    key: str
    kind: str  # added, removed, changed
    details: tuple[tuple[str, Any, Any], ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {"section": self.section, "key": self.key, "change": self.kind,
                "details": [{"path": p, "old": o, "new": n} for p, o, n in self.details]}


@dataclass(frozen=True)
class WorkflowDiff:
    old: str  # e.g. repair@r1
    new: str
    old_version: str
    new_version: str
    changes: tuple[Change, ...] = field(default_factory=tuple)

    @property
    def identical(self) -> bool:
        return not self.changes

    def section(self, name: str) -> list[Change]:
        return [c for c in self.changes if c.section == name]

    def to_json(self) -> dict[str, Any]:
        return {"old": self.old, "new": self.new, "old_version": self.old_version,
                "new_version": self.new_version, "changes": [c.to_json() for c in self.changes]}

    def lines(self) -> list[str]:
        """The diff as people read it: one block per section, + added, - removed, ~ changed."""
        count = len(self.changes)
        head = (f"{self.old} (version {self.old_version}) → {self.new} (version {self.new_version}): "
                f"{count} change{'s' if count != 1 else ''}" if count else
                f"{self.old} and {self.new} are the same workflow")
        out = [head]
        for name in SECTIONS:
            items = self.section(name)
            if not items:
                continue
            out.append(f"{name}:")
            for change in items:
                mark = {"added": "+", "removed": "-", "changed": "~"}[change.kind]
                if change.section == "workflow" and len(change.details) == 1:
                    _, old, new = change.details[0]
                    out.append(f"  ~ {change.key}: {_short(old)} → {_short(new)}")
                    continue
                out.append(f"  {mark} {change.key}")
                for path, old, new in change.details:
                    out.append(f"      {path}: {_short(old)} → {_short(new)}")
        return out


def _short(value: Any, limit: int = 80) -> str:
    text = "(none)" if value is None else repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """Leaves by path; a list of plain values is one leaf, a list of mappings is walked by index."""
    if isinstance(value, dict):
        found: dict[str, Any] = {}
        for key, item in value.items():
            found.update(_flatten(item, f"{prefix}.{key}" if prefix else str(key)))
        return found
    if isinstance(value, list) and any(isinstance(item, (dict, list)) for item in value):
        found = {}
        for i, item in enumerate(value):
            found.update(_flatten(item, f"{prefix}[{i}]"))
        return found
    return {prefix: value}


def _details(old: Any, new: Any) -> tuple[tuple[str, Any, Any], ...]:
    a, b = _flatten(old), _flatten(new)
    paths = list(a) + [p for p in b if p not in a]
    return tuple((p or "value", a.get(p), b.get(p)) for p in paths if a.get(p) != b.get(p))


def _dump(value: Any) -> Any:
    return value.model_dump(mode="json") if hasattr(value, "model_dump") else value


def _compare(section: str, old: dict[str, Any], new: dict[str, Any]) -> list[Change]:
    changes = []
    for key in list(old) + [k for k in new if k not in old]:
        if key not in new:
            changes.append(Change(section, key, "removed"))
        elif key not in old:
            changes.append(Change(section, key, "added"))
        else:
            details = _details(old[key], new[key])
            if details:
                changes.append(Change(section, key, "changed", details))
    return changes


def _keyed(items: Iterable[Any], key: Any) -> dict[str, Any]:
    """List entries by a readable key; repeats of a key get #2, #3 in their order."""
    found: dict[str, Any] = {}
    for item in items:
        base = key(item)
        name, n = base, 1
        while name in found:
            n += 1
            name = f"{base} #{n}"
        found[name] = _dump(item)
    return found


def _transition_key(t: Any) -> str:
    return f"{t.trigger}: {', '.join(t.source)} → {t.dest or '(same state)'}"


def _notify_key(n: Any) -> str:
    triggers = f" [{', '.join(n.trigger)}]" if n.trigger else ""
    return f"{n.event}{triggers} → {n.template} via {n.channel}"


def diff_specs(old: WorkflowSpec, new: WorkflowSpec, old_key: str = "old", new_key: str = "new") -> WorkflowDiff:
    """Every structural difference from ``old`` to ``new`` (both parsed specs)."""
    a, b = old.model_dump(mode="json"), new.model_dump(mode="json")
    changes = _compare("workflow", {k: {k: a[k]} for k in _TOP}, {k: {k: b[k]} for k in _TOP})
    for section in ("fields", "roles", "states", "bands", "clocks", "templates"):
        changes += _compare(section, a[section], b[section])
    changes += _compare("transitions", _keyed(old.transitions, _transition_key),
                        _keyed(new.transitions, _transition_key))
    changes += _compare("notify", _keyed(old.notify, _notify_key), _keyed(new.notify, _notify_key))
    changes.sort(key=lambda c: SECTIONS.index(c.section))
    return WorkflowDiff(old_key, new_key, old.version, new.version, tuple(changes))
