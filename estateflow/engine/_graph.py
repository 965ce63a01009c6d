"""Workflow diagrams as text: Mermaid ``stateDiagram-v2`` and Graphviz DOT.

Text, not images, so no renderer is needed at run time: Mermaid renders on common code hosts
and DOT in any Graphviz. Edges are annotated with roles and conditions, states with the clocks
that start there, so an admin reviewing a YAML edit sees what changes for people.
"""

from __future__ import annotations

from ._spec import WorkflowSpec

__all__ = ["to_dot", "to_mermaid"]


def _edge_label(spec: WorkflowSpec, index: int, language: str) -> str:
    t = spec.transitions[index]
    parts = [t.label.get(language) if t.label else t.trigger]
    if t.label:
        parts[0] = f"{t.trigger}: {parts[0]}"
    if t.roles:
        parts.append("[" + ", ".join(t.roles) + "]")
    if t.when:
        parts.append(f"if {t.when}")
    return " ".join(parts)


def _clock_notes(spec: WorkflowSpec, language: str) -> dict[str, list[str]]:
    notes: dict[str, list[str]] = {}
    for name, clock in spec.clocks.items():
        for point in clock.start:
            kind, _, state = point.partition(":")
            if kind == "enter":
                target = clock.target if not clock.target.startswith("=") else "by expression"
                label = clock.label.get(language) if clock.label else name
                notes.setdefault(state, []).append(f"⏱ {name}: {target} — {label}")
    return notes


def _mermaid_text(text: str) -> str:
    return text.replace(":", "∶").replace('"', "'").replace("\n", " ")


def to_mermaid(spec: WorkflowSpec, language: str = "en") -> str:
    lines = ["stateDiagram-v2"]
    for name in spec.states:
        state = spec.state(name)
        label = state.label.get(language) if state.label else name
        lines.append(f"    {name}: {_mermaid_text(label)}")
    lines.append(f"    [*] --> {spec.initial_state}")
    for i, t in enumerate(spec.transitions):
        for source in spec.sources(t):
            lines.append(f"    {source} --> {t.dest or source}: {_mermaid_text(_edge_label(spec, i, language))}")
    for name in spec.states:
        if spec.state(name).final:
            lines.append(f"    {name} --> [*]")
    for state, notes in _clock_notes(spec, language).items():
        lines.append(f"    note right of {state}")
        lines.extend(f"        {_mermaid_text(n)}" for n in notes)
        lines.append("    end note")
    return "\n".join(lines) + "\n"


def _dot_quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def to_dot(spec: WorkflowSpec, language: str = "en") -> str:
    lines = [f"digraph {spec.name} {{", "    rankdir=LR;", "    node [shape=box, style=rounded];"]
    notes = _clock_notes(spec, language)
    for name in spec.states:
        state = spec.state(name)
        label = state.label.get(language) if state.label else name
        label = "\\n".join([label, *notes.get(name, [])])
        shape = ", peripheries=2" if state.final else ""
        lines.append(f"    {name} [label={_dot_quote(label)}{shape}];")
    lines.append('    __start [shape=point, label=""];')
    lines.append(f"    __start -> {spec.initial_state};")
    for i, t in enumerate(spec.transitions):
        for source in spec.sources(t):
            lines.append(f"    {source} -> {t.dest or source} [label={_dot_quote(_edge_label(spec, i, language))}];")
    lines.append("}")
    return "\n".join(lines) + "\n"
