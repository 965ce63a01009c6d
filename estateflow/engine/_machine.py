"""The adapter to ``transitions``: one Machine per workflow revision, shared by every case.

Why this shape (TRAPS.md): ``add_model`` per case is O(n) and resets state, so cases are never
added; a throw-away :class:`_Token` carries the state read from the row, and the event is
triggered against it. YAML strings are never handed to ``transitions`` (it would import them
as dotted paths); conditions are our own compiled, sandboxed callables.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from transitions import Machine

from ._errors import ExpressionError, TransitionError
from ._expr import default_sandbox
from ._spec import TransitionSpec, WorkflowSpec

__all__ = ["WorkflowMachine"]


class _Token:
    """The light model object: just a state and the chosen transition."""

    __slots__ = ("state", "chosen", "context")

    def __init__(self, state: str, context: Mapping[str, Any]) -> None:
        self.state = state
        self.chosen: int | None = None
        self.context = context


class WorkflowMachine:
    """Chooses the transition for a trigger from a state, given the case's context."""

    def __init__(self, spec: WorkflowSpec) -> None:
        self.spec = spec
        sandbox = default_sandbox()
        variables = spec.variables()
        self.machine = Machine(model=None, states=list(spec.states), initial=spec.initial_state,
                               auto_transitions=False, send_event=True, ignore_invalid_triggers=False)
        self._by_source: dict[tuple[str, str], list[int]] = {}
        self.basis: dict[int, frozenset[str]] = {}
        band_fields = {table.field for table in spec.bands.values()}
        for index, t in enumerate(spec.transitions):
            condition = sandbox.compile_condition(t.when, variables) if t.when else None
            if condition is not None:
                names = set(condition.names) & set(spec.fields)
                if "band" in condition.names:
                    names |= band_fields
                self.basis[index] = frozenset(names - set(t.requires) - set(t.accepts))
            for source in spec.sources(t):
                dest = t.dest or source
                self.machine.add_transition(
                    t.trigger, source, dest,
                    conditions=[self._condition(condition)] if condition else [],
                    after=[self._chooser(index)],
                )
                self._by_source.setdefault((t.trigger, source), []).append(index)

    @staticmethod
    def _condition(condition: Callable[[Mapping[str, Any]], bool]) -> Callable[[Any], bool]:
        def check(event: Any) -> bool:
            return bool(condition(event.model.context))
        return check

    @staticmethod
    def _chooser(index: int) -> Callable[[Any], None]:
        def choose(event: Any) -> None:
            event.model.chosen = index
        return choose

    def candidates(self, trigger: str, state: str) -> list[TransitionSpec]:
        return [self.spec.transitions[i] for i in self._by_source.get((trigger, state), [])]

    def protected_fields(self, trigger: str, state: str) -> frozenset[str]:
        """Fields the conditions of this trigger are judged on and which it does not ask for.

        A step may not change the facts its own condition decides on in the same call (an
        approver moving the estimate into their own band); it may when it lists the field in
        ``requires`` or ``accepts``.
        """
        result: set[str] = set()
        for i in self._by_source.get((trigger, state), []):
            result |= self.basis.get(i, frozenset())
        return frozenset(result)

    def triggers_from(self, state: str) -> list[str]:
        return sorted({trigger for trigger, source in self._by_source if source == state})

    def choose(self, trigger: str, state: str, context: Mapping[str, Any]) -> TransitionSpec | None:
        """The first transition whose condition holds, or None when every condition failed.

        The caller has checked that ``trigger`` is possible from ``state``.
        """
        token = _Token(state, context)
        try:
            self.machine.events[trigger].trigger(token)
        except ExpressionError:
            raise
        except TransitionError:
            raise
        if token.chosen is None:
            return None
        return self.spec.transitions[token.chosen]
