"""Who may see personal data in a report, and how it looks when they may not.

Reports leave the system (CSV files, mails, spreadsheets passed around), so they are masked
by default. Only an explicit request (``unmasked=True``) by a named actor holding one of the
workflow's ``personal_data_roles`` (or ``admin``) shows names, phone numbers and units. The
masks keep enough to tell rows apart (``张*``, ``138****8000``) without identifying anyone.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..engine._errors import RoleNotAllowed
from ..engine._expr import _mask_name, _mask_phone
from ..engine._types import Actor

if TYPE_CHECKING:
    from ..engine._engine import Engine

__all__ = ["Masking", "mask_value"]

ADMIN = "admin"


def mask_value(field: str, value: Any) -> Any:
    """A masked stand-in for a personal field's value (empty values stay empty)."""
    if value is None or value == "":
        return value
    text = str(value)
    lowered = field.lower()
    if "phone" in lowered or "mobile" in lowered or "tel" in lowered:
        return _mask_phone(text)
    if "email" in lowered and "@" in text:
        local, _, domain = text.partition("@")
        return f"{local[:1]}***@{domain}"
    if "name" in lowered:
        return _mask_name(text)
    return "***"


class Masking:
    """Decides per workflow revision whether personal fields are shown."""

    def __init__(self, engine: Engine, actor: Actor | None, unmasked: bool) -> None:
        if unmasked and actor is None:
            raise ValueError("unmasked reports need the actor asking for them (--unmasked --as ACTOR)")
        self.engine = engine
        self.actor = actor
        self.unmasked = unmasked
        self._specs: dict[tuple[str, int | None], Any] = {}
        self.hidden: list[str] = []

    def spec(self, conn: Any, workflow: str, revision: int | None = None) -> Any:
        key = (workflow, revision)
        if key not in self._specs:
            self._specs[key] = self.engine.workflows().get(conn, workflow, revision).spec
        return self._specs[key]

    def may_see(self, spec: Any) -> bool:
        if not self.unmasked or self.actor is None:
            return False
        return ADMIN in self.actor.roles or bool(self.actor.roles & set(spec.personal_data_roles))

    def check(self, conn: Any, workflows: list[str]) -> None:
        """Refuse an unmasked request by an actor allowed to see none of the report's workflows."""
        if not self.unmasked or self.actor is None or not workflows:
            return
        specs = [self.spec(conn, name) for name in workflows]
        if not any(self.may_see(s) for s in specs):
            needed = sorted({ADMIN, *(r for s in specs for r in s.personal_data_roles)})
            raise RoleNotAllowed(self.actor.id, "see personal data in reports", needed)
        self.hidden = [name for name, spec in zip(workflows, specs) if not self.may_see(spec)]

    def personal(self, spec: Any, field: str) -> bool:
        declared = spec.fields.get(field)
        return bool(declared is not None and declared.personal)

    def show(self, conn: Any, workflow: str, revision: int | None, field: str, value: Any) -> Any:
        """``value`` as this reader may see it."""
        spec = self.spec(conn, workflow, revision)
        if not self.personal(spec, field) or self.may_see(spec):
            return value
        return mask_value(field, value)

    @property
    def masked(self) -> bool:
        """Whether any personal field may be masked (rows of workflows the reader may not see)."""
        return not self.unmasked or bool(self.hidden)
