"""The State Council holiday notice parser, checked against real notices and chinesecalendar.

Each file in tests/data/notices is the text of one year's notice (some with the page around it,
some in traditional characters). The parse must agree with chinesecalendar date by date, except
where a later notice changed the schedule after the annual one was published (``AMENDED``).
"""

from __future__ import annotations

import json
from datetime import date, timedelta
from pathlib import Path

import chinese_calendar
import pytest
from chinese_calendar import constants as cc

from estateflow.engine._errors import NoticeParseError
from estateflow.engine._notice import HolidayNotice, parse_notice

NOTICES = Path(__file__).parent / "data" / "notices"
NOTICE_FILES = sorted(NOTICES.glob("*.txt"))
NEW_YEARS_DAY = cc.Holiday.new_years_day.value

# Dates a later State Council notice changed after the annual notice: chinesecalendar follows
# the change, the annual notice (rightly) does not.
AMENDED: dict[int, set[date]] = {
    # 国务院关于中国人民抗日战争暨世界反法西斯战争胜利70周年纪念日调休放假的通知 (2015-05-13)
    2015: {date(2015, 9, 3), date(2015, 9, 4), date(2015, 9, 6)},
    # 国务院办公厅关于调整2019年劳动节假期安排的通知 (2019-03-22): 5月1日至4日, 4/28 + 5/5 上班
    2019: {date(2019, 4, 28), *(date(2019, 5, d) for d in range(2, 6))},
    # 国务院办公厅关于延长2020年春节假期的通知 (2020-01-27): off until 2月2日, no 2月1日 上班
    2020: {date(2020, 1, 31), date(2020, 2, 1), date(2020, 2, 2)},
}


def read(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def file_year(path: Path) -> int:
    return int(path.name[:4])


def owned_by_notice(day: date, name: str, year: int) -> bool:
    """Is this chinesecalendar entry announced by the notice for ``year``?

    A New Year's Day entry in December belongs to the next year's notice (its 元旦 line).
    """
    if day.month == 12 and name == NEW_YEARS_DAY:
        return day.year == year - 1
    return day.year == year


def joins_weekend_to(day: date, holidays: set[date]) -> bool:
    """A Saturday/Sunday that only a 与周末连休 joins to an announced day off."""
    for step in (-1, 1):
        probe = day + timedelta(step)
        while probe.weekday() >= 5 and probe not in holidays:
            probe += timedelta(step)
        if probe in holidays:
            return True
    return False


def test_there_are_enough_real_notices() -> None:
    years = {file_year(p) for p in NOTICE_FILES}
    assert len(years) >= 8
    assert any("traditional" in p.name for p in NOTICE_FILES)


@pytest.mark.parametrize("path", NOTICE_FILES, ids=lambda p: p.stem)
def test_every_announced_date_agrees_with_chinesecalendar(path: Path) -> None:
    notice = parse_notice(read(path))
    year = file_year(path)
    assert notice.year == year
    amended = AMENDED.get(year, set())
    window = (date(year - 1, 12, 1), date(year + 1, 1, 31))
    for day in notice.holidays:
        assert window[0] <= day <= window[1]
        assert day in amended or not chinese_calendar.is_workday(day), f"{day} should be off"
    for day in notice.workdays:
        assert window[0] <= day <= window[1]
        assert day.weekday() >= 5, f"make-up day {day} is not a weekend"
        assert day in amended or chinese_calendar.is_workday(day), f"{day} should be worked"


@pytest.mark.parametrize("path", NOTICE_FILES, ids=lambda p: p.stem)
def test_every_chinesecalendar_date_of_the_year_is_announced(path: Path) -> None:
    notice = parse_notice(read(path))
    year = file_year(path)
    amended = AMENDED.get(year, set())
    holidays = set(notice.holidays)
    for day, name in cc.holidays.items():
        if not owned_by_notice(day, name, year) or day in amended or day in holidays:
            continue
        # chinesecalendar also lists the weekend that 与周末连休 joins; the notice names only the
        # weekday, and a weekend is off anyway.
        assert day.weekday() >= 5 and joins_weekend_to(day, holidays), f"{day} ({name}) missing"
    for day, name in cc.workdays.items():
        if owned_by_notice(day, name, year) and day not in amended:
            assert day in notice.workdays, f"make-up day {day} ({name}) missing"


def test_festivals_name_first_and_last_day() -> None:
    notice = parse_notice(read(NOTICES / "2025.txt"))
    assert notice.festivals[1] == ("春节", date(2025, 1, 28), date(2025, 2, 4))
    assert notice.festivals[-1] == ("国庆节、中秋节", date(2025, 10, 1), date(2025, 10, 8))
    assert [f[0] for f in notice.festivals][:3] == ["元旦", "春节", "清明节"]


def test_as_json_shape_and_overrides() -> None:
    notice = parse_notice(read(NOTICES / "2025.txt"))
    data = notice.as_json()
    assert set(data) == {"year", "holidays", "workdays"}
    assert data["year"] == 2025
    assert data["holidays"][:2] == ["2025-01-01", "2025-01-28"]
    assert data["workdays"] == [
        "2025-01-26", "2025-02-08", "2025-04-27", "2025-09-28", "2025-10-11"
    ]  # fmt: skip
    assert json.loads(json.dumps(data)) == data
    overrides = notice.overrides()
    assert overrides[date(2025, 10, 8)] is False
    assert overrides[date(2025, 10, 11)] is True
    assert len(overrides) == len(notice.holidays) + len(notice.workdays)


def test_notice_is_immutable() -> None:
    notice = parse_notice(read(NOTICES / "2025.txt"))
    assert isinstance(notice, HolidayNotice)
    with pytest.raises(AttributeError):
        notice.year = 2026  # type: ignore[misc]


TRADITIONAL = str.maketrans(
    {
        "国": "國", "务": "務", "办": "辦", "厅": "廳", "关": "關", "于": "於", "节": "節",
        "劳": "勞", "动": "動", "庆": "慶", "调": "調", "补": "補", "连": "連", "周": "週",
        "与": "與", "现": "現", "将": "將", "统": "統", "间": "間", "励": "勵", "历": "曆",
        "农": "農", "腊": "臘",
    }
)  # fmt: skip


def test_traditional_text_parses_like_simplified() -> None:
    simplified = read(NOTICES / "2026-with-page-junk.txt")
    traditional = simplified.translate(TRADITIONAL) + "\n由國務院統一安排，與週末連休者補休。\n"
    assert "國務院辦公廳關於2026年部分節假日安排的通知" in traditional
    assert "（週日）" in traditional and "調休" in traditional
    assert parse_notice(traditional) == parse_notice(simplified)


def test_stored_traditional_notice_reads_bu_xiu_and_lian_xiu() -> None:
    notice = parse_notice(read(NOTICES / "2017-traditional.txt"))
    assert notice.festivals[0] == ("元旦", date(2017, 1, 1), date(2017, 1, 2))  # 1月2日補休
    assert ("劳动节", date(2017, 5, 1), date(2017, 5, 1)) in notice.festivals  # 與週末連休


def test_page_junk_around_the_notice_is_ignored() -> None:
    clean = read(NOTICES / "2025.txt")
    junk_before = (
        "首页 | 政策 | 国务院 | 新闻 | 互动 | 服务 | 数据\n"
        "当前位置：首页 > 政策 > 最新\n"
        "【字体：大 中 小】【打印】\n"
        "发布日期：2024年11月12日 来源：新华社\n"
        "相关阅读：国务院办公厅关于2024年部分节假日安排的通知\n"
        "一、总体要求：做好节日期间值班工作\n\n"
    )
    junk_after = (
        "\n【我要纠错】 责任编辑：\n扫一扫在手机打开当前页\n"
        "相关稿件：2025年春节1月28日至2月4日放假\n"
        "版权所有 © 2024 中国政府网 京ICP备05070218号\n"
    )
    assert parse_notice(junk_before + clean + junk_after) == parse_notice(clean)


def test_one_line_paste_and_heading_on_its_own_line() -> None:
    one_line = parse_notice(read(NOTICES / "2011-one-line.txt"))
    assert len(one_line.festivals) == 7
    assert one_line.workdays[-1] == date(2011, 10, 9)
    own_line = parse_notice(read(NOTICES / "2012-heading-on-own-line.txt"))
    assert own_line.workdays[0] == date(2011, 12, 31)  # 2011年12月31日（星期六）上班
    assert own_line.festivals[0] == ("元旦", date(2012, 1, 1), date(2012, 1, 3))


def test_unyeared_december_dates_of_new_years_day_belong_to_the_year_before() -> None:
    text = (
        "国务院办公厅关于2019年部分节假日安排的通知\n"
        "一、元旦：12月30日至1月1日放假，共3天。 12月29日（星期六）上班。\n"
        "二、春节：2月4日至10日放假调休，共7天。2月2日（星期六）、2月3日（星期天）上班。\n"
    )
    notice = parse_notice(text)
    assert notice.festivals[0] == ("元旦", date(2018, 12, 30), date(2019, 1, 1))
    assert notice.workdays == (date(2018, 12, 29), date(2019, 2, 2), date(2019, 2, 3))


def test_explicit_years_across_new_year_and_bare_days_in_a_list() -> None:
    text = (
        "国务院办公厅关于2025年部分节假日安排的通知\n"
        "一、元旦：2024年12月30日至2025年1月1日放假调休，共3天。12月28日（星期六）上班。\n"
        "二、春节：1月28日至2月4日放假调休，共8天。2月8日（星期六）、9日（星期日）上班。\n"
    )
    notice = parse_notice(text)
    assert notice.holidays[:3] == (date(2024, 12, 30), date(2024, 12, 31), date(2025, 1, 1))
    assert notice.workdays == (date(2024, 12, 28), date(2025, 2, 8), date(2025, 2, 9))


def test_a_make_up_day_in_the_previous_december_with_its_year() -> None:
    text = (
        "国务院办公厅关于2024年部分节假日安排的通知\n"
        "一、元旦：2024年1月1日至3日放假调休，共3天。2023年12月31日（星期日）上班。\n"
    )
    notice = parse_notice(text)
    assert notice.workdays == (date(2023, 12, 31),)
    assert notice.festivals == (("元旦", date(2024, 1, 1), date(2024, 1, 3)),)


SYNTHETIC_2027 = (
    "国务院办公厅关于２０２７年部分节假日安排的通知（测试用虚构文本，并非官方安排）\n"
    "　　一、元旦：１月１日（周五）至３日（周日）放假，共３天。\n"
    "　　二、春节：2月5日(农历除夕、周五)至2月12日(农历正月初七、周五)放假调休，共8天。"
    "1月31日(周日)、2月20日(周六)上班。\n"
    "　　三、清明节：4月3日（星期六）至5日（星期一）放假，共3天。\n"
    "　　四、劳动节：5月1日（周六）至5日（周三）放假调休，共5天。"
    "4月25日（周日）、5月8日（周六）上班。\n"
    "　　五、端午节：6月9日（周三）放假1天，不调休。\n"
    "　　六、中秋节：9月15日（周三）放假1天，不调休。\n"
    "　　七、国庆节：10月1日（周五）至7日（周四）放假调休，共7天。"
    "9月26日（周日）、10月9日（周六）上班。\n"
)


def test_a_year_without_chinesecalendar_data_parses() -> None:
    with pytest.raises(NotImplementedError):
        chinese_calendar.is_workday(date(2027, 1, 4))
    notice = parse_notice(SYNTHETIC_2027)
    assert notice.year == 2027
    assert len(notice.holidays) == 3 + 8 + 3 + 5 + 1 + 1 + 7
    assert notice.workdays[0] == date(2027, 1, 31)
    assert notice.overrides()[date(2027, 10, 9)] is True


TITLE = "国务院办公厅关于2025年部分节假日安排的通知"
NEW_YEAR = "一、元旦：1月1日（周三）放假1天，不调休。"

REFUSALS = [
    ("二、春节：放假安排另行通知。", "no date"),
    ("二、春节：2月30日至3月4日放假调休，共8天。", "no date 2025年2月30日"),
    ("二、春节：2月4日至1月28日放假调休，共8天。", "on or before its start"),
    ("二、春节：1月28日至2月4日放假调休，共8天。上班。", "上班 with no date"),
    ("二、春节：1月28日至2月4日放假调休，共8天。1月26日（周六）上班。", "not 周六"),
    ("二、春节：1月28日至2月4日放假调休，共8天。1月27日上班。", "is a 周一"),
    ("二、春节：1月28日至2月4日放假调休，共7天。", "共7天 but its dates give 8"),
    ("二、春节：1月28日至2月4日，共8天。", "neither 放假 nor 上班"),
    ("二、春节：1月28日至2月2日放假，2月3日起正常上班。", "unexpected '起'"),
    ("二、春节：2027年1月28日至2月4日放假调休，共8天。", "outside the 2025 notice"),
    ("二、春节：1月28日至2月4日放假调休，共8天。2月1日（周六）上班。", "announced twice"),
    ("二、春节：1月28日至2月4日放假调休，共8天。2月8日（周六）补休。", "falls on a weekend"),
    ("二、春节：1月28日至放假。", "not followed by an end date"),
    ("二、春节：另外安排职工在2月9日放假。", "follows text"),
    ("二、春节：3月28日至4月4日放假调休，共8天。", "not in the season of 春节"),
    ("二、春节：1月28日至2月4日放假调休，共8天。4月26日（周六）上班。", "far from 春节"),
    ("二、春节：1月28日至2月4日放假调休，共8天。2月8（周六）上班。", "unreadable date"),
    ("二、春节：1月28日至2月4日放假调休，共8天。除夕补休。", "'补休' with no date"),
    ("二春节：1月28日至2月4日放假调休，共8天。", "not in the form"),
]


@pytest.mark.parametrize(("line", "reason"), REFUSALS, ids=[r for _, r in REFUSALS])
def test_unreadable_festival_lines_are_refused_with_line_number(line: str, reason: str) -> None:
    text = f"{TITLE}\n\n{NEW_YEAR}\n{line}\n节假日期间，各地区、各部门要妥善安排好值班。\n"
    with pytest.raises(NoticeParseError) as caught:
        parse_notice(text)
    assert caught.value.line_no == 4
    assert caught.value.line == line
    assert reason in caught.value.reason
    assert "line 4" in str(caught.value)


def test_refusal_in_a_continuation_line_names_that_line() -> None:
    spring = "二、春节：1月28日至2月4日放假调休，共8天。"
    text = f"{TITLE}\n{NEW_YEAR}\n{spring}\n2月30日（周六）上班。\n"
    with pytest.raises(NoticeParseError) as caught:
        parse_notice(text)
    assert (caught.value.line_no, caught.value.line) == (4, "2月30日（周六）上班。")


def test_full_width_digits_in_a_refused_line_are_reported_as_pasted() -> None:
    line = "二、春节：１月２８日至２月４日放假调休，共７天。"
    with pytest.raises(NoticeParseError) as caught:
        parse_notice(f"{TITLE}\n{line}\n")
    assert (caught.value.line_no, caught.value.line) == (2, line)


def test_a_notice_without_a_year_is_refused() -> None:
    text = "放假通知\n\n一、元旦：1月1日放假，与周末连休。\n"
    with pytest.raises(NoticeParseError) as caught:
        parse_notice(text)
    assert caught.value.line_no == 3
    assert "no year" in caught.value.reason


def test_a_notice_whose_title_and_body_disagree_is_refused() -> None:
    text = f"{TITLE}\n经国务院批准，现将2024年元旦、春节放假安排通知如下。\n{NEW_YEAR}\n"
    with pytest.raises(NoticeParseError) as caught:
        parse_notice(text)
    assert "several notice years" in caught.value.reason


def test_text_without_festival_lines_is_refused() -> None:
    with pytest.raises(NoticeParseError) as caught:
        parse_notice(f"\n{TITLE}\n节假日期间，各地区要妥善安排好值班。\n")
    assert caught.value.line_no == 2
    assert "no numbered festival line" in caught.value.reason


def test_encouraged_days_in_brackets_are_not_holidays() -> None:
    notice = parse_notice(read(NOTICES / "2024.txt"))  # 安排职工在除夕（2月9日）休息
    assert date(2024, 2, 9) not in notice.holidays
    assert notice.festivals[1] == ("春节", date(2024, 2, 10), date(2024, 2, 17))


def test_a_skipped_festival_number_is_refused() -> None:
    text = f"{TITLE}\n{NEW_YEAR}\n三、清明节：4月4日至6日放假，共3天。\n"
    with pytest.raises(NoticeParseError) as caught:
        parse_notice(text)
    assert caught.value.line_no == 3
    assert "numbered 3 where 2 was expected" in caught.value.reason


def test_a_numbered_festival_line_in_another_form_is_refused_not_skipped() -> None:
    line = "二、2025年春节 1月28日至2月4日放假调休，共8天。"
    with pytest.raises(NoticeParseError) as caught:
        parse_notice(f"{TITLE}\n{NEW_YEAR}\n{line}\n")
    assert (caught.value.line_no, caught.value.line) == (3, line)


def test_wrapped_lines_continue_their_festival() -> None:
    text = (
        f"{TITLE}\n{NEW_YEAR}\n"
        "二、春节：1月28日（农历除夕、周二）至\n"
        "2月4日（农历正月初七、周二）放假调休，共8天。1月26日（周日）、\n"
        "\n"
        "2月8日（周六）上班。\n"
        "三、清明节：4月4日至6日放假，共3天。\n"
        "4月12日（周六）上班。\n"
    )
    notice = parse_notice(text)
    assert notice.festivals[1] == ("春节", date(2025, 1, 28), date(2025, 2, 4))
    assert notice.workdays == (date(2025, 1, 26), date(2025, 2, 8), date(2025, 4, 12))


def test_a_dated_line_directly_after_a_festival_must_continue_it() -> None:
    line = "另：1月26日（周日）上班。"
    with pytest.raises(NoticeParseError) as caught:
        parse_notice(f"{TITLE}\n{NEW_YEAR}\n{line}\n")
    assert (caught.value.line_no, caught.value.line) == (3, line)


def test_a_dated_line_after_a_blank_line_is_not_a_continuation() -> None:
    text = f"{TITLE}\n{NEW_YEAR}\n\n2024年11月12日\n\n2025年1月26日（周日）上班。\n"
    notice = parse_notice(text)
    assert notice.workdays == ()
