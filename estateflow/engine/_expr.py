"""Sandboxed ``when:`` conditions and notification templates written in workflow YAML.

DESIGN principle 4: nothing from YAML runs unless allowlisted. Jinja2's
``ImmutableSandboxedEnvironment`` blocks ``''.__class__.__mro__`` walks and container mutation,
but alone it turns a misspelt variable into ``None`` (``compile_expression``), bounds neither
memory nor work (``'a' * 10**9`` runs), and offers globals (``range``, ``lipsum``, ``cycler``...)
and filters (``attr``, ``format``) that only widen the surface. So each source is parsed once and
checked against allowlists of syntax, filters, tests and declared variables before it compiles;
the AST that was checked is the one that runs, with size caps on every operation that can grow a
value, a step budget per evaluation, and a cap on rendered output. No calls, no globals, only
``{% if %}``/``{% for %}`` and constant-only literals: nothing can be re-bound, so no value can be
built out of itself and an HTML template cannot switch escaping off. The rules admins see are in
the README section "Conditions and templates"."""

from __future__ import annotations

import difflib
import functools
import numbers
import re
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import ROUND_HALF_UP, Decimal, localcontext
from typing import Any
from zoneinfo import ZoneInfo

import jinja2
from jinja2 import StrictUndefined, meta, nodes
from jinja2.defaults import DEFAULT_FILTERS, DEFAULT_TESTS
from jinja2.environment import TemplateExpression
from jinja2.exceptions import SecurityError, TemplateSyntaxError, UndefinedError
from jinja2.filters import make_attrgetter
from jinja2.nodes import EvalContext
from jinja2.parser import Parser
from jinja2.runtime import markup_join, str_join
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.utils import pass_environment, pass_eval_context
from jinja2.visitor import NodeTransformer

from ._errors import ExpressionError

__all__ = ["SAFE_FILTERS", "SAFE_TESTS", "Condition", "Sandbox", "Template", "default_sandbox"]

MAX_NUMBER = 10**12  # largest number literal
MAX_STRING_LITERAL = 1_000  # characters in one string literal
MAX_EXPONENT = 1_000  # largest literal exponent of **
MAX_INT_BITS = 128  # an integer result beyond this is refused (9**9**9, 2**10000)
MAX_NODES = 5_000  # syntax nodes in one condition or template
MAX_STEPS = 1_000_000  # work units per evaluation: loop items, filter calls, operators
_HTML = "<html>"  # template name that switches autoescape on
_MARKERS = ("{{", "}}", "{%", "%}", "{#", "#}")
_SEQUENCES = (str, list, tuple)

_BUILTIN_FILTERS = frozenset({
    "abs", "capitalize", "count", "d", "default", "dictsort", "e", "escape", "first", "float",
    "int", "items", "last", "length", "list", "lower", "map", "max", "min", "reject",
    "rejectattr", "reverse", "round", "select", "selectattr", "sort", "string", "striptags",
    "title", "trim", "truncate", "unique", "upper", "urlencode", "wordcount",
})  # fmt: skip
SAFE_FILTERS = _BUILTIN_FILTERS | {
    "join", "replace", "sum", "money", "date", "datetime", "mask_phone", "mask_name",
}  # fmt: skip
SAFE_TESTS = frozenset({
    "defined", "undefined", "none", "boolean", "true", "false", "integer", "float", "number",
    "string", "mapping", "sequence", "iterable", "odd", "even", "divisibleby", "lower", "upper",
    "escaped", "in", "sameas", "eq", "equalto", "==", "ne", "!=", "lt", "lessthan", "<", "le",
    "<=", "gt", "greaterthan", ">", "ge", ">=",
})  # fmt: skip
# filters that turn their input into text: a container input is size-checked before str()
_STRINGIFYING = frozenset({
    "capitalize", "e", "escape", "lower", "mask_name", "mask_phone", "replace", "string",
    "striptags", "title", "trim", "truncate", "upper", "urlencode", "wordcount",
})  # fmt: skip
# filters that look up another filter or test by name: (argument index, kind)
_NAME_ARGS = {"map": (0, "filter"), "select": (0, "test"), "reject": (0, "test"),
              "selectattr": (1, "test"), "rejectattr": (1, "test")}  # fmt: skip
_ALLOWED_NODES = frozenset({
    nodes.Template, nodes.Output, nodes.TemplateData, nodes.If, nodes.For, nodes.Const,
    nodes.Name, nodes.Getattr, nodes.Getitem, nodes.Slice, nodes.List, nodes.Tuple, nodes.Dict,
    nodes.Pair, nodes.Keyword, nodes.CondExpr, nodes.Filter, nodes.Test, nodes.Compare,
    nodes.Operand, nodes.And, nodes.Or, nodes.Not, nodes.Neg, nodes.Pos, nodes.Add, nodes.Sub,
    nodes.Mul, nodes.Div, nodes.FloorDiv, nodes.Mod, nodes.Pow, nodes.Concat,
})  # fmt: skip
_TAGS = {
    nodes.Assign: "{% set %}", nodes.AssignBlock: "{% set %}", nodes.With: "{% with %}",
    nodes.Macro: "{% macro %}", nodes.CallBlock: "{% call %}", nodes.FilterBlock: "{% filter %}",
    nodes.Include: "{% include %}", nodes.Import: "{% import %}",
    nodes.FromImport: "{% from ... import %}", nodes.Extends: "{% extends %}",
    nodes.Block: "{% block %}", nodes.Scope: "{% autoescape %}",
}  # fmt: skip


class _Limit(SecurityError):
    """A size or work limit was reached; a SecurityError, so it reads as 'refused'."""


_BUDGET: ContextVar[list[int] | None] = ContextVar("estateflow_expr_budget", default=None)


def _charge(steps: int) -> None:
    """Spend work units of the evaluation in progress (no-op during compile-time folding)."""
    budget = _BUDGET.get()
    if budget is not None:
        budget[0] -= steps
        if budget[0] < 0:
            raise _Limit("too much work: the evaluation exceeded its step budget")


def _str_size(value: Any, limit: int) -> int:
    """Length ``str(value)`` would roughly have, counted without building it, stopping past limit.

    Containers are walked, so a list holding itself or a huge fan-out costs ``limit`` steps at
    most instead of an exponential ``str()``.
    """
    total, stack = 0, [value]
    while stack and total <= limit:
        item = stack.pop()
        if isinstance(item, str):
            total += len(item)
        elif item is None or isinstance(item, bool):
            total += 5
        elif isinstance(item, int):
            total += item.bit_length() // 3 + 2
        elif isinstance(item, Mapping):
            total += 2 + 4 * len(item)
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, (list, tuple, set, frozenset)):
            total += 2 + 2 * len(item)
            stack.extend(item)
        else:
            total += len(str(item))
    return total


def _check_size(value: Any, limit: int, what: str) -> None:
    if _str_size(value, limit) > limit:
        raise _Limit(f"{what} would be longer than {limit} characters")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


class _Environment(ImmutableSandboxedEnvironment):
    """The sandbox, with size checks on ``* ** + %`` and stricter attribute rules.

    Intercepting the operators also stops Jinja's optimizer from folding ``'a' * 10**9`` at
    compile time.
    """

    intercepted_binops = frozenset({"*", "**", "+", "%"})

    def __init__(self, value_cap: int, **options: Any) -> None:
        super().__init__(**options)
        self.value_cap = value_cap

    def is_safe_attribute(self, obj: Any, attr: str, value: Any) -> bool:
        return not callable(value) and super().is_safe_attribute(obj, attr, value)

    def unsafe_undefined(self, obj: Any, attribute: str) -> jinja2.Undefined:
        raise SecurityError(f"access to {attribute!r} of a {type(obj).__name__} is not allowed")

    def getattr(self, obj: Any, attribute: str) -> Any:
        if attribute.startswith("_"):
            return self.unsafe_undefined(obj, attribute)
        if isinstance(obj, Mapping):
            try:
                return obj[attribute]
            except (LookupError, TypeError):
                pass
        try:
            value = getattr(obj, attribute)
        except AttributeError:
            try:
                return obj[attribute]
            except (LookupError, TypeError):
                return self.undefined(obj=obj, name=attribute)
        if self.is_safe_attribute(obj, attribute, value):
            return value
        return self.unsafe_undefined(obj, attribute)

    def getitem(self, obj: Any, argument: Any) -> Any:
        if isinstance(argument, str) and argument.startswith("_"):
            return self.unsafe_undefined(obj, argument)
        try:
            return obj[argument]
        except (LookupError, TypeError):
            if isinstance(argument, str):
                return self.getattr(obj, argument)
        return self.undefined(obj=obj, name=argument)

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        _charge(1)
        cap = self.value_cap
        if operator == "%" and isinstance(left, str):
            raise SecurityError("'%' formatting of text is not allowed; use filters")
        if operator == "*":
            for seq, count in ((left, right), (right, left)):
                if isinstance(seq, _SEQUENCES) and _is_int(count) and len(seq) * count > cap:
                    raise _Limit(f"repeating would make a value longer than {cap}")
        elif operator == "+" and isinstance(left, _SEQUENCES) and isinstance(right, _SEQUENCES):
            if len(left) + len(right) > cap:
                raise _Limit(f"'+' would make a value longer than {cap}")
        elif operator == "**" and _is_int(left) and _is_int(right) and abs(left) > 1:
            if (abs(left).bit_length() - 1) * right > MAX_INT_BITS:
                raise _Limit("'**' result is too large")
        result = self.binop_table[operator](left, right)
        if _is_int(result) and result.bit_length() > MAX_INT_BITS:
            raise _Limit(f"integer result is too large (more than {MAX_INT_BITS} bits)")
        return result


# ---- filters -------------------------------------------------------------------------------

_CENT = Decimal("0.01")


def _money(value: Any) -> str:
    """``Decimal("1234.5")`` → ``"1,234.50"``: two places, rounded half up (四舍五入)."""
    if isinstance(value, bool) or not isinstance(value, (Decimal, int, float, str)):
        raise TypeError(f"money needs a number, got {type(value).__name__}")
    amount = value if isinstance(value, Decimal) else Decimal(str(value).strip())
    with localcontext() as ctx:
        ctx.prec = 40
        amount = amount.quantize(_CENT, rounding=ROUND_HALF_UP)
    return f"{amount.copy_abs() if amount == 0 else amount:,.2f}"


def _as_moment(value: Any) -> date:
    if isinstance(value, date):  # datetime too
        return value
    if isinstance(value, str):
        return datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    raise TypeError(f"expected a date or datetime, got {type(value).__name__}")


def _datetime(value: Any, fmt: str = "%Y-%m-%d %H:%M", tz: str | None = None) -> str:
    """strftime, optionally shown in zone ``tz`` (times are stored in UTC)."""
    moment = _as_moment(value)
    if tz is not None:
        if not isinstance(moment, datetime) or moment.tzinfo is None:
            raise ValueError("tz= needs a timezone-aware datetime")
        moment = moment.astimezone(ZoneInfo(str(tz)))
    return moment.strftime(str(fmt))


def _date(value: Any, fmt: str = "%Y-%m-%d", tz: str | None = None) -> str:
    return _datetime(value, fmt, tz)


def _mask_phone(value: Any) -> str:
    """``13812341234`` → ``138****1234``; shorter numbers keep less; +86/0086 stays."""
    text = re.sub(r"[\s-]", "", str(value))
    prefix = next((p for p in ("+86", "0086") if text.startswith(p) and len(text) > 9), "")
    text = text[len(prefix) :]
    n = len(text)
    head, tail = (3, 4) if n >= 11 else (2, 3) if n >= 7 else (0, 2) if n > 2 else (0, 0)
    return prefix + text[:head] + "*" * (n - head - tail) + text[n - tail :]


def _mask_name(value: Any) -> str:
    """``张三`` → ``张*``, ``王小明`` → ``王**``: the first character stays."""
    text = str(value).strip()
    return text[:1] + "*" * (len(text) - 1) if len(text) > 1 else "*" * len(text)


@pass_eval_context
def _join(eval_ctx: EvalContext, value: Iterable[Any], d: str = "", attribute: Any = None) -> str:
    items = list(value)
    if attribute is not None:
        items = list(map(make_attrgetter(eval_ctx.environment, attribute), items))
    cap = getattr(eval_ctx.environment, "value_cap", MAX_STEPS)
    _check_size(d, cap, "the separator")
    if _str_size(items, cap) + len(str(d)) * len(items) > cap:
        raise _Limit(f"join would be longer than {cap} characters")
    return DEFAULT_FILTERS["join"](eval_ctx, items, d)  # type: ignore[no-any-return]


@pass_eval_context
def _replace(eval_ctx: EvalContext, s: Any, old: Any, new: Any, count: int | None = None) -> str:
    cap = getattr(eval_ctx.environment, "value_cap", MAX_STEPS)
    for part in (old, new):
        _check_size(part, cap, "a replace argument")
    text, old_s, new_s = str(s), str(old), str(new)
    hits = text.count(old_s) if old_s else len(text) + 1
    if count is not None and count >= 0:
        hits = min(hits, count)
    if len(text) + hits * max(0, len(new_s) - len(old_s)) > cap:
        raise _Limit(f"replace would be longer than {cap} characters")
    return DEFAULT_FILTERS["replace"](eval_ctx, s, old, new, count)  # type: ignore[no-any-return]


@pass_environment
def _sum(environment: Any, iterable: Iterable[Any], attribute: Any = None, start: Any = 0) -> Any:
    if not isinstance(start, numbers.Number):
        raise SecurityError("sum adds numbers only")
    return DEFAULT_FILTERS["sum"](environment, iterable, attribute, start)


@pass_eval_context
def _concat(eval_ctx: EvalContext, items: list[Any]) -> str:
    """Replaces ``a ~ b``, which Jinja would otherwise join without any size check."""
    _charge(len(items))
    _check_size(items, getattr(eval_ctx.environment, "value_cap", MAX_STEPS), "joining with ~")
    return markup_join(items) if eval_ctx.autoescape else str_join(items)


def _metered(iterable: Iterable[Any]) -> Iterator[Any]:
    """Wraps every ``{% for %}`` iterable: each item costs one step."""
    for item in iterable:
        _charge(1)
        yield item


@pass_environment
def _finalize(environment: Any, value: Any) -> Any:
    """Every ``{{ }}`` output: None prints as nothing, containers are size-checked first."""
    if value is None:
        return ""
    _charge(1)
    if not isinstance(value, str):
        _check_size(value, environment.value_cap, "an output value")
    return value


def _guard(name: str, func: Callable[..., Any], cap: int) -> Callable[..., Any]:
    """Charges a filter's work to the budget and refuses results longer than ``cap``."""
    skip = 1 if getattr(func, "jinja_pass_arg", None) is not None else 0

    @functools.wraps(func)  # copies jinja_pass_arg, so Jinja passes the same leading argument
    def guarded(*args: Any, **kwargs: Any) -> Any:
        value = args[skip] if len(args) > skip else None
        _charge(1 + (len(value) // 100 if isinstance(value, (str, list, tuple, dict)) else 0))
        if name in _STRINGIFYING and not isinstance(value, str):
            _check_size(value, cap, f"the input of {name}")
        result = func(*args, **kwargs)
        if isinstance(result, _SEQUENCES) and len(result) > cap:
            raise _Limit(f"{name} would return more than {cap} characters or items")
        return result

    return guarded


# ---- compile-time checks -------------------------------------------------------------------


def _is_literal(node: nodes.Node) -> bool:
    if isinstance(node, nodes.Const):
        return True
    if isinstance(node, (nodes.List, nodes.Tuple)):
        return all(_is_literal(item) for item in node.items)
    if isinstance(node, nodes.Dict):
        return all(_is_literal(p.key) and _is_literal(p.value) for p in node.items)
    return isinstance(node, (nodes.Neg, nodes.Pos)) and _is_literal(node.node)


def _const_of(node: nodes.Node, types: type | tuple[type, ...]) -> bool:
    value = getattr(node, "value", None)
    is_const = isinstance(node, nodes.Const) and not isinstance(value, bool)
    return is_const and isinstance(value, types)


def _close(name: str, choices: Iterable[str]) -> str:
    match = difflib.get_close_matches(name, list(choices), n=1)
    return f" (did you mean {match[0]!r}?)" if match else ""


class _Checker:
    """Walks a parsed AST and collects every construct outside the allowlist."""

    def __init__(self, filters: frozenset[str], tests: frozenset[str], value_cap: int) -> None:
        self.filters, self.tests, self.value_cap = filters, tests, value_cap
        self.problems: list[str] = []
        self.count = 0

    def check(self, tree: nodes.Node) -> list[str]:
        self._visit(tree)
        if self.count > MAX_NODES:
            self.problems.append(f"too complex: {self.count} syntax nodes (limit {MAX_NODES})")
        return list(dict.fromkeys(self.problems))

    def _visit(self, node: nodes.Node) -> None:
        self.count += 1
        kind, say = type(node), self.problems.append
        if kind is nodes.Call:
            label = getattr(node.node, "name", None) or getattr(node.node, "attr", "...")
            return say(f"calling {label}() is not allowed; use filters (value|name)")
        if kind not in _ALLOWED_NODES:
            return say(f"{_TAGS.get(kind, kind.__name__)} is not allowed")
        if kind is nodes.Const:
            self._const(node.value)
        elif kind is nodes.Name:
            self._private(node.name, "name")
            if node.name == "self":
                say("'self' is not allowed")
        elif kind is nodes.Getattr:
            self._private(node.attr, "attribute")
        elif kind is nodes.Getitem and isinstance(node.arg, nodes.Const):
            self._private(node.arg.value, "key")
        elif kind in (nodes.List, nodes.Tuple, nodes.Dict):
            if getattr(node, "ctx", "load") == "load" and not _is_literal(node):
                say("list, tuple and dict literals may only hold constants")
        elif kind is nodes.For and node.recursive:
            say("recursive loops are not allowed")
        elif kind is nodes.Mod and _const_of(node.left, str):
            say("'%' formatting of text is not allowed; use filters")
        elif kind is nodes.Pow and _const_of(node.right, (int, float)):
            if abs(node.right.value) > MAX_EXPONENT:
                say(f"exponents are limited to {MAX_EXPONENT}")
        elif kind is nodes.Mul:
            for text, count in ((node.left, node.right), (node.right, node.left)):
                if _const_of(text, str) and _const_of(count, int):
                    if len(text.value) * count.value > self.value_cap:
                        say(f"repeated text is limited to {self.value_cap} characters")
        elif kind is nodes.Test:
            self._named(node.name, self.tests, "test")
        elif kind is nodes.Filter:
            self._filter(node)
        if kind in (nodes.Test, nodes.Filter) and (node.dyn_args or node.dyn_kwargs):
            say("*args and **kwargs are not allowed")
        for child in node.iter_child_nodes():
            self._visit(child)

    def _const(self, value: Any) -> None:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if not abs(value) <= MAX_NUMBER:  # also catches inf
                self.problems.append(f"number literals are limited to {MAX_NUMBER:,}")
        elif isinstance(value, str) and len(value) > MAX_STRING_LITERAL:
            self.problems.append(f"string literals are limited to {MAX_STRING_LITERAL} characters")

    def _private(self, name: Any, what: str) -> None:
        if isinstance(name, str) and any(part.startswith("_") for part in name.split(".")):
            self.problems.append(f"{what} {name!r} is not allowed (names starting with '_')")

    def _named(self, name: str, allowed: frozenset[str], kind: str) -> bool:
        if name not in allowed:
            self.problems.append(f"unknown or disallowed {kind} {name!r}{_close(name, allowed)}")
        return name in allowed

    def _filter(self, node: nodes.Filter) -> None:
        """Attribute names and filter/test names given to map, select, sort... must be literals."""
        if not self._named(node.name, self.filters, "filter"):
            return
        attributes = [kw.value for kw in node.kwargs if kw.key == "attribute"]
        if node.name in ("selectattr", "rejectattr") and node.args:
            attributes.append(node.args[0])
        for attr in attributes:
            if _const_of(attr, (str, int)):
                self._private(attr.value, "attribute")
            else:
                self.problems.append(f"{node.name}: the attribute must be a literal")
        index, kind = _NAME_ARGS.get(node.name, (-1, ""))
        if index < 0 or (node.name == "map" and attributes) or len(node.args) <= index:
            return
        if not _const_of(node.args[index], str):
            self.problems.append(f"{node.name}: the {kind} name must be a string literal")
        else:
            allowed = self.filters if kind == "filter" else self.tests
            self._named(node.args[index].value, allowed, kind)


class _Rewriter(NodeTransformer):
    """Routes ``~`` and ``{% for %}`` through the size and step checks above."""

    def visit_Concat(self, node: nodes.Concat) -> nodes.Node:
        self.generic_visit(node)
        items = nodes.List(node.nodes, lineno=node.lineno)
        return nodes.Filter(items, "_ef_concat", [], [], None, None, lineno=node.lineno)

    def visit_For(self, node: nodes.For) -> nodes.Node:
        self.generic_visit(node)
        node.iter = nodes.Filter(node.iter, "_ef_loop", [], [], None, None, lineno=node.lineno)
        return node


def _runtime_error(source: str, exc: Exception) -> ExpressionError:
    if isinstance(exc, SecurityError):
        reason = f"refused: {exc}"
    elif isinstance(exc, UndefinedError):
        reason = f"undefined: {exc}"
    else:
        reason = f"{type(exc).__name__}: {exc}"
    return ExpressionError(source, reason[:500])


# ---- public API ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Condition:
    """A compiled ``when:`` expression; call it with the case's variables to get a bool."""

    source: str
    names: frozenset[str]  # top-level variables it reads
    _expression: TemplateExpression = field(repr=False, compare=False)
    _meter: Callable[[], Any] = field(repr=False, compare=False)

    def __call__(self, context: Mapping[str, Any]) -> bool:
        """Evaluate; every failure (undefined, type, refused, limit) is an ExpressionError."""
        return bool(self.value(context))

    def value(self, context: Mapping[str, Any]) -> Any:
        """The expression's value itself, for ``set:`` assignments and computed clock targets."""
        try:
            with self._meter():
                result = self._expression(context)
                if isinstance(result, jinja2.Undefined):
                    result._fail_with_undefined_error()
                return result
        except ExpressionError:
            raise
        except Exception as exc:
            raise _runtime_error(self.source, exc) from exc


@dataclass(frozen=True)
class Template:
    """A compiled notification template; ``html=True`` templates escape every value."""

    source: str
    names: frozenset[str]
    html: bool
    _template: jinja2.Template = field(repr=False, compare=False)
    _meter: Callable[[], Any] = field(repr=False, compare=False)
    _max_output_chars: int = field(repr=False, compare=False)

    def render(self, context: Mapping[str, Any]) -> str:
        """Render; failures and output over the cap raise ExpressionError (no truncation)."""
        parts: list[str] = []
        size = 0
        try:
            with self._meter():
                chunks = self._template.generate(context)
                try:
                    for chunk in chunks:
                        size += len(chunk)
                        if size > self._max_output_chars:
                            raise _Limit(f"output is longer than {self._max_output_chars} chars")
                        parts.append(chunk)
                finally:
                    chunks.close()
        except ExpressionError:
            raise
        except Exception as exc:
            raise _runtime_error(self.source, exc) from exc
        return "".join(parts)


class Sandbox:
    """One ImmutableSandboxedEnvironment with StrictUndefined, an allowlist of filters and tests,
    no globals, and caches of compiled conditions and templates.

    ``max_output_chars`` caps a rendered template; single intermediate values (text, lists) are
    capped at ``max(max_output_chars, 100_000)``. ``extra_filters`` are trusted Python callables
    the embedding application adds (or overrides) by name; they get the same size checks.
    """

    def __init__(
        self,
        *,
        max_output_chars: int = 20_000,
        extra_filters: Mapping[str, Callable[..., Any]] | None = None,
        max_steps: int = MAX_STEPS,
    ) -> None:
        if max_output_chars < 1 or max_steps < 1:
            raise ValueError("max_output_chars and max_steps must be positive")
        self.max_output_chars = max_output_chars
        self.max_steps = max_steps
        cap = max(max_output_chars, 100_000)
        env = _Environment(
            cap,
            undefined=StrictUndefined,
            autoescape=lambda name: name == _HTML,
            finalize=_finalize,
        )
        base: dict[str, Callable[..., Any]] = {n: DEFAULT_FILTERS[n] for n in _BUILTIN_FILTERS}
        base.update(join=_join, replace=_replace, sum=_sum, money=_money, date=_date,
                    datetime=_datetime, mask_phone=_mask_phone, mask_name=_mask_name)  # fmt: skip
        for name, func in (extra_filters or {}).items():
            if not name.isidentifier() or name.startswith("_") or not callable(func):
                raise ValueError(f"extra filter {name!r}: need an identifier and a callable")
            base[name] = func
        env.globals.clear()
        env.filters.clear()
        env.filters.update({name: _guard(name, func, cap) for name, func in base.items()})
        env.filters.update(_ef_concat=_concat, _ef_loop=_metered)
        env.tests.clear()
        env.tests.update({name: DEFAULT_TESTS[name] for name in SAFE_TESTS})
        self.filters: frozenset[str] = frozenset(base)
        self.tests: frozenset[str] = SAFE_TESTS
        self._env = env
        self._conditions = functools.lru_cache(maxsize=4096)(self._build_condition)
        self._templates = functools.lru_cache(maxsize=4096)(self._build_template)

    def compile_condition(self, source: str, variables: Collection[str]) -> Condition:
        """Compile a ``when:`` expression that may read only ``variables``; cached."""
        return self._conditions(source, frozenset(variables))

    def compile_template(
        self, source: str, variables: Collection[str], *, html: bool = False
    ) -> Template:
        """Compile a notification template that may read only ``variables``; cached."""
        return self._templates(source, frozenset(variables), bool(html))

    @contextmanager
    def _meter(self) -> Iterator[None]:
        token = _BUDGET.set([self.max_steps])
        try:
            yield
        finally:
            _BUDGET.reset(token)

    def _verify(self, source: str, tree: nodes.Template, names: frozenset[str]) -> frozenset[str]:
        """Refuse anything outside the allowlists, then any variable not in ``names``."""
        problems = _Checker(self.filters, self.tests, self._env.value_cap).check(tree)
        if problems:
            raise ExpressionError(source, "; ".join(problems))
        reads = frozenset(meta.find_undeclared_variables(tree))
        unknown = sorted(reads - names)
        if unknown:
            listed = ", ".join(f"{n!r}{_close(n, names)}" for n in unknown)
            allowed = ", ".join(sorted(names)) or "none"
            plural = "s" if len(unknown) > 1 else ""
            raise ExpressionError(source, f"unknown variable{plural} {listed}; allowed: {allowed}")
        return reads

    def _compile_error(self, source: str, exc: Exception) -> ExpressionError:
        if isinstance(exc, ExpressionError):
            return exc
        if isinstance(exc, TemplateSyntaxError):
            where = f" (line {exc.lineno})" if "\n" in source.strip() else ""
            error = ExpressionError(source, f"syntax error: {exc.message}{where}")
            error.lineno = exc.lineno  # type: ignore[attr-defined]
            return error
        return ExpressionError(source, f"cannot compile: {type(exc).__name__}: {exc}"[:500])

    def _build_condition(self, source: str, variables: frozenset[str]) -> Condition:
        if not isinstance(source, str) or not source.strip():
            raise ExpressionError(str(source), "empty condition; write e.g. 'cost <= 500'")
        if any(marker in source for marker in _MARKERS):
            raise ExpressionError(source, "a condition is one expression: write 'a > 1', not "
                                          "'{{ a > 1 }}', and no {% %} tags")  # fmt: skip
        env = self._env
        try:
            parser = Parser(env, source, state="variable")
            expr = parser.parse_expression()
            if not parser.stream.eos:
                token = parser.stream.current
                raise TemplateSyntaxError(f"unexpected {token.value!r} after the expression",
                                          token.lineno)  # fmt: skip
            checked = nodes.Template([nodes.Output([expr], lineno=1)], lineno=1)
            names = self._verify(source, checked.set_environment(env), variables)
            target = nodes.Name("result", "store", lineno=1)
            body = [nodes.Assign(target, _Rewriter().visit(expr), lineno=1)]
            template = env.from_string(nodes.Template(body, lineno=1).set_environment(env))
        except Exception as exc:
            raise self._compile_error(source, exc) from None
        return Condition(source, names, TemplateExpression(template, False), self._meter)

    def _build_template(self, source: str, variables: frozenset[str], html: bool) -> Template:
        env, name = self._env, (_HTML if html else None)
        try:
            tree = env.parse(source, name=name)
            names = self._verify(source, tree, variables)
            tree = _Rewriter().visit(tree).set_environment(env)
            code = env.compile(tree, name=name)
            template = env.template_class.from_code(env, code, env.make_globals(None), None)
        except Exception as exc:
            raise self._compile_error(source, exc) from None
        return Template(source, names, html, template, self._meter, self.max_output_chars)


@functools.lru_cache(maxsize=None)
def default_sandbox() -> Sandbox:
    """The shared Sandbox with default limits and no extra filters."""
    return Sandbox()
