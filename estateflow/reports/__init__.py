"""Reports: the weekly report (周报), the register (来电、来访登记表), SLA compliance and repair
ratings, as data (frozen dataclasses) and as tables, CSV, XLSX, JSON and self-contained HTML.

Use them through the Engine (``engine.report_weekly()``, ``report_register()``,
``report_sla()``, ``report_ratings()``) or ``estateflow report ...``; the renderers are here.
"""

from ._period import Period, resolve_period
from ._ratings import Rating, RatingsReport
from ._register import RegisterReport, RegisterRow
from ._render import render_csv, render_html, render_text, render_xlsx, report_json
from ._tables import Chart, Column, Section
from ._sla import ClockCompliance, SlaReport
from ._weekly import ClockFigures, Figures, OpenCase, WeeklyReport

__all__ = [
    "Chart",
    "ClockCompliance",
    "ClockFigures",
    "Column",
    "Figures",
    "OpenCase",
    "Period",
    "Rating",
    "RatingsReport",
    "RegisterReport",
    "RegisterRow",
    "Section",
    "SlaReport",
    "WeeklyReport",
    "render_csv",
    "render_html",
    "render_text",
    "render_xlsx",
    "report_json",
    "resolve_period",
]
