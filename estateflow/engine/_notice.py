"""Read the State Council's annual holiday notice (国务院办公厅关于YYYY年部分节假日安排的通知).

Deadlines count Chinese working days, and the official schedule for next year is published
each November, long before any calendar library ships it. An admin pastes the notice as copied
from a web page; :func:`parse_notice` turns it into holidays and make-up working days (调休上班)
that the calendar can load as overrides.

A wrong calendar silently shifts every deadline, so the reader refuses rather than guesses:

* Only the numbered festival lines (``一、元旦：…``) and their wrapped continuation are read.
  Titles, menus, publication dates and the closing paragraph are page text and are ignored.
* Every date must be followed, in the same clause, by 放假/补休/公休 (a day off) or 上班 (a
  make-up working day). Anything else between a date and its verb is refused, not skipped.
* What the notice states twice is cross-checked: the weekday in brackets, ``共N天``,
  与周末连休 touching a weekend, 补休 on a weekday and make-up days on a weekend. What every
  real notice obeys is checked too: dates lie between December of the previous year and
  January of the next, each festival is one stretch in its season (元旦 includes 1 January,
  劳动节 1 May, 国庆节 1 October), and headings are numbered 一、二、三… without gaps.
* Traditional characters, full-width digits, punctuation and spaces are normalised first
  (Unicode NFKC plus a small built-in character map), so no conversion library is needed.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import NoReturn

from ._errors import NoticeParseError

__all__ = ["HolidayNotice", "parse_notice"]

# Traditional -> simplified, only for characters that steer parsing (title, festival names,
# keywords, weekday notes, closing phrases). Everything else may stay traditional.
_TRADITIONAL = str.maketrans(
    {
        "國": "国", "務": "务", "辦": "办", "廳": "厅", "關": "关", "於": "于", "節": "节",
        "勞": "劳", "動": "动", "慶": "庆", "調": "调", "補": "补", "連": "连", "週": "周",
        "與": "与", "現": "现", "將": "将", "統": "统", "間": "间", "勵": "励", "曆": "历",
        "農": "农", "臘": "腊", "禮": "礼", "號": "号", "發": "发", "電": "电",
    }
)  # fmt: skip

# Where each festival's days off can fall (month, day), with slack for future arrangements;
# a typo such as 9月2日 for 中秋节 or 5月1日 under 元旦 lands outside and is refused.
_SEASONS = {
    "元旦": ((12, 28), (1, 4)),
    "春节": ((1, 15), (3, 3)),
    "清明": ((3, 31), (4, 9)),
    "劳动": ((4, 26), (5, 9)),
    "端午": ((5, 25), (6, 30)),
    "中秋": ((9, 5), (10, 10)),
    "国庆": ((9, 25), (10, 10)),
}
_FESTIVALS = tuple(_SEASONS)
_FIXED_DAYS = {"元旦": (1, 1), "劳动": (5, 1), "国庆": (10, 1)}  # their day off is the date itself
_MAKE_UP_REACH = timedelta(days=16)  # make-up days lie this close to their festival
_WEEKDAY_NAMES = "一二三四五六日"
_WEEKDAY_INDEX = {**{c: i for i, c in enumerate(_WEEKDAY_NAMES)}, "天": 6}
_NUMERALS = {c: i for i, c in enumerate("一二三四五六七八九", 1)}

# A numbered festival heading: 一、元旦： / 六、国庆节、中秋节： (after NFKC the colon is ASCII).
# It may start a line or follow a sentence end, because some pages run the list into one line.
_MARKER = re.compile(
    r"(?:^|(?<=[\s。;:]))([一二三四五六七八九十]{1,3})\s*[、.]\s*"
    r"([^\s:;,。、()\d]{1,12}(?:\s*、\s*[^\s:;,。、()\d]{1,12})*)\s*:"
)
_TOKEN = re.compile(
    r"(?P<date>(?:(?P<y>\d{4})\s*年\s*)?(?:(?P<m>\d{1,2})\s*月\s*)?(?P<d>\d{1,2})\s*日)"
    r"|(?P<note>\([^()]*\))"
    r"|(?P<weekday>(?:星期|周|礼拜)[一二三四五六日天])"
    r"|(?P<count>共\s*(?P<n>\d+)\s*天)"
    r"|(?P<rest>(?:放假|补休|公休)(?:\s*(?P<rn>\d+)\s*天)?)"
    r"|(?P<work>上班)"
    r"|(?P<joined>连休)"
    r"|(?P<filler>调休)"
    r"|(?P<range>至|到|~|-|—|–)"
    r"|(?P<list>[、和及])"
    r"|(?P<comma>,)"
    r"|(?P<stop>[。;!?])"
    r"|(?P<space>\s+)"
    r"|(?P<text>.)",
    re.S,
)
_DATE = re.compile(r"\d{1,2}\s*日")
# Lines that look like a festival line but not like a heading (一、元旦：) - a mangled heading
# would otherwise drop that festival silently, so they are refused: a numbered line naming a
# festival or announcing dates, a festival name with a colon, or a colon followed by dates.
_ANY_FESTIVAL = "(?:" + "|".join(_FESTIVALS) + ")"
_MONTH_DAY = r"(?:\d{4}\s*年\s*)?\d{1,2}\s*月\s*\d{1,2}\s*日"
_LOOSE_HEADING = re.compile(
    rf"^\s*[一二三四五六七八九十]{{1,3}}\s*[、.](?:.{{0,12}}?{_ANY_FESTIVAL}|.*?{_MONTH_DAY}.*?"
    rf"(?:放假|上班))|{_ANY_FESTIVAL}[^:。,]{{0,8}}:\s*(?:$|{_MONTH_DAY})"
    rf"|:\s*{_MONTH_DAY}[^。]*?(?:放假|上班)"
)
_VERB = re.compile(r"放假|补休|公休|上班")
_STARTS_WITH_DATE = re.compile(r"\s*(?:\d{4}\s*年\s*)?\d{1,2}\s*月\s*\d{1,2}\s*日")
_OPEN_END = re.compile(r"(?:[至到~\-、和]|\d\s*日(?:\s*\([^()]*\))*)\s*$")
# The closing paragraph and 鼓励… encouragements (e.g. 安排职工在除夕休息) are not schedule.
_CLOSING = re.compile(r"(?:^|(?<=[。;]))\s*(?:节假日期间|鼓励)")
_TITLE_YEAR = re.compile(r"(\d{4})\s*年\s*部分节假日安排")
_BODY_YEAR = re.compile(r"现将\s*(\d{4})\s*年|(\d{4})\s*年\s*元旦\s*、\s*春节")

_Where = tuple[int, str]  # (1-based line number, the line as pasted)


@dataclass(frozen=True)
class HolidayNotice:
    """One year's official schedule, as announced; the calendar loads it as overrides."""

    year: int
    holidays: tuple[date, ...]  # every date inside the announced holiday ranges, sorted
    workdays: tuple[date, ...]  # the make-up working days (调休上班), sorted
    festivals: tuple[tuple[str, date, date], ...]  # (name as written, first day off, last)

    def as_json(self) -> dict[str, object]:
        """A JSON-ready form (ISO dates) for storing the schedule as calendar data."""
        return {
            "year": self.year,
            "holidays": [d.isoformat() for d in self.holidays],
            "workdays": [d.isoformat() for d in self.workdays],
        }

    def overrides(self) -> dict[date, bool]:
        """Date -> is it a working day; what a calendar needs on top of the weekend rule."""
        result = {d: False for d in self.holidays}
        result.update({d: True for d in self.workdays})
        return result


@dataclass
class _Section:
    """One numbered festival line plus the wrapped lines that continue it."""

    number: int  # 一、 -> 1; headings must run 1, 2, 3 ... or a line went missing
    name: str
    parts: list[tuple[int, str, str]] = field(default_factory=list)  # (line no, raw, normalised)


def _normalise(text: str) -> str:
    """Fold full-width forms and traditional characters so one grammar reads every paste."""
    return unicodedata.normalize("NFKC", text).translate(_TRADITIONAL)


def parse_notice(text: str) -> HolidayNotice:
    """Parse a pasted notice; raise :class:`NoticeParseError` naming the line it cannot read."""
    lines = text.splitlines()
    sections = _split_sections(lines)
    if not sections:
        first = next(((i, s) for i, s in enumerate(lines, 1) if s.strip()), (1, ""))
        raise NoticeParseError(*first, "no numbered festival line (一、元旦：…) found")
    year = _find_year(lines, sections[0])
    holidays: dict[date, _Where] = {}
    workdays: dict[date, _Where] = {}
    festivals: list[tuple[str, date, date]] = []
    for section in sections:
        reader = _read_section(section, year)
        for target, days in ((holidays, reader.holidays), (workdays, reader.workdays)):
            for day, where in days:
                if day in holidays or day in workdays:
                    raise NoticeParseError(*where, f"{day} is announced twice")
                target[day] = where
        first, last = _check_season(section.name, year, reader)
        festivals.append((section.name, first, last))
    return HolidayNotice(year, tuple(sorted(holidays)), tuple(sorted(workdays)), tuple(festivals))


def _check_season(name: str, year: int, reader: _Reader) -> tuple[date, date]:
    """Refuse what no real notice says: days off outside the festival's season, not in one
    stretch (weekends aside), missing the festival's fixed date, or make-up days far away."""
    first = min(d for d, _ in reader.holidays)
    last = max(d for d, _ in reader.holidays)
    for key, (month, day_of_month) in _FIXED_DAYS.items():
        if key in name and date(year, month, day_of_month) not in dict(reader.holidays):
            where = reader.holidays[0][1]
            raise NoticeParseError(*where, f"{name} gives no day off on {month}月{day_of_month}日")
    seasons = [season for key, season in _SEASONS.items() if key in name]
    days_off = sorted(reader.holidays)
    for (before, _), (day, where) in zip(days_off, days_off[1:]):
        between = (before + timedelta(n) for n in range(1, (day - before).days))
        if any(d.weekday() < 5 for d in between):
            raise NoticeParseError(*where, f"days off of {name} are not one stretch ({before})")
    for day, where in reader.holidays:
        key = (day.month, day.day)
        inside = [lo <= key <= hi if lo <= hi else key >= lo or key <= hi for lo, hi in seasons]
        if seasons and not any(inside):
            raise NoticeParseError(*where, f"{day} is not in the season of {name}")
    for day, where in reader.workdays:
        if seasons and not first - _MAKE_UP_REACH <= day <= last + _MAKE_UP_REACH:
            raise NoticeParseError(*where, f"make-up day {day} is far from {name} ({first})")
    return first, last


def _numeral(text: str) -> int:
    """一..九十九 as an int; 0 for anything else (which then fails the numbering check)."""
    tens, ten, units = text.partition("十")
    if not ten:
        return _NUMERALS.get(text, 0)
    return (_NUMERALS.get(tens, 0) if tens else 1) * 10 + (_NUMERALS.get(units, 0) if units else 0)


def _festivals_on_line(norm: str) -> tuple[str, list[tuple[int, str, str]]]:
    """The text before the first heading, and (number, name, body) for each festival heading."""
    marks = list(_MARKER.finditer(norm))
    found = []
    for i, mark in enumerate(marks):
        end = marks[i + 1].start() if i + 1 < len(marks) else len(norm)
        name, body = re.sub(r"\s+", "", mark.group(2)), norm[mark.end() : end]
        # An unknown name still counts if it announces dates: a new holiday must not be dropped.
        if any(f in name for f in _FESTIVALS) or (_DATE.search(body) and _VERB.search(body)):
            found.append((_numeral(mark.group(1)), name, body))
    return (norm[: marks[0].start()] if found else norm), found


def _split_sections(lines: list[str]) -> list[_Section]:
    """Group festival headings with their continuation; everything else is page text."""
    sections: list[_Section] = []
    current: _Section | None = None
    gap = False  # a blank line since the current festival's last line
    for no, raw in enumerate(lines, 1):
        norm = _normalise(raw)
        prefix, found = _festivals_on_line(norm)
        if not found and _LOOSE_HEADING.search(norm):
            raise NoticeParseError(no, raw, "festival line is not in the form 一、元旦：…")
        if current is not None and _continues(current, gap, (no, raw), prefix):
            current.parts.append((no, raw, prefix))
            gap = False
        elif not norm.strip():
            gap = True
        elif not found:
            current = None
        for number, name, body in found:
            sections.append(_Section(number, name, [(no, raw, body)]))
            current, gap = sections[-1], False
    for expected, section in enumerate(sections, 1):
        if section.number != expected:
            no, raw, _ = section.parts[0]
            reason = f"festival numbered {section.number} where {expected} was expected"
            raise NoticeParseError(no, raw, f"{reason}: a line is missing or two notices pasted")
    return sections


def _continues(current: _Section, gap: bool, where: _Where, text: str) -> bool:
    """Does this text (a line, or what precedes a heading) continue the current festival?

    Yes when the festival so far is unfinished (empty, or ending in a date or 至/、), or when
    the text directly follows (no blank line), starts with a date and has 放假/上班 - a
    paragraph the page wrapped. Other dated text directly after a festival is refused.
    """
    if not text.strip():
        return False
    if _unfinished(current):
        return True
    dated = bool(_DATE.search(text) and _VERB.search(text))
    if gap or not dated:
        return False
    if _STARTS_WITH_DATE.match(text):
        return True
    raise NoticeParseError(*where, "dated line right after a festival does not continue it")


def _unfinished(section: _Section) -> bool:
    """True when the festival text so far cannot be the end of its statement."""
    body = "".join(part[2] for part in section.parts).rstrip()
    return not body or bool(_OPEN_END.search(body))


def _find_year(lines: list[str], first: _Section) -> int:
    """The notice year: from the title, else from the body (现将YYYY年…); refuse if unclear.

    Pages often link other years' notices; when titles disagree the body phrase decides.
    """
    text = _normalise("\n".join(lines))

    def years(pattern: re.Pattern[str]) -> dict[int, int]:
        found: dict[int, int] = {}
        for m in pattern.finditer(text):
            value = int(next(g for g in m.groups() if g))
            found.setdefault(value, text.count("\n", 0, m.start()) + 1)
        return found

    titles, bodies = years(_TITLE_YEAR), years(_BODY_YEAR)
    every = {**bodies, **titles}
    if len(every) == 1:
        return next(iter(every))
    if len(bodies) == 1 and set(bodies) <= set(titles):
        return next(iter(bodies))
    if not every:
        no, raw, _ = first.parts[0]
        raise NoticeParseError(
            no, raw, "no year in a title (关于YYYY年部分节假日安排的通知) or body (现将YYYY年…)"
        )
    line_no = max(every.values())
    raise NoticeParseError(
        line_no, lines[line_no - 1], f"the text names several notice years {sorted(every)}"
    )


def _read_section(section: _Section, year: int) -> _Reader:
    """Feed one festival's text, line by line, through a reader that keeps clause state."""
    reader = _Reader(year, section.name)
    for no, raw, norm in section.parts:
        reader.where = (no, raw)
        closing = _CLOSING.search(norm)
        for m in _TOKEN.finditer(norm[: closing.start()] if closing else norm):
            reader.feed(m)
        if closing:
            break
    reader.finish(section.parts[0][:2])
    return reader


class _Reader:
    """The clause grammar: dates collect until 放假/补休/公休 or 上班 says what they are."""

    def __init__(self, year: int, name: str) -> None:
        self.year = year
        self.new_year = "元旦" in name  # its unyeared December dates belong to the year before
        self.holidays: list[tuple[date, _Where]] = []
        self.workdays: list[tuple[date, _Where]] = []
        self.pending: list[tuple[date, _Where]] = []
        self.where: _Where = (0, "")
        self.prev = ""  # kind of the previous token, brackets and spaces aside
        self._reset_sentence()

    def _reset_sentence(self) -> None:
        self.rested: list[date] = []  # days off in this sentence: 共N天, 连休 are checked on them
        self.count: int | None = None
        self.last: date | None = None  # previous date in the sentence, for a bare 21日
        self.noted: date | None = None  # the date a bracket note may describe
        self.range_from: date | None = None
        self.tainted = False  # unexplained text since the last punctuation

    def fail(self, reason: str) -> NoReturn:
        raise NoticeParseError(*self.where, reason)

    def feed(self, m: re.Match[str]) -> None:
        kind = m.lastgroup or "text"
        if kind == "space":
            return
        if kind in ("note", "weekday"):
            self._note(m.group())
            return
        if self.range_from is not None and kind != "date":
            self.fail("至 is not followed by an end date")
        if kind == "range" and self.prev != "date":
            self.fail(f"{m.group()!r} has no start date before it")
        # 放假 needs dates, except as the second verb of 放假公休 / 放假，…补休 style phrases.
        if kind == "rest" and not self.pending and self.prev not in ("rest", "filler"):
            self.fail(f"{m.group()!r} with no date before it")
        self.noted = None
        getattr(self, "_" + kind)(m)
        self.prev = kind

    def finish(self, heading: _Where) -> None:
        self._stop(None)
        if not self.holidays:
            self.where = heading
            what = "no date" if not self.workdays else "no day off (放假)"
            self.fail(f"festival line has {what}")

    def _date(self, m: re.Match[str]) -> None:
        if self.tainted:
            self.fail(f"date {m.group()!r} follows text that is not part of a holiday statement")
        day = self._resolve(m)
        start, self.range_from = self.range_from, None
        if start is None:
            self.pending.append((day, self.where))
        elif day <= start:
            self.fail(f"range ends ({day}) on or before its start ({start})")
        elif (day - start).days > 31:
            self.fail(f"range {start} to {day} is longer than a month")
        else:
            span = range(1, (day - start).days + 1)
            self.pending.extend((start + timedelta(n), self.where) for n in span)
        self.last = self.noted = day

    def _resolve(self, m: re.Match[str]) -> date:
        """Complete a date: a bare 日 takes the month before it; a missing year is reasoned out.

        A range end takes its start's year, moving to the next year when a December start runs
        into January (12月30日至1月1日). Otherwise the notice year applies, except that an
        unyeared December date in the 元旦 line is the December before that New Year's Day.
        """
        y, mo, d = (int(g) if g else None for g in m.group("y", "m", "d"))
        assert d is not None
        base = self.range_from or self.last
        if y is not None and mo is None:
            self.fail(f"{m.group()!r} has a year but no month")
        if mo is None:
            if base is None:
                self.fail(f"{m.group()!r} has no month")
            y, mo = base.year, base.month
        elif y is None and self.range_from is not None:
            start = self.range_from
            y = start.year + (1 if start.month == 12 and mo < 12 else 0)
        elif y is None:
            y = self.year - 1 if self.new_year and mo == 12 else self.year
        try:
            day = date(y, mo, d)
        except ValueError:
            self.fail(f"there is no date {y}年{mo}月{d}日")
        if not date(self.year - 1, 12, 1) <= day <= date(self.year + 1, 1, 31):
            self.fail(f"{day} lies outside the {self.year} notice")
        return day

    def _note(self, text: str) -> None:
        """Check a weekday given in brackets (（星期六）, (周日)) against the date it follows."""
        if self.noted is None:
            return
        for name in re.findall(r"(?:星期|周|礼拜)([一二三四五六日天])", text):
            actual = self.noted.weekday()
            if _WEEKDAY_INDEX[name] != actual:
                self.fail(f"{self.noted} is a 周{_WEEKDAY_NAMES[actual]}, not 周{name}")

    def _rest(self, m: re.Match[str]) -> None:
        self.holidays.extend(self.pending)
        self.rested += [d for d, _ in self.pending]
        if m.group().startswith("补休") and any(d.weekday() >= 5 for d, _ in self.pending):
            self.fail("补休 (a day off in lieu) falls on a weekend")
        self.pending = []
        if m.group("rn"):
            self._set_count(int(m.group("rn")))

    def _work(self, m: re.Match[str]) -> None:
        if not self.pending:
            self.fail("上班 with no date before it")
        for day, _ in self.pending:
            if day.weekday() < 5:
                self.fail(f"make-up working day {day} is a 周{_WEEKDAY_NAMES[day.weekday()]}")
        self.workdays.extend(self.pending)
        self.pending = []

    def _joined(self, m: re.Match[str]) -> None:
        """与周末连休: the days off of this sentence must touch a Saturday or Sunday."""
        self.tainted = True
        if self.rested:
            ends = (min(self.rested) - timedelta(1), max(self.rested) + timedelta(1))
            if all(d.weekday() < 5 for d in ends):
                self.fail(f"{max(self.rested)} does not adjoin a weekend (连休)")

    def _count(self, m: re.Match[str]) -> None:
        self._set_count(int(m.group("n")))

    def _set_count(self, value: int) -> None:
        if self.count is not None:
            self.fail("two day counts in one sentence")
        self.count = value

    def _filler(self, m: re.Match[str]) -> None:
        if not self.pending:  # 调休 may sit between dates and 放假; elsewhere it is just words
            self.tainted = True

    def _range(self, m: re.Match[str]) -> None:
        self.range_from = self.pending[-1][0]

    def _list(self, m: re.Match[str]) -> None:
        return None

    def _comma(self, m: re.Match[str]) -> None:
        self._unclaimed()
        self.tainted = False

    def _stop(self, m: re.Match[str] | None) -> None:
        self._unclaimed()
        if self.count is not None and self.count != len(self.rested):
            self.fail(f"says 共{self.count}天 but its dates give {len(self.rested)} days off")
        self._reset_sentence()

    def _text(self, m: re.Match[str]) -> None:
        if m.group() in "0123456789月":
            self.fail(f"unreadable date near {m.group()!r}")
        if self.pending:
            self.fail(f"unexpected {m.group()!r} between a date and 放假/上班")
        self.tainted = True

    def _unclaimed(self) -> None:
        if self.range_from is not None:
            self.fail("至 is not followed by an end date")
        if self.pending:
            days = ", ".join(d.isoformat() for d, _ in self.pending)
            self.fail(f"{days}: neither 放假 nor 上班 says what these dates are")
