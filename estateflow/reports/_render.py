"""Turning a report into what people open: rich tables, CSV, XLSX, JSON, HTML and mail text.

Every renderer reads the same :class:`Section` list, so a figure cannot differ between the
screen, the spreadsheet and the mail. CSV is written as ``utf-8-sig`` because Excel on a
Chinese Windows reads a BOM-less file as GBK and shows mojibake (TRAPS.md). The HTML file is
self-contained — inline CSS and an inline SVG chart, no script, no font, no network — so it
can be mailed or opened offline.
"""

from __future__ import annotations

import csv
import html
import io
import json
from datetime import date, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from ._labels import text
from ._tables import Chart, Section, format_cell

__all__ = ["XLSX_HINT", "render_csv", "render_html", "render_text", "render_xlsx", "report_json", "rich_tables"]

XLSX_HINT = "pip install 'estateflow[xlsx]'"


def _zone(report: Any) -> str:
    return report.period.zone


def _heading(report: Any) -> str:
    scope = {k: v for k, v in (report.scope or {}).items() if v}
    where = " ".join(f"{v}" for v in scope.values())
    return " ".join(p for p in (report.title, report.period.label, where) if p)


def _meta(report: Any) -> list[str]:
    lang = report.lang
    period = report.period
    lines = [f"{text('period', lang)}: {period.first_day.isoformat()} – {period.last_day.isoformat()} ({period.zone})"]
    if report.masked:
        lines.append(text("masked_note", lang))
    return lines


def report_json(report: Any) -> dict[str, Any]:
    """The report as JSON-ready data (what ``--json`` prints)."""
    return report.to_dict()


# -- text ------------------------------------------------------------------------------------
def rich_tables(report: Any) -> list[Any]:
    """One rich Table per section (CJK widths handled by rich)."""
    from rich import box
    from rich.table import Table

    tables = []
    for section in report.sections():
        table = Table(title=section.title, box=box.SIMPLE_HEAD, caption=section.note or None, title_justify="left")
        for column in section.columns:
            table.add_column(column.title, justify="right" if column.kind in ("int", "rate", "number", "hours")
                             else "left", overflow="fold")
        for row in section.rows:
            table.add_row(*[format_cell(v, c.kind, _zone(report)) for v, c in zip(row, section.columns)])
        if not section.rows:
            table.add_row(*([text("none", report.lang)] + [""] * (len(section.columns) - 1)))
        tables.append(table)
    return tables


def render_text(report: Any, width: int = 140) -> str:
    """Plain text (the mail body): the heading, then every section as an aligned table."""
    from rich.console import Console

    buffer = io.StringIO()
    console = Console(file=buffer, width=width, color_system=None, highlight=False, emoji=False)
    console.print(_heading(report), markup=False)
    for line in _meta(report):
        console.print(line, markup=False)
    for table in rich_tables(report):
        console.print(table)
    return "\n".join(line.rstrip() for line in buffer.getvalue().splitlines()).strip() + "\n"


# -- CSV -----------------------------------------------------------------------------------------
def render_csv(report: Any, target: str | Path | io.TextIOBase) -> None:
    """CSV in UTF-8 with BOM. One section: a plain header + rows table. Several: each starts
    with a row holding its title, then its header and rows, then an empty row."""
    sections = report.sections()
    if isinstance(target, (str, Path)):
        with open(target, "w", encoding="utf-8-sig", newline="") as fh:
            _write_csv(report, sections, fh)
    else:
        _write_csv(report, sections, target)


def _write_csv(report: Any, sections: list[Section], fh: Any) -> None:
    writer = csv.writer(fh)
    single = len(sections) == 1
    for section in sections:
        if not single:
            writer.writerow([section.title] + ([section.note] if section.note else []))
        writer.writerow([c.title for c in section.columns])
        for row in section.rows:
            writer.writerow([format_cell(v, c.kind, _zone(report)) for v, c in zip(row, section.columns)])
        if not single:
            writer.writerow([])


# -- XLSX ----------------------------------------------------------------------------------------
def render_xlsx(report: Any, target: str | Path) -> None:
    """One sheet per section, header frozen, numbers as numbers (rates formatted as %)."""
    try:
        from openpyxl import Workbook
        from openpyxl.styles import Font
    except ImportError as exc:
        raise ImportError(f"XLSX output needs openpyxl: {XLSX_HINT}") from exc
    book = Workbook()
    book.remove(book.active)
    zone = ZoneInfo(_zone(report))
    used: set[str] = set()
    for section in report.sections():
        sheet = book.create_sheet(_sheet_name(section.title, used))
        sheet.append([c.title for c in section.columns])
        for cell in sheet[1]:
            cell.font = Font(bold=True)
        for row in section.rows:
            sheet.append([_xlsx_value(v, c.kind, zone) for v, c in zip(row, section.columns)])
            for cell, column in zip(sheet[sheet.max_row], section.columns):
                cell.number_format = _XLSX_FORMATS.get(column.kind, cell.number_format)
        if section.note:
            sheet.append([])
            sheet.append([section.note])
        sheet.freeze_panes = "A2"
        for index, column in enumerate(section.columns, start=1):
            sheet.column_dimensions[sheet.cell(1, index).column_letter].width = max(10, min(40, 2 * len(column.title) + 4))
    book.properties.title = _heading(report)
    book.save(str(target))


_XLSX_FORMATS = {"rate": "0.0%", "hours": "0.0", "number": "0.0", "time": "yyyy-mm-dd hh:mm", "date": "yyyy-mm-dd"}


def _xlsx_value(value: Any, kind: str, zone: ZoneInfo) -> Any:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.astimezone(zone).replace(tzinfo=None)  # Excel has no time zones: local time
    if isinstance(value, (int, float, date)) and not isinstance(value, bool):
        return value
    return str(value)


def _sheet_name(title: str, used: set[str]) -> str:
    base = "".join("_" if ch in '[]:*?/\\' else ch for ch in title)[:28] or "sheet"
    name, n = base, 2
    while name in used:
        name, n = f"{base[:26]}_{n}", n + 1
    used.add(name)
    return name


# -- HTML ----------------------------------------------------------------------------------------
_CSS = """
body{font-family:-apple-system,"PingFang SC","Microsoft YaHei","Noto Sans CJK SC",sans-serif;color:#222;margin:24px;}
h1{font-size:20px;margin:0 0 4px}h2{font-size:16px;margin:24px 0 6px;border-left:4px solid #2b6cb0;padding-left:8px}
p.meta{color:#666;margin:2px 0;font-size:13px}
table{border-collapse:collapse;font-size:13px;margin:4px 0}
th,td{border:1px solid #ccc;padding:4px 8px;text-align:left;vertical-align:top}
th{background:#edf2f7}td.n{text-align:right;font-variant-numeric:tabular-nums}
tr:nth-child(even) td{background:#f9fafb}p.note{color:#666;font-size:12px;margin:2px 0}
svg text{font-size:11px;fill:#333}
""".strip()
_COLORS = ("#2b6cb0", "#dd6b20", "#38a169", "#805ad5")


def render_html(report: Any) -> str:
    """A complete HTML document (str): heading, meta lines, the chart, every table."""
    esc = html.escape
    parts = ["<!DOCTYPE html>", f'<html lang="{"zh-CN" if report.lang == "zh" else "en"}"><head>',
             '<meta charset="utf-8">', f"<title>{esc(_heading(report))}</title>", f"<style>{_CSS}</style>",
             "</head><body>", f"<h1>{esc(_heading(report))}</h1>"]
    parts += [f'<p class="meta">{esc(line)}</p>' for line in _meta(report)]
    chart = report.chart()
    if chart is not None:
        parts.append(svg_chart(chart))
    for section in report.sections():
        parts.append(f"<h2>{esc(section.title)}</h2>")
        parts.append(_html_table(report, section))
        if section.note:
            parts.append(f'<p class="note">{esc(section.note)}</p>')
    parts.append("</body></html>")
    return "\n".join(parts)


def _html_table(report: Any, section: Section) -> str:
    esc = html.escape
    head = "".join(f"<th>{esc(c.title)}</th>" for c in section.columns)
    rows = []
    for row in section.rows:
        cells = []
        for value, column in zip(row, section.columns):
            numeric = column.kind in ("int", "rate", "number", "hours")
            cells.append(f'<td{" class=n" if numeric else ""}>{esc(format_cell(value, column.kind, _zone(report)))}</td>')
        rows.append("<tr>" + "".join(cells) + "</tr>")
    if not rows:
        rows.append(f'<tr><td colspan="{len(section.columns)}">{esc(text("none", report.lang))}</td></tr>')
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def svg_chart(chart: Chart, width: int = 640, height: int = 220) -> str:
    """Grouped bars as inline SVG (no script, no external reference)."""
    esc = html.escape
    left, right, top, bottom = 36, 10, 28, 36
    plot_w, plot_h = width - left - right, height - top - bottom
    values = [v for _, series in chart.series for v in series]
    peak = max([float(v) for v in values if v is not None] + [0.0])
    peak = 1.0 if chart.percent else (peak or 1.0)
    groups = max(len(chart.labels), 1)
    group_w = plot_w / groups
    bar_w = max(group_w * 0.8 / max(len(chart.series), 1), 1)
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'viewBox="0 0 {width} {height}" role="img" aria-label="{esc(chart.title)}">',
           f'<text x="{left}" y="16" font-weight="bold">{esc(chart.title)}</text>',
           f'<line x1="{left}" y1="{top + plot_h}" x2="{width - right}" y2="{top + plot_h}" stroke="#999"/>',
           f'<text x="{left - 4}" y="{top + 4}" text-anchor="end">{_fmt(peak, chart.percent)}</text>',
           f'<text x="{left - 4}" y="{top + plot_h}" text-anchor="end">0</text>']
    for g, label in enumerate(chart.labels):
        x0 = left + g * group_w + group_w * 0.1
        for s, (_, series) in enumerate(chart.series):
            value = float(series[g] or 0) if g < len(series) else 0.0
            h = plot_h * value / peak
            x = x0 + s * bar_w
            y = top + plot_h - h
            out.append(f'<rect x="{x:.1f}" y="{y:.1f}" width="{bar_w * 0.9:.1f}" height="{h:.1f}" '
                       f'fill="{_COLORS[s % len(_COLORS)]}"><title>{esc(label)}: {_fmt(value, chart.percent)}</title></rect>')
            if value:
                out.append(f'<text x="{x + bar_w * 0.45:.1f}" y="{y - 2:.1f}" text-anchor="middle">'
                           f'{_fmt(value, chart.percent)}</text>')
        out.append(f'<text x="{left + g * group_w + group_w / 2:.1f}" y="{top + plot_h + 14}" '
                   f'text-anchor="middle">{esc(str(label))}</text>')
    for s, (name, _) in enumerate(chart.series):
        x = left + s * 110
        out.append(f'<rect x="{x}" y="{height - 14}" width="10" height="10" fill="{_COLORS[s % len(_COLORS)]}"/>')
        out.append(f'<text x="{x + 14}" y="{height - 5}">{esc(name)}</text>')
    out.append("</svg>")
    return "".join(out)


def _fmt(value: float, percent: bool) -> str:
    if percent:
        return f"{value * 100:.0f}%"
    return f"{value:.0f}" if float(value).is_integer() else f"{value:.1f}"


def dumps(report: Any) -> str:
    return json.dumps(report_json(report), ensure_ascii=False, indent=2, default=str)
