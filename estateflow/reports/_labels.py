"""Column headings and code labels of the reports, in Chinese and English.

Why a table of words and not the workflow YAML: headings such as 本周受理 or 按时率 belong to
the report, not to any workflow. Labels that a workflow declares (titles, state and clock
labels) are taken from the workflow itself.
"""

from __future__ import annotations

from typing import Any

__all__ = ["LANGUAGES", "code_label", "text", "label_of"]

LANGUAGES = ("zh", "en")

WORDS: dict[str, tuple[str, str]] = {
    # report titles
    "weekly": ("客服周报", "Weekly report"),
    "register": ("来电、来访登记表", "Register of calls and visits"),
    "sla": ("时限达成情况", "SLA compliance"),
    "ratings": ("维修人员评比", "Repair ratings"),
    # sections
    "summary": ("汇总", "Summary"),
    "by_workflow": ("按业务", "By workflow"),
    "by_category": ("按类别", "By category"),
    "by_department": ("按责任部门", "By department"),
    "by_handler": ("按责任人", "By handler"),
    "by_clock": ("按时限", "By clock"),
    "per_day": ("每日受理与办结", "Opened and closed per day"),
    "unresolved": ("未办结事项", "Unresolved cases"),
    "major": ("重大投诉", "Major complaints"),
    "clocks": ("时限", "Clocks"),
    "levels": ("超时升级级别", "Breaches by escalation level"),
    "workers": ("维修人员", "Repair workers"),
    "managers": ("管理人员（按部门）", "Managers (by department)"),
    # columns
    "key": ("项目", "Item"),
    "workflow": ("业务", "Workflow"),
    "category": ("类别", "Category"),
    "department": ("责任部门", "Department"),
    "handler": ("责任人", "Handler"),
    "manager": ("负责人", "Manager"),
    "opened": ("受理", "Opened"),
    "closed": ("办结", "Closed"),
    "open_at_end": ("未办结", "Still open"),
    "overdue_at_end": ("超时未办", "Overdue"),
    "clocks_stopped": ("到期计时", "Clocks stopped"),
    "clocks_met": ("按时", "On time"),
    "on_time_rate": ("按时率", "On-time rate"),
    "clock": ("时限", "Clock"),
    "soft": ("软目标", "Soft"),
    "started": ("开始计时", "Started"),
    "stopped": ("停止计时", "Stopped"),
    "met": ("达成", "Met"),
    "breached": ("超时", "Breached"),
    "running": ("计时中", "Running"),
    "breaches": ("本期超时事件", "Breaches in period"),
    "median_hours": ("中位用时（小时）", "Median hours"),
    "p90_hours": ("90%用时（小时）", "p90 hours"),
    "level": ("级别", "Level"),
    "count": ("数量", "Count"),
    "day": ("日期", "Day"),
    "number": ("编号", "Number"),
    "time": ("时间", "Time"),
    "received": ("受理时间", "Received"),
    "channel": ("来源", "Channel"),
    "customer": ("客户", "Customer"),
    "phone": ("电话", "Phone"),
    "community": ("小区", "Community"),
    "unit": ("房号", "Unit"),
    "summary_text": ("内容摘要", "Summary"),
    "state": ("状态", "State"),
    "result": ("处理结果", "Result"),
    "callback": ("回访", "Callback"),
    "age_days": ("已历天数", "Age (days)"),
    "next_due": ("下一到期", "Next due"),
    "overdue": ("超时", "Overdue"),
    "jobs": ("回访工单", "Jobs called back"),
    "quality": ("质量（平均）", "Quality (avg)"),
    "attitude": ("态度（平均）", "Attitude (avg)"),
    "score": ("综合得分", "Score"),
    "satisfied": ("满意", "Satisfied"),
    "basically_satisfied": ("基本满意", "Basically satisfied"),
    "dissatisfied": ("不满意", "Dissatisfied"),
    "satisfaction_rate": ("满意率", "Satisfaction rate"),
    "rework": ("返工", "Rework"),
    "signed": ("客户签认", "Signed off"),
    "rank": ("名次", "Rank"),
    "working_days": ("工作日", "Working days"),
    "period": ("期间", "Period"),
    "total": ("合计", "Total"),
    "yes": ("是", "yes"),
    "none": ("（无）", "(none)"),
    "masked_note": ("个人信息已脱敏", "Personal data masked"),
    "more": ("另有 {n} 项未列出", "{n} more not listed"),
}

CODES: dict[str, dict[str, tuple[str, str]]] = {
    "channel": {
        "hotline": ("来电", "Hotline"), "walk_in": ("来访", "Walk-in"), "letter": ("来信", "Letter"),
        "email": ("电子邮件", "E-mail"), "website": ("网站/论坛", "Website"), "sales_office": ("售楼处", "Sales office"),
        "property_company": ("物业公司", "Property company"), "patrol": ("巡查发现", "Patrol"),
        "consumer_association": ("消协转办", "Consumer association"),
        "handover_inspection": ("交房验收", "Handover inspection"), "callback": ("回访", "Callback"),
        "handover_plan": ("交房计划", "Handover plan"),
    },
    "callback_rating": {
        "satisfied": ("满意", "Satisfied"), "basically_satisfied": ("基本满意", "Basically satisfied"),
        "dissatisfied": ("不满意", "Dissatisfied"),
    },
}


def text(key: str, lang: str) -> str:
    zh, en = WORDS[key]
    return zh if lang == "zh" else en


def code_label(kind: str, code: Any, lang: str) -> Any:
    if code is None:
        return None
    pair = CODES.get(kind, {}).get(str(code))
    if pair is None:
        return code
    return pair[0] if lang == "zh" else pair[1]


def label_of(label: Any, lang: str, fallback: str) -> str:
    """A workflow ``{zh:, en:}`` label in ``lang``, or ``fallback`` when none is declared."""
    if label is None:
        return fallback
    return str(getattr(label, lang, None) or getattr(label, "zh", None) or fallback)
