"""Reading a spreadsheet register (CSV or .xlsx) into numbered rows.

Why this much care: the registers companies kept before estateflow (《来电、来访登记表》) come
out of Chinese Excel, which saves "CSV" in GBK unless told otherwise, often starts with a
title row above the header, and leaves blank rows behind. Every row keeps the line number a
person sees in the file (the Excel row number for .xlsx), so an error can point at it.
"""

from __future__ import annotations

import codecs
import csv
import io
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, time
from pathlib import Path
from typing import Any

__all__ = ["Sheet", "read_sheet", "sheet_from_rows"]

XLSX_HINT = "reading .xlsx files needs openpyxl: pip install 'estateflow[xlsx]' (or save the sheet as CSV)"
_HEADER_SEARCH = 10  # rows looked at for the header (title rows above it are skipped)


@dataclass
class Sheet:
    """A table: its header (with the line it is on) and its non-blank data rows by line."""

    name: str
    header_line: int
    columns: list[str]
    rows: list[tuple[int, dict[str, Any]]]
    encoding: str | None = None
    duplicates: list[str] = field(default_factory=list)


def read_sheet(path: str | Path, *, known: Callable[[str], bool] = lambda _c: False) -> Sheet:
    """Read ``path`` (.csv, .txt, .tsv or .xlsx). ``known(column)`` says whether a cell looks
    like a header the caller understands; the first row with two such cells is the header."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such file: {path}")
    suffix = path.suffix.lower()
    if suffix in (".xlsx", ".xlsm"):
        return _table(path.name, _xlsx_rows(path), known, None)
    if suffix == ".xls":
        raise ValueError(f"{path.name}: the old binary .xls format cannot be read; save it as .xlsx or CSV")
    text, encoding = decode(path.read_bytes(), path.name)
    return _table(path.name, _csv_rows(text), known, encoding)


def sheet_from_rows(rows: Iterable[Mapping[str, Any]], name: str = "<rows>") -> Sheet:
    """Rows given as mappings (an embedding app's own reader): line 1 is taken as the header,
    so the first mapping is line 2, as it would be in a file."""
    listed = [dict(r) for r in rows]
    columns: list[str] = []
    for row in listed:
        columns.extend(str(c) for c in row if str(c) not in columns)
    return Sheet(name, 1, columns, [(i + 2, {str(k): _cell(v) for k, v in row.items()})
                                    for i, row in enumerate(listed)])


def decode(raw: bytes, name: str) -> tuple[str, str]:
    """UTF-8 with or without BOM, UTF-16 with BOM, else GB18030 (a superset of GBK/GB2312)."""
    if raw.startswith(codecs.BOM_UTF8):
        return raw.decode("utf-8-sig"), "utf-8-sig"
    if raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return raw.decode("utf-16"), "utf-16"
    try:
        return raw.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        pass
    try:
        return raw.decode("gb18030"), "gb18030"
    except UnicodeDecodeError as exc:
        raise ValueError(f"{name}: not UTF-8 or GB18030 text (byte {exc.start}); save it as 'CSV UTF-8'") from None


def _csv_rows(text: str) -> Iterable[tuple[int, list[Any]]]:
    first = next((line for line in text.splitlines() if line.strip()), "")
    delimiter = max(",\t;", key=first.count) if first else ","
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    start = 1
    for record in reader:
        yield start, record  # the line the record starts on (a quoted cell may span lines)
        start = reader.line_num + 1


def _xlsx_rows(path: Path) -> Iterable[tuple[int, list[Any]]]:
    try:
        import openpyxl
    except ImportError:
        raise ValueError(f"{path.name}: {XLSX_HINT}") from None
    try:
        book = openpyxl.load_workbook(path, read_only=True, data_only=True)
    except Exception as exc:  # zipfile/xml errors: a damaged or mislabelled file
        raise ValueError(f"{path.name}: cannot read as .xlsx ({type(exc).__name__}: {exc})") from None
    try:
        sheet = book.active if book.active is not None else book.worksheets[0]
        for number, values in enumerate(sheet.iter_rows(values_only=True), start=1):
            yield number, list(values)
    finally:
        book.close()


def _cell(value: Any) -> Any:
    """Text stripped; whole-number floats (Excel stores 13800138000 as 1.38e10) as int."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, (bool, int, float, datetime, date, time)):
        return value
    return str(value).strip()


def _table(name: str, records: Iterable[tuple[int, list[Any]]], known: Callable[[str], bool],
           encoding: str | None) -> Sheet:
    rows = [(line, [_cell(v) for v in values]) for line, values in records]
    rows = [(line, cells) for line, cells in rows if any(c != "" for c in cells)]
    if not rows:
        raise ValueError(f"{name}: the file has no rows")
    header_at = 0
    for index, (_line, cells) in enumerate(rows[:_HEADER_SEARCH]):
        if sum(1 for c in cells if isinstance(c, str) and c and known(c)) >= 2:
            header_at = index
            break
    header_line, header = rows[header_at]
    columns: list[str] = []
    duplicates: list[str] = []
    positions: list[tuple[int, str]] = []
    for position, cell in enumerate(header):
        title = str(cell).strip()
        if not title:
            continue
        if title in columns:
            duplicates.append(title)
            continue
        columns.append(title)
        positions.append((position, title))
    data = []
    for line, cells in rows[header_at + 1:]:
        values = {title: (cells[pos] if pos < len(cells) else "") for pos, title in positions}
        if any(v != "" for v in values.values()):
            data.append((line, values))
    return Sheet(name, header_line, columns, data, encoding, duplicates)
