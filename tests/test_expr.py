"""The sandbox for ``when:`` conditions and notification templates (estateflow.engine._expr).

The injection corpus lives in tests/data/injection_payloads.txt; every payload is its own test
case, tried as a condition, inside ``{{ }}`` and (for statement payloads) as a whole template.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from estateflow.engine._errors import ExpressionError
from estateflow.engine._expr import SAFE_FILTERS, Sandbox, default_sandbox

SECRET = "EF-SECRET-7f3a9c"  # reachable only through module globals, private attributes, env
PAYLOAD_FILE = Path(__file__).parent / "data" / "injection_payloads.txt"
PAYLOAD_VARIABLES = {"case", "data", "items", "x", "fn"}


def load_payloads() -> list[Any]:
    params = []
    for number, line in enumerate(PAYLOAD_FILE.read_text(encoding="utf-8").splitlines(), 1):
        if line.strip() and not line.lstrip().startswith("#"):
            params.append(pytest.param(line, id=f"L{number}"))
    return params


PAYLOADS = load_payloads()


@dataclass
class Case:
    number: str
    _secret: str = SECRET
    deleted: bool = False
    tags: list[str] = field(default_factory=list)

    def secret(self) -> str:
        return SECRET

    def delete(self) -> None:
        self.deleted = True


@pytest.fixture
def payload_context(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    monkeypatch.setenv("ESTATEFLOW_TEST_SECRET", SECRET)
    secret = SECRET
    return {
        "case": Case("BX-2026-000123"),
        "data": {"_secret": SECRET, "a": 1, "name": "kept"},
        "items": [1, 2, 3],
        "x": "abc",
        "fn": lambda: secret,
    }


def assert_refused(run: Any, context: dict[str, Any]) -> None:
    """Compile and run; only ExpressionError may come out, the secret never, nothing mutates."""
    with pytest.raises(ExpressionError) as info:
        output = run()(context)
        pytest.fail(f"not refused; produced {output!r}")
    assert SECRET not in str(info.value)
    assert context["items"] == [1, 2, 3]
    assert context["data"] == {"_secret": SECRET, "a": 1, "name": "kept"}
    assert context["case"].deleted is False
    assert os.environ["ESTATEFLOW_TEST_SECRET"] == SECRET


def test_payload_corpus_is_large_enough() -> None:
    assert len(PAYLOADS) >= 40


@pytest.mark.parametrize("payload", PAYLOADS)
def test_payload_is_refused_as_condition(payload: str, payload_context: dict[str, Any]) -> None:
    sandbox = Sandbox()
    assert_refused(lambda: sandbox.compile_condition(payload, PAYLOAD_VARIABLES), payload_context)


@pytest.mark.parametrize("html", [False, True], ids=["text", "html"])
@pytest.mark.parametrize("payload", PAYLOADS)
def test_payload_is_refused_inside_a_template(
    payload: str, html: bool, payload_context: dict[str, Any]
) -> None:
    sandbox = Sandbox()

    def run() -> Any:
        return sandbox.compile_template(f"{{{{ {payload} }}}}", PAYLOAD_VARIABLES, html=html).render

    assert_refused(run, payload_context)


@pytest.mark.parametrize("payload", [p for p in PAYLOADS if "{%" in p.values[0]])
def test_statement_payload_is_refused_as_a_whole_template(
    payload: str, payload_context: dict[str, Any]
) -> None:
    sandbox = Sandbox()
    run = lambda: sandbox.compile_template(payload, PAYLOAD_VARIABLES).render  # noqa: E731
    assert_refused(run, payload_context)


# ---- conditions ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cost", "expected"),
    [(Decimal("499.99"), True), (Decimal("500"), True), (Decimal("500.00"), True),
     (Decimal("500.01"), False), (0, True), (Decimal("-1"), True)],
)  # fmt: skip
def test_condition_compares_decimal_money_exactly_at_the_bound(cost: Any, expected: bool) -> None:
    cond = default_sandbox().compile_condition(
        "estimated_cost <= 500 and trades|length > 1", ["estimated_cost", "trades"]
    )
    assert cond({"estimated_cost": cost, "trades": ["水", "电"]}) is expected
    assert cond({"estimated_cost": cost, "trades": ["水"]}) is False
    assert cond.names == frozenset({"estimated_cost", "trades"})


@pytest.mark.parametrize(
    ("source", "context", "expected"),
    [
        ("assignee is none", {"assignee": None}, True),
        ("assignee is not none", {"assignee": None}, False),
        ("assignee is none", {"assignee": "张三"}, False),
        ("'电' in trades", {"trades": ["水", "电"]}, True),
        ("category in ['漏水', '停电']", {"category": "停电"}, True),
        ("category not in ('漏水', '停电')", {"category": "噪音"}, True),
        ("priority == 'high' or priority == 'urgent'", {"priority": "urgent"}, True),
        ("community.name == '阳光花园'", {"community": {"name": "阳光花园"}}, True),
        ("number >= 'BX-2026'", {"number": "BX-2026-000123"}, True),
        ("trades", {"trades": []}, False),
        ("trades|select('in', ['电'])|list|length == 1", {"trades": ["水", "电"]}, True),
        ("items|sum(attribute='cost') > 100", {"items": [{"cost": 60}, {"cost": 50}]}, True),
        ("opened.year == 2026 and opened.month == 3", {"opened": date(2026, 3, 1)}, True),
        ("data.items|length == 2", {"data": {"items": [1, 2]}}, True),
        ("result > 1", {"result": 2}, True),
        ("(cost * 2) > 1000", {"cost": Decimal("499.99")}, False),
    ],
)
def test_condition_evaluates(source: str, context: dict[str, Any], expected: bool) -> None:
    assert default_sandbox().compile_condition(source, context)(context) is expected


def test_unknown_variable_is_named_with_a_suggestion_and_the_allowed_names() -> None:
    with pytest.raises(ExpressionError) as info:
        default_sandbox().compile_condition("estimted_cost <= 500", ["trades", "estimated_cost"])
    message = str(info.value)
    assert "'estimted_cost'" in message
    assert "did you mean 'estimated_cost'?" in message
    assert "allowed: estimated_cost, trades" in message
    assert info.value.source == "estimted_cost <= 500"


def test_unknown_filter_is_named_with_a_suggestion() -> None:
    with pytest.raises(ExpressionError, match=r"'moeny' \(did you mean 'money'\?\)"):
        default_sandbox().compile_template("{{ cost|moeny }}", ["cost"])


def test_missing_value_at_run_time_is_an_expression_error_not_none() -> None:
    cond = default_sandbox().compile_condition("case.estimated_cost <= 500", ["case"])
    with pytest.raises(ExpressionError, match="undefined"):
        cond({"case": {}})
    with pytest.raises(ExpressionError, match="undefined"):
        cond({})


@pytest.mark.parametrize(
    ("source", "context"),
    [("cost > 1", {"cost": "12"}), ("1 / n > 0", {"n": 0}), ("x|money == '1'", {"x": "abc"})],
)
def test_runtime_errors_become_expression_errors(source: str, context: dict[str, Any]) -> None:
    with pytest.raises(ExpressionError):
        default_sandbox().compile_condition(source, context)(context)


def test_syntax_error_carries_jinja_message_and_line() -> None:
    with pytest.raises(ExpressionError, match="syntax error") as info:
        default_sandbox().compile_condition("estimated_cost <=", ["estimated_cost"])
    assert info.value.lineno == 1  # type: ignore[attr-defined]


def test_condition_must_be_one_expression() -> None:
    for source in ["{{ a }}", "{% if a %}1{% endif %}", "{% for i in a %}{% endfor %}", "a b"]:
        with pytest.raises(ExpressionError):
            default_sandbox().compile_condition(source, ["a"])


def test_reserved_globals_are_gone_even_when_declared() -> None:
    for name in ["range", "lipsum", "cycler", "joiner", "namespace", "dict"]:
        template = default_sandbox().compile_template(f"{{{{ {name} }}}}", [name])
        with pytest.raises(ExpressionError, match="undefined"):
            template.render({})


def test_compiled_objects_are_cached_by_source_variables_and_html() -> None:
    sandbox = Sandbox()
    assert sandbox.compile_condition("a > 1", ["a"]) is sandbox.compile_condition("a > 1", ("a",))
    other = sandbox.compile_condition("a > 1", ["a", "b"])
    assert sandbox.compile_condition("a > 1", ["a"]) is not other
    text = sandbox.compile_template("{{ a }}", ["a"])
    assert text is sandbox.compile_template("{{ a }}", ["a"])
    assert text is not sandbox.compile_template("{{ a }}", ["a"], html=True)
    assert default_sandbox() is default_sandbox()


def test_step_budget_stops_runaway_loops() -> None:
    sandbox = Sandbox(max_steps=10_000)
    template = sandbox.compile_template(
        "{% for a in rows %}{% for b in rows %}{% endfor %}{% endfor %}", ["rows"]
    )
    assert template.render({"rows": list(range(50))}) == ""
    with pytest.raises(ExpressionError, match="step budget"):
        template.render({"rows": list(range(1000))})


@pytest.mark.parametrize(
    "payload",
    ["x.__class__", "''.__class__.__mro__", "data._secret", "data['__class__']",
     "case.secret", "case.delete()", "items.append(1)", "x.format('{0.__class__}')",
     "'a' * 10**9", "9**9**9", "'%999999d' % 1", "items|map(attribute='__class__')|list"],
)  # fmt: skip
def test_run_time_layer_alone_refuses_without_the_compile_time_checks(
    payload: str, payload_context: dict[str, Any]
) -> None:
    """Defence in depth: compile straight through Jinja, skipping the AST allowlist."""
    from jinja2.exceptions import SecurityError

    expression = Sandbox()._env.compile_expression(payload, undefined_to_none=False)
    with pytest.raises(SecurityError):
        expression(payload_context)
    assert payload_context["items"] == [1, 2, 3] and not payload_context["case"].deleted


def test_plain_attributes_and_mapping_keys_are_readable_but_methods_are_not() -> None:
    sandbox = default_sandbox()
    case = Case("BX-1", tags=["漏水"])
    template = sandbox.compile_template("{{ c.number }} {{ c.tags|join }}", ["c"])
    assert template.render({"c": case}) == "BX-1 漏水"
    with pytest.raises(ExpressionError, match="refused"):
        sandbox.compile_condition("c.delete", ["c"])({"c": case})


# ---- templates -----------------------------------------------------------------------------


def test_template_renders_chinese_notification() -> None:
    template = default_sandbox().compile_template("案件 {{ case.number }} 已超时", ["case"])
    assert template.render({"case": Case("BX-2026-000123")}) == "案件 BX-2026-000123 已超时"
    assert template.names == frozenset({"case"})


def test_template_loops_and_conditionals() -> None:
    source = (
        "{% for t in trades %}{{ loop.index }}. {{ t.name }}"
        "{% if t.urgent %}（急）{% endif %}\n{% endfor %}"
    )
    template = default_sandbox().compile_template(source, ["trades"])
    trades = [{"name": "水", "urgent": True}, {"name": "电", "urgent": False}]
    assert template.render({"trades": trades}) == "1. 水（急）\n2. 电\n"


def test_none_renders_as_empty_text() -> None:
    template = default_sandbox().compile_template("备注：{{ note }}", ["note"])
    assert template.render({"note": None}) == "备注："


def test_html_templates_escape_values_and_text_templates_do_not() -> None:
    sandbox = default_sandbox()
    context = {"name": "<script>alert(1)</script>"}
    html = sandbox.compile_template("<p>{{ name }}{{ name ~ '!' }}</p>", ["name"], html=True)
    text = sandbox.compile_template("{{ name }}", ["name"])
    assert html.render(context) == (
        "<p>&lt;script&gt;alert(1)&lt;/script&gt;&lt;script&gt;alert(1)&lt;/script&gt;!</p>"
    )
    assert text.render(context) == context["name"]


def test_output_over_the_cap_raises_instead_of_truncating() -> None:
    sandbox = Sandbox(max_output_chars=100)
    template = sandbox.compile_template("{% for i in rows %}0123456789{% endfor %}", ["rows"])
    assert len(template.render({"rows": range(10)})) == 100
    with pytest.raises(ExpressionError, match="longer than 100"):
        template.render({"rows": range(11)})
    with pytest.raises(ExpressionError, match="longer than 100"):
        sandbox.compile_template("{{ text }}", ["text"]).render({"text": "x" * 101})


def test_literal_limits_are_checked_at_compile_time() -> None:
    sandbox = default_sandbox()
    with pytest.raises(ExpressionError, match="string literals are limited"):
        sandbox.compile_condition(f"x == '{'a' * 1001}'", ["x"])
    with pytest.raises(ExpressionError, match="number literals are limited"):
        sandbox.compile_condition("x < 10000000000000", ["x"])
    assert sandbox.compile_condition("x < 1000000000000", ["x"])({"x": 1})


# ---- filters -------------------------------------------------------------------------------


def render(source: str, **context: Any) -> str:
    return default_sandbox().compile_template(source, context).render(context)


@pytest.mark.parametrize(
    ("value", "expected"),
    [(Decimal("1234.5"), "1,234.50"), (Decimal("0.005"), "0.01"), (Decimal("2.675"), "2.68"),
     (1234567, "1,234,567.00"), (0.1, "0.10"), ("88", "88.00"), (Decimal("-1234.5"), "-1,234.50"),
     (Decimal("-0.001"), "0.00")],
)  # fmt: skip
def test_money_filter(value: Any, expected: str) -> None:
    assert render("{{ v|money }}", v=value) == expected


def test_money_filter_refuses_non_numbers() -> None:
    for value in [True, "abc", [1]]:
        with pytest.raises(ExpressionError):
            render("{{ v|money }}", v=value)


@pytest.mark.parametrize(
    ("value", "expected"),
    [("13812341234", "138****1234"), ("138 1234 1234", "138****1234"),
     ("+8613812341234", "+86138****1234"), ("62123456", "62***456"), ("12345", "***45"),
     (13812341234, "138****1234")],
)  # fmt: skip
def test_mask_phone_filter(value: Any, expected: str) -> None:
    assert render("{{ v|mask_phone }}", v=value) == expected


@pytest.mark.parametrize(
    ("value", "expected"), [("张三", "张*"), ("王小明", "王**"), ("欧阳娜娜", "欧***"), ("张", "*")]
)
def test_mask_name_filter(value: str, expected: str) -> None:
    assert render("{{ v|mask_name }}", v=value) == expected


def test_datetime_and_date_filters() -> None:
    moment = datetime(2026, 3, 1, 1, 30, tzinfo=timezone.utc)
    assert render("{{ t|datetime }}", t=moment) == "2026-03-01 01:30"
    assert render("{{ t|datetime('%Y-%m-%d %H:%M') }}", t=moment) == "2026-03-01 01:30"
    shanghai = "{{ t|datetime('%Y年%m月%d日 %H:%M', tz='Asia/Shanghai') }}"
    assert render(shanghai, t=moment) == "2026年03月01日 09:30"
    assert render("{{ t|date }}", t=moment) == "2026-03-01"
    assert render("{{ t|date('%m/%d') }}", t=date(2026, 3, 1)) == "03/01"
    assert render("{{ t|datetime }}", t="2026-03-01T01:30:00Z") == "2026-03-01 01:30"
    with pytest.raises(ExpressionError):
        render("{{ t|datetime(tz='Asia/Shanghai') }}", t=datetime(2026, 3, 1))  # naive
    with pytest.raises(ExpressionError):
        render("{{ t|datetime(tz='../../etc/passwd') }}", t=moment)


def test_safe_builtin_filters_work() -> None:
    trades = [{"name": "水"}, {"name": "电"}]
    assert render("{{ ts|map(attribute='name')|join('、') }}", ts=trades) == "水、电"
    assert render("{{ s|truncate(5, true, '…', 0) }}", s="0123456789") == "0123…"
    assert render("{{ s|replace('-', '/') }}", s="a-b") == "a/b"
    assert render("{{ d.missing|default('无') }}", d={}) == "无"


def test_extra_filters_are_added_and_checked() -> None:
    sandbox = Sandbox(extra_filters={"shout": lambda s: f"{s}!"})
    assert "shout" in sandbox.filters and SAFE_FILTERS < sandbox.filters
    assert sandbox.compile_template("{{ a|shout }}", ["a"]).render({"a": "好"}) == "好!"
    with pytest.raises(ValueError):
        Sandbox(extra_filters={"_hidden": str})
