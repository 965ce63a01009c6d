"""YAML reading for files that admins edit by hand.

Why not ``yaml.safe_load``: it forgets where each value came from, so errors could not name a
line and column, and it applies YAML 1.1's silent conversions (``9:00`` → 540, ``0755`` → 493,
``on`` → True, ``1.10`` → 1.1). Here the document is *composed* (no object is constructed, so
no tag is ever executed) and the node tree is turned into plain Python by our own small
resolver: quoted scalars are strings, ``true``/``false`` booleans, plain integers ints, plain
decimals :class:`~decimal.Decimal` read from the source text, and every ambiguous YAML 1.1
form is reported as a problem with a hint instead of being guessed.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

import yaml

from ._errors import Problem

__all__ = ["LoadedYaml", "Path", "load_yaml"]

Path = tuple[Any, ...]

_STD = "tag:yaml.org,2002:"
_ALLOWED_TAGS = {f"{_STD}{t}" for t in ("str", "int", "float", "bool", "null", "map", "seq")}
_BOOL = {"true": True, "false": False}
_YAML11_BOOL = {"yes", "no", "on", "off", "y", "n"}
_NULL = {"", "~", "null"}
_INT = re.compile(r"[-+]?(0|[1-9][0-9_]*)")
_LEADING_ZERO = re.compile(r"[-+]?0[0-9_]+")
_RADIX = re.compile(r"[-+]?0[xob][0-9a-fA-F_]+")
_SEXAGESIMAL = re.compile(r"[-+]?[0-9]+(:[0-5]?[0-9])+(\.[0-9]*)?")
_DECIMAL = re.compile(r"[-+]?([0-9][0-9_]*\.[0-9_]*|\.[0-9_]+)([eE][-+]?[0-9]+)?|[-+]?[0-9]+[eE][-+]?[0-9]+")
_SPECIAL_FLOAT = re.compile(r"[-+]?\.(inf|Inf|INF)|\.(nan|NaN|NAN)")
_MAX_NODES = 200_000


@dataclass
class LoadedYaml:
    """Plain data plus where each piece came from (1-based line and column)."""

    filename: str
    data: Any
    positions: dict[Path, tuple[int, int]] = field(default_factory=dict)
    key_positions: dict[Path, tuple[int, int]] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)

    def where(self, path: Sequence[Any], *, key: bool = False) -> tuple[int, int]:
        """Position of ``path``, or of its nearest ancestor that has one."""
        path = tuple(path)
        table = self.key_positions if key else self.positions
        while path:
            if path in table:
                return table[path]
            if path in self.positions:
                return self.positions[path]
            path = path[:-1]
        return self.positions.get((), (1, 1))

    def problem(self, path: Sequence[Any], message: str, hint: str = "", *, key: bool = False) -> Problem:
        line, column = self.where(path, key=key)
        return Problem(self.filename, line, column, message, hint)


class _Builder:
    def __init__(self, loaded: LoadedYaml) -> None:
        self.loaded = loaded
        self.count = 0

    def add(self, node: yaml.Node, message: str, hint: str = "") -> None:
        mark = node.start_mark
        self.loaded.problems.append(
            Problem(self.loaded.filename, mark.line + 1, mark.column + 1, message, hint)
        )

    def build(self, node: yaml.Node, path: Path) -> Any:
        self.count += 1
        if self.count > _MAX_NODES:
            raise _TooLarge(node)
        self.loaded.positions.setdefault(path, (node.start_mark.line + 1, node.start_mark.column + 1))
        if node.tag not in _ALLOWED_TAGS and not node.tag.startswith("tag:yaml.org,2002:"):
            self.add(node, f"tag {_short(node.tag)!r} is not allowed",
                     "remove the tag; estateflow never constructs objects from YAML")
            return None
        if node.tag.startswith(_STD) and node.tag not in _ALLOWED_TAGS:
            self.add(node, f"tag {_short(node.tag)!r} is not allowed",
                     "remove the tag; estateflow never constructs objects from YAML")
            return None
        if isinstance(node, yaml.MappingNode):
            return self._mapping(node, path)
        if isinstance(node, yaml.SequenceNode):
            return [self.build(item, (*path, i)) for i, item in enumerate(node.value)]
        return self.scalar(node)

    def _mapping(self, node: yaml.MappingNode, path: Path) -> dict[Any, Any]:
        result: dict[Any, Any] = {}
        first_seen: dict[Any, int] = {}
        for key_node, value_node in node.value:
            if key_node.tag == f"{_STD}merge":
                self.add(key_node, "merge keys ('<<') are not supported", "write the keys out")
                continue
            if not isinstance(key_node, yaml.ScalarNode):
                self.add(key_node, "a mapping key must be a plain value")
                continue
            key = self.scalar(key_node, is_key=True)
            try:
                hash(key)
            except TypeError:
                self.add(key_node, "a mapping key must be a plain value")
                continue
            if key in first_seen:
                self.add(key_node, f"duplicate key {key!r} (first defined on line {first_seen[key]})",
                         "remove one of them; YAML would silently keep the last")
                continue
            first_seen[key] = key_node.start_mark.line + 1
            child = (*path, key)
            self.loaded.key_positions[child] = (key_node.start_mark.line + 1, key_node.start_mark.column + 1)
            result[key] = self.build(value_node, child)
        return result

    def scalar(self, node: yaml.ScalarNode, *, is_key: bool = False) -> Any:
        text = node.value
        if node.style in ("'", '"', "|", ">") or node.tag == f"{_STD}str":
            return text
        low = text.lower()
        if low in _BOOL and text in ("true", "false", "True", "False", "TRUE", "FALSE"):
            return _BOOL[low]
        if low in _YAML11_BOOL:
            if is_key:
                self.add(node, f"key {text!r} is read as a boolean by YAML 1.1 tools",
                         f"quote it ('{text}') or choose another name")
            else:
                self.add(node, f"{text!r} is ambiguous (YAML 1.1 reads it as a boolean)",
                         f"write true/false, or quote it: '{text}'")
            return text
        if low in _NULL:
            return None
        if _SEXAGESIMAL.fullmatch(text):
            self.add(node, f"{text!r} would be read as a base-60 number by YAML 1.1",
                     f"quote times: '{text if len(text.split(':')[0]) > 1 else '0' + text}'")
            return text
        if _LEADING_ZERO.fullmatch(text) or _RADIX.fullmatch(text):
            self.add(node, f"{text!r} has a leading zero or radix prefix (YAML 1.1 reads 0755 as 493)",
                     f"quote it ('{text}') or remove the leading zero")
            return text
        if _INT.fullmatch(text):
            return int(text.replace("_", ""))
        if _SPECIAL_FLOAT.fullmatch(text):
            self.add(node, f"{text!r} is not a usable number", "write a finite decimal")
            return text
        if _DECIMAL.fullmatch(text):
            try:
                return Decimal(text.replace("_", ""))
            except InvalidOperation:  # pragma: no cover - regex admits only valid text
                return text
        return text


def _short(tag: str) -> str:
    return "!!" + tag[len(_STD):] if tag.startswith(_STD) else tag


class _TooLarge(Exception):
    def __init__(self, node: yaml.Node) -> None:
        self.node = node


def _tab_problems(text: str, filename: str) -> list[Problem]:
    problems = []
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.lstrip(" ")
        if stripped.startswith("\t"):
            problems.append(Problem(filename, number, len(line) - len(stripped) + 1,
                                    "tab character in indentation", "indent with spaces"))
    return problems


def load_yaml(text: str, filename: str = "<string>") -> LoadedYaml:
    """Compose ``text`` and build plain data; problems are collected, never raised.

    The caller decides which error class to raise (a workflow file and the configuration
    file report through different exceptions), after adding its own schema problems.
    """
    loaded = LoadedYaml(filename, None)
    tabs = _tab_problems(text, filename)
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, column = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        message = f"YAML syntax error: {exc.problem or exc}"
        if exc.context:
            started = exc.context_mark
            if (started is not None and mark is not None and started.line != mark.line
                    and exc.context.startswith("while ")):
                # the mistake is usually where the construct began, not where YAML gave up
                message += f" ({exc.context} that starts at line {started.line + 1}, column {started.column + 1})"
            else:
                message += f" ({exc.context})"
        loaded.problems.extend(tabs or [Problem(filename, line, column, message,
                                                "check indentation and quoting around this point")])
        return loaded
    except yaml.YAMLError as exc:
        loaded.problems.append(Problem(filename, 1, 1, f"YAML error: {exc}"))
        return loaded
    except RecursionError:
        loaded.problems.append(Problem(filename, 1, 1, "document is nested too deeply"))
        return loaded
    loaded.problems.extend(tabs)
    if node is None:
        loaded.problems.append(Problem(filename, 1, 1, "the file is empty"))
        return loaded
    builder = _Builder(loaded)
    try:
        loaded.data = builder.build(node, ())
    except _TooLarge as exc:
        mark = exc.node.start_mark
        loaded.problems.append(Problem(filename, mark.line + 1, mark.column + 1,
                                       f"document expands to more than {_MAX_NODES} values",
                                       "do not use aliases to repeat large blocks"))
        loaded.data = None
    except RecursionError:
        loaded.problems.append(Problem(filename, 1, 1, "document is nested too deeply"))
        loaded.data = None
    return loaded
