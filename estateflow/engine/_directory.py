"""Who is who: actor ids to roles, communities and departments.

The embedding application usually knows its staff already, so the directory is anything with a
``get(actor_id) -> Actor | None`` method (and optionally ``members(role, community, department)``
for notifications); :class:`YamlDirectory` serves the CLI and small deployments.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Protocol

from ._errors import ConfigError
from ._types import Actor
from ._yaml import load_yaml

__all__ = ["Directory", "StaticDirectory", "YamlDirectory"]


class Directory(Protocol):
    def get(self, actor_id: str) -> Actor | None: ...

    def members(self, role: str, community: str | None = None,
                department: str | None = None) -> list[Actor]: ...


class StaticDirectory:
    """An in-memory directory built from Actor values."""

    def __init__(self, actors: Iterable[Actor] = ()) -> None:
        self._actors = {a.id: a for a in actors}

    def get(self, actor_id: str) -> Actor | None:
        return self._actors.get(actor_id)

    def add(self, actor: Actor) -> None:
        self._actors[actor.id] = actor

    def members(self, role: str, community: str | None = None,
                department: str | None = None) -> list[Actor]:
        return [a for a in self._actors.values()
                if role in a.roles and a.serves(community)
                and (department is None or not a.departments or department in a.departments)]

    def __iter__(self):
        return iter(self._actors.values())


class YamlDirectory(StaticDirectory):
    """``actors.yaml``: ``actors: {zhang: {roles: [cs_clerk], communities: [lakeside]}}``."""

    _KEYS = {"roles", "communities", "departments", "name", "email", "phone", "language"}

    def __init__(self, path: str | Path) -> None:
        path = Path(path)
        loaded = load_yaml(path.read_text(encoding="utf-8"), str(path))
        problems = list(loaded.problems)
        actors: list[Actor] = []
        data: Any = loaded.data
        if not problems:
            if not isinstance(data, Mapping) or not isinstance(data.get("actors"), Mapping):
                problems.append(loaded.problem((), "expected a mapping 'actors:' of actor ids"))
            else:
                for actor_id, spec in data["actors"].items():
                    spec = spec or {}
                    if not isinstance(spec, Mapping):
                        problems.append(loaded.problem(("actors", actor_id), "expected a mapping"))
                        continue
                    for key in spec:
                        if key not in self._KEYS:
                            problems.append(loaded.problem(("actors", actor_id, key), f"unknown key {key!r}",
                                                           f"one of {', '.join(sorted(self._KEYS))}", key=True))
                    language = spec.get("language")
                    if language not in (None, "zh", "en"):
                        problems.append(loaded.problem(("actors", actor_id, "language"),
                                                       f"unknown language {language!r}", "zh or en"))
                    actors.append(Actor(str(actor_id), frozenset(spec.get("roles") or []),
                                        frozenset(spec.get("communities") or []),
                                        frozenset(spec.get("departments") or []),
                                        str(spec.get("name") or ""), spec.get("email"), spec.get("phone"),
                                        language))
        if problems:
            raise ConfigError(problems)
        super().__init__(actors)
