"""Rows of an old register → checked case values, with every problem located by line and column.

Nothing here touches the database: the whole file is read and checked first, so a file with
twenty bad rows reports twenty problems at once instead of stopping at the first.
Values are converted the way a Chinese register writes them — ``2025年9月26日 14:30``,
``是``/``否``, ``1,234.50元``, ``漏水、电路`` — and then go through the same field checks as
:meth:`Engine.open` (types, enum values, patterns, required fields).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, time
from typing import Any
from zoneinfo import ZoneInfo

from ._fields import is_missing, validate_data
from ._spec import WorkflowSpec
from ._types import Actor

__all__ = ["ColumnPlan", "ImportProblem", "ImportRow", "SPECIAL", "check_rows", "parse_local", "plan_columns"]

# Targets that are not fields: where the case number, the true received time, the state and
# the closing time come from. "-" ignores a column.
SPECIAL = ("number", "received_at", "state", "closed_at")
IGNORE = "-"

_SYNONYMS: dict[str, tuple[str, ...]] = {
    "number": ("编号", "案件编号", "登记编号", "单号", "工单号", "投诉编号", "报修编号", "受理编号", "case number"),
    "received_at": ("受理时间", "登记时间", "来电时间", "来访时间", "来电/来访时间", "来电来访时间", "接报时间",
                    "报修时间", "投诉时间", "接收时间", "日期", "时间", "received", "received at"),
    "closed_at": ("办结时间", "结案时间", "关闭时间", "完成时间", "处理完成时间", "闭单时间", "closed", "closed at"),
    "state": ("状态", "处理状态", "办理状态", "案件状态", "当前状态", "办结情况", "status"),
    "channel": ("来源", "渠道", "来源渠道", "方式", "受理方式", "来电/来访", "投诉方式"),
    "customer_name": ("客户", "客户姓名", "姓名", "业主", "业主姓名", "来电人", "来访人", "投诉人", "报修人", "联系人"),
    "phone": ("电话", "联系电话", "手机", "手机号", "联系方式"),
    "community": ("小区", "项目", "小区/项目", "项目名称", "小区名称"),
    "building": ("楼栋", "楼号", "栋"),
    "unit": ("房号", "单元", "房间号", "单元/房号", "地址", "住址"),
    "summary": ("内容", "摘要", "事由", "投诉内容", "报修内容", "来电内容", "来访内容", "问题描述", "诉求", "来电/来访内容"),
    "category": ("类别", "分类", "类型", "投诉类别", "报修类别"),
    "department": ("部门", "责任部门", "处理部门", "承办部门"),
    "assignee": ("责任人", "处理人", "经办人", "承办人", "维修人"),
    "resolution": ("处理结果", "结果", "处理情况"),
    "callback_comment": ("回访", "回访情况", "回访意见"),
    "callback_rating": ("回访评价", "满意度"),
    "severity": ("严重程度", "等级"),
}
_ROW_COUNTERS = {"序号", "no", "no.", "#"}  # row counters of the sheet, not case numbers
_CLOSED_WORDS = {"已办结", "办结", "已结案", "结案", "已关闭", "关闭", "已完结", "完结"}
_TRUE = {"true", "yes", "y", "1", "是", "有", "√", "✓", "对"}
_FALSE = {"false", "no", "n", "0", "否", "无", "×", "✗", "错"}
DATE_FORMATS = "2025-09-26 14:30, 2025/9/26 14:30 or 2025年9月26日 14:30"


def norm_header(text: str) -> str:
    return re.sub(r"[\s*:：]+", "", unicodedata.normalize("NFKC", text)).lower()


@dataclass(frozen=True, order=True)
class ImportProblem:
    """One bad cell (or header): the line a person sees in the file and the column's name."""

    line: int
    column: str
    message: str

    def __str__(self) -> str:
        return f"line {self.line}, column {self.column}: {self.message}"


@dataclass(frozen=True)
class ImportRow:
    line: int
    number: str | None
    received_at: datetime
    state: str
    closed_at: datetime | None
    data: dict[str, Any]


@dataclass
class ColumnPlan:
    """Which column feeds which target, and what the header alone already tells is wrong."""

    targets: dict[str, str]  # column -> target (field name or SPECIAL)
    problems: list[ImportProblem]
    warnings: list[str]

    def column_of(self, target: str) -> str:
        return next((c for c, t in self.targets.items() if t == target), target)


def known_header(spec: WorkflowSpec) -> dict[str, str]:
    """Normalised header text → target, from field names, their zh/en labels and synonyms."""
    table: dict[str, str] = {}
    for target, words in _SYNONYMS.items():
        if target in SPECIAL or target in spec.fields:
            for word in words:
                table.setdefault(norm_header(word), target)
    for name in SPECIAL:
        table[norm_header(name)] = name
    for name, field in spec.fields.items():
        table[norm_header(name)] = name
        if field.label is not None:
            table[norm_header(field.label.zh)] = name
            table[norm_header(field.label.en)] = name
    return table


def plan_columns(spec: WorkflowSpec, columns: list[str], header_line: int, mapping: Mapping[str, str],
                 duplicates: list[str]) -> ColumnPlan:
    known = known_header(spec)
    problems = [ImportProblem(header_line, d, "this column title appears twice; rename one") for d in duplicates]
    warnings: list[str] = []
    targets: dict[str, str] = {}
    for column, target in mapping.items():
        if column not in columns:
            problems.append(ImportProblem(header_line, column, f"given in --map but not in the file "
                                                               f"(columns: {', '.join(columns)})"))
    for column in columns:
        target = mapping.get(column) or known.get(norm_header(column))
        if target == IGNORE:
            continue
        if target is None:
            if norm_header(column) not in _ROW_COUNTERS:
                warnings.append(f"column {column!r} is not imported (map it with --map '{column}=FIELD', "
                                f"or --map '{column}=-' to silence this)")
            continue
        if target in targets.values():
            other = next(c for c, t in targets.items() if t == target)
            problems.append(ImportProblem(header_line, column, f"maps to {target!r} like column {other!r}; "
                                                               f"map one of them elsewhere or to '-'"))
            continue
        targets[column] = target
    present = set(targets.values())
    if "received_at" not in present:
        problems.append(ImportProblem(header_line, "received_at", "no column gives the received time (受理时间); "
                                                                  "map one with --map COLUMN=received_at"))
    for name, field in spec.fields.items():
        if field.required and field.default is None and name not in present:
            problems.append(ImportProblem(header_line, name, f"no column for the required field {name!r}; "
                                                             f"map one with --map COLUMN={name}"))
    return ColumnPlan(targets, problems, warnings)


def check_mapping(spec: WorkflowSpec, mapping: Mapping[str, str], state_map: Mapping[str, str],
                  value_map: Mapping[str, Mapping[str, str]]) -> None:
    """Mistakes in the options themselves (not in the file): raise at once, naming the option."""
    for column, target in mapping.items():
        if target != IGNORE and target not in SPECIAL and target not in spec.fields:
            raise ValueError(f"--map {column}={target}: {target!r} is not a field of {spec.name} "
                             f"(fields: {', '.join(spec.fields)}; also {', '.join(SPECIAL)} or '-')")
    for text, state in state_map.items():
        if state not in spec.states:
            raise ValueError(f"--state-map {text}={state}: {spec.name} has no state {state!r} "
                             f"(states: {', '.join(spec.states)})")
    for name, pairs in value_map.items():
        field = spec.fields.get(name)
        if field is None:
            raise ValueError(f"--value {name}:...: {name!r} is not a field of {spec.name}")
        for text, value in pairs.items():
            if field.type == "enum" and value not in (field.values or []):
                raise ValueError(f"--value {name}:{text}={value}: {value!r} is not one of "
                                 f"{', '.join(field.values or [])}")


# -- dates ------------------------------------------------------------------------------------
_DATE = re.compile(r"(\d{4})\s*[-/.年]\s*(\d{1,2})\s*[-/.月]\s*(\d{1,2})\s*日?")
_TIME = re.compile(r"(上午|下午|晚上|中午)?\s*(\d{1,2})\s*[:时点]\s*(\d{1,2})?\s*分?\s*(?::?\s*(\d{1,2})\s*秒?)?"
                   r"(?:\.\d+)?\s*(Z|[+-]\d{2}:?\d{2})?")


def parse_local(value: Any, zone: ZoneInfo) -> datetime:
    """A register date or date and time, read in ``zone`` unless it carries its own offset."""
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=zone)
    if isinstance(value, date):
        return datetime.combine(value, time(0), tzinfo=zone)
    text = unicodedata.normalize("NFKC", str(value)).strip()
    head = _DATE.match(text)
    if head is None:
        raise ValueError(f"not a date: {value!r} (write {DATE_FORMATS})")
    rest = text[head.end():].strip().lstrip("T").strip()
    hour = minute = second = 0
    offset = None
    if rest:
        clock = _TIME.fullmatch(rest)
        if clock is None:
            raise ValueError(f"not a time of day: {value!r} (write {DATE_FORMATS})")
        noon, h, m, s, offset = clock.groups()
        hour, minute, second = int(h), int(m or 0), int(s or 0)
        if noon in ("下午", "晚上") and hour < 12:
            hour += 12
    try:
        result = datetime(int(head.group(1)), int(head.group(2)), int(head.group(3)), hour, minute, second)
    except ValueError as exc:
        raise ValueError(f"not a date: {value!r} ({exc})") from None
    if offset:
        if offset == "Z":
            offset = "+00:00"
        elif ":" not in offset:
            offset = f"{offset[:3]}:{offset[3:]}"
        return datetime.fromisoformat(result.isoformat() + offset)
    return result.replace(tzinfo=zone)


# -- cells → values -----------------------------------------------------------------------------
def _convert(spec: WorkflowSpec, name: str, raw: Any, zone: ZoneInfo,
             value_map: Mapping[str, Mapping[str, str]]) -> Any:
    field = spec.fields[name]
    mapped = value_map.get(name, {})
    if isinstance(raw, str) and raw in mapped:
        return mapped[raw]
    kind = field.type
    if kind == "enum" and isinstance(raw, str):
        lowered = {v.lower(): v for v in field.values or []}
        return lowered.get(raw.lower(), raw)
    if kind == "bool" and not isinstance(raw, bool):
        word = str(raw).strip().lower()
        if word in _TRUE:
            return True
        if word in _FALSE:
            return False
        raise ValueError(f"expected yes or no (是/否), got {raw!r}")
    if kind == "date":
        if isinstance(raw, (date, datetime)) and not (isinstance(raw, datetime) and raw.time() != time(0)):
            return raw.date() if isinstance(raw, datetime) else raw
        return parse_local(raw, zone).date()
    if kind == "datetime":
        return parse_local(raw, zone)
    if kind == "list" and not isinstance(raw, list):
        return [item.strip() for item in re.split(r"[、,，;；/\n]", str(raw)) if item.strip()]
    if kind == "decimal" and isinstance(raw, str):
        return re.sub(r"^[¥￥]|元$", "", raw.strip()).strip()
    if kind == "str" and isinstance(raw, (datetime, date)):
        return raw.isoformat()
    if kind == "str" and isinstance(raw, float):
        return repr(raw)
    return raw


def _state_of(spec: WorkflowSpec, raw: Any, state_map: Mapping[str, str]) -> str | None:
    text = str(raw).strip()
    if text in state_map:
        return state_map[text]
    folded = text.lower()
    for name in spec.states:
        label = spec.state(name).label
        if folded == name.lower() or (label is not None and folded in (label.zh.lower(), label.en.lower())):
            return name
    if text in _CLOSED_WORDS and "closed" in spec.states and spec.state("closed").final:
        return "closed"
    return None


def check_rows(spec: WorkflowSpec, plan: ColumnPlan, rows: list[tuple[int, dict[str, Any]]], *, zone: ZoneInfo,
               state_map: Mapping[str, str], value_map: Mapping[str, Mapping[str, str]], actor: Actor,
               now: datetime) -> tuple[list[ImportRow], list[ImportProblem], dict[str, int]]:
    """Every row checked; a row with any problem is left out and all its problems reported.
    Also returns every case number in the file with the line it first appears on."""
    good: list[ImportRow] = []
    problems: list[ImportProblem] = []
    seen: dict[str, int] = {}
    number_column = next((c for c, t in plan.targets.items() if t == "number"), None)
    for line, cells in rows:
        found: list[ImportProblem] = []
        row = _check_row(spec, plan, line, cells, zone, state_map, value_map, actor, now, found)
        number = str(cells.get(number_column, "")).strip() if number_column else ""
        if number and number in seen:
            found.append(ImportProblem(line, plan.column_of("number"),
                                       f"duplicate number {number!r} (also on line {seen[number]})"))
        elif number:
            seen[number] = line
        problems.extend(found)
        if row is not None and not found:
            good.append(row)
    return good, problems, seen


def _check_row(spec: WorkflowSpec, plan: ColumnPlan, line: int, cells: Mapping[str, Any], zone: ZoneInfo,
               state_map: Mapping[str, str], value_map: Mapping[str, Mapping[str, str]], actor: Actor,
               now: datetime, found: list[ImportProblem]) -> ImportRow | None:
    def bad(target: str, message: str) -> None:
        found.append(ImportProblem(line, plan.column_of(target), message))

    special: dict[str, Any] = {}
    given: dict[str, Any] = {}
    for column, target in plan.targets.items():
        raw = cells.get(column, "")
        if raw == "" or raw is None:
            continue
        if target in SPECIAL:
            special[target] = raw
            continue
        try:
            given[target] = _convert(spec, target, raw, zone, value_map)
        except ValueError as exc:
            given[target] = raw
            bad(target, str(exc))
            continue
    converted = {k: v for k, v in given.items() if not any(p.column == plan.column_of(k) for p in found)}
    clean, field_problems = validate_data(spec.fields, converted)
    for problem in field_problems:
        hint = ""
        if spec.fields[problem.field].type == "enum":
            hint = f" (translate it with --value '{problem.field}:{given.get(problem.field)}=VALUE')"
        bad(problem.field, problem.message + hint)
    for name, field in spec.fields.items():
        if name not in clean and name not in given and field.default is not None:
            clean[name] = validate_data({name: field}, {name: field.default})[0][name]
        if field.required and is_missing(clean.get(name)) and name not in given:
            bad(name, "required, but empty")
    received = closed = None
    if "received_at" in special:
        try:
            received = parse_local(special["received_at"], zone)
        except ValueError as exc:
            bad("received_at", str(exc))
        else:
            if received > now:
                bad("received_at", f"{received.isoformat()} is after the import time {now.isoformat()}")
    elif "received_at" in plan.targets.values():
        bad("received_at", "required, but empty")
    if "closed_at" in special:
        try:
            closed = parse_local(special["closed_at"], zone)
        except ValueError as exc:
            bad("closed_at", str(exc))
        else:
            if received is not None and closed < received:
                bad("closed_at", f"{closed.isoformat()} is before the received time {received.isoformat()}")
            elif closed > now:
                bad("closed_at", f"{closed.isoformat()} is after the import time {now.isoformat()}")
    state = _row_state(spec, special, closed, state_map, bad, "closed_at" in special)
    if not actor.serves(clean.get("community")):
        bad("community", f"actor {actor.id!r} does not serve community {clean.get('community')!r}")
    number = str(special["number"]).strip() if "number" in special else None
    if received is None or state is None or found:
        return None
    return ImportRow(line, number, received, state, closed, clean)


def _row_state(spec: WorkflowSpec, special: Mapping[str, Any], closed: datetime | None,
               state_map: Mapping[str, str], bad: Any, closed_given: bool) -> str | None:
    if "state" in special:
        state = _state_of(spec, special["state"], state_map)
        if state is None:
            labels = [f"{n} ({spec.state(n).label.zh})" if spec.state(n).label else n for n in spec.states]
            bad("state", f"unknown state {special['state']!r} of {spec.name} (states: {', '.join(labels)}); "
                         f"translate it with --state-map '{special['state']}=STATE'")
            return None
    elif closed_given:
        if "closed" not in spec.states or not spec.state("closed").final:
            bad("state", "a closed time is given but no state, and the workflow has no final state 'closed'")
            return None
        state = "closed"
    else:
        state = spec.initial_state
    final = spec.state(state).final
    if final and closed is None and not closed_given:
        bad("closed_at", f"state {state!r} is final: the closing time (办结时间) is required")
        return None
    if not final and closed_given:
        bad("closed_at", f"a closing time is given but state {state!r} is not final")
        return None
    return state
