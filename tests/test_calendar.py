"""Working-day arithmetic against the official 2024-2026 schedules (checked in chinesecalendar).

Expected instants are written out as ISO text so that the wall clock and the UTC offset are
both asserted, not just the instant.
"""

import logging
import pickle
from datetime import date, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

import chinese_calendar
import pytest
from hypothesis import given, settings, strategies as st

from estateflow.engine._calendar import BusinessCalendar
from estateflow.engine._durations import Duration
from estateflow.engine._errors import CalendarDataMissing

SH = ZoneInfo("Asia/Shanghai")
NY = ZoneInfo("America/New_York")
LUNCH = (("09:00", "12:00"), ("13:30", "18:00"))


def sh(*args: int) -> datetime:
    return datetime(*args, tzinfo=SH)


def ny(*args: int) -> datetime:
    return datetime(*args, tzinfo=NY)


def iso(value: datetime) -> str:
    return value.isoformat()


@pytest.fixture(scope="module")
def cn() -> BusinessCalendar:
    # data_until pins the seed data, so a chinesecalendar release with 2027 changes nothing here
    return BusinessCalendar(data_until=2026)


@pytest.fixture(scope="module")
def us() -> BusinessCalendar:
    return BusinessCalendar(
        "us", timezone="America/New_York", business_hours=(("09:00", "17:00"),), country="US"
    )


# -- working days, China -----------------------------------------------------------------------


def test_friday_plus_3_working_days_counts_the_make_up_sunday(cn):
    # Sat 09-27 off, Sun 09-28 make-up working day, Mon 09-29, Tue 09-30
    assert iso(cn.add(sh(2025, 9, 26, 10), "3 working days")) == "2025-09-30T18:00:00+08:00"


@pytest.mark.parametrize(
    ("start", "n", "expected"),
    [
        # 2025 National Day: Oct 1-8 off, Sat Oct 11 working
        (sh(2025, 9, 30, 10), 1, "2025-10-09T18:00:00+08:00"),
        (sh(2025, 9, 30, 10), 2, "2025-10-10T18:00:00+08:00"),
        (sh(2025, 9, 30, 10), 3, "2025-10-11T18:00:00+08:00"),
        (sh(2025, 9, 30, 10), 4, "2025-10-13T18:00:00+08:00"),
        # 2025 Spring Festival: Jan 28-Feb 4 off, Sun Jan 26 and Sat Feb 8 working
        (sh(2025, 1, 24, 10), 1, "2025-01-26T18:00:00+08:00"),
        (sh(2025, 1, 24, 10), 2, "2025-01-27T18:00:00+08:00"),
        (sh(2025, 1, 24, 10), 3, "2025-02-05T18:00:00+08:00"),
        (sh(2025, 1, 29, 10), 4, "2025-02-08T18:00:00+08:00"),
        # 2024 Spring Festival: Feb 10-17 off, Sun Feb 4 and Sun Feb 18 working
        (sh(2024, 2, 2, 10), 1, "2024-02-04T18:00:00+08:00"),
        (sh(2024, 2, 9, 10), 1, "2024-02-18T18:00:00+08:00"),
        # 2024 National Day: Sun Sep 29 working, Oct 1-7 off, Sat Oct 12 working
        (sh(2024, 9, 27, 10), 1, "2024-09-29T18:00:00+08:00"),
        (sh(2024, 9, 30, 10), 1, "2024-10-08T18:00:00+08:00"),
        (sh(2024, 10, 11, 10), 1, "2024-10-12T18:00:00+08:00"),
        # 2026 Spring Festival: Sat Feb 14 working, Feb 15-23 off, Sat Feb 28 working
        (sh(2026, 2, 13, 10), 1, "2026-02-14T18:00:00+08:00"),
        (sh(2026, 2, 13, 10), 2, "2026-02-24T18:00:00+08:00"),
        (sh(2026, 2, 27, 10), 1, "2026-02-28T18:00:00+08:00"),
        # New Year 2026 (Jan 1-3 off, Sun Jan 4 working), counted across the year end
        (sh(2025, 12, 31, 10), 1, "2026-01-04T18:00:00+08:00"),
        (sh(2025, 12, 31, 10), 2, "2026-01-05T18:00:00+08:00"),
    ],
)
def test_working_days_follow_the_official_schedule(cn, start, n, expected):
    assert iso(cn.add(start, Duration(n, "working_days"))) == expected


def test_start_on_a_holiday_counts_from_the_next_working_day(cn):
    assert iso(cn.add(sh(2025, 10, 3, 15), "1 working day")) == "2025-10-09T18:00:00+08:00"
    assert iso(cn.add(sh(2025, 9, 27, 23, 59), "1 working day")) == "2025-09-28T18:00:00+08:00"


def test_time_of_day_does_not_matter_only_the_local_start_day(cn):
    expected = "2025-09-30T18:00:00+08:00"
    assert iso(cn.add(sh(2025, 9, 26, 0, 0), "3 working days")) == expected
    assert iso(cn.add(sh(2025, 9, 26, 23, 59), "3 working days")) == expected
    # 18:30 UTC on Thursday is 02:30 on Friday in Shanghai
    utc_start = datetime(2025, 9, 25, 18, 30, tzinfo=timezone.utc)
    assert iso(cn.add(utc_start, "3 working days")) == expected


def test_chinese_text_and_duration_objects_agree(cn):
    start = sh(2025, 9, 26, 10)
    assert cn.add(start, "3个工作日") == cn.add(start, Duration(3, "working_days"))


def test_zero_working_days_is_due_at_once(cn):
    assert cn.add(sh(2025, 9, 27, 10), "0 working days") == sh(2025, 9, 27, 10)


def test_without_business_hours_a_working_day_ends_at_midnight():
    cal = BusinessCalendar(business_hours=(), data_until=2026)
    assert iso(cal.add(sh(2025, 9, 26, 10), "3 working days")) == "2025-10-01T00:00:00+08:00"
    assert cal.business_hours == (("00:00", "24:00"),)


def test_a_long_count_matches_chinesecalendar_day_by_day(cn):
    day, left = date(2024, 3, 1), 400
    while left:
        day += timedelta(days=1)
        left -= chinese_calendar.is_workday(day)
    assert cn.add(sh(2024, 3, 1, 12), "400 working days") == sh(day.year, day.month, day.day, 18)


def test_is_working_day(cn):
    assert cn.is_working_day(date(2025, 9, 28))  # make-up Sunday
    assert not cn.is_working_day(date(2025, 9, 27))
    assert not cn.is_working_day(date(2025, 10, 8))
    assert cn.is_working_day(date(2025, 10, 11))  # make-up Saturday
    with pytest.raises(TypeError):
        cn.is_working_day(sh(2025, 9, 28))  # type: ignore[arg-type]


def test_results_are_aware_and_in_the_calendar_zone(cn):
    for text in ("3 working days", "8 business hours", "2 days", "5 hours"):
        result = cn.add(datetime(2025, 9, 26, 2, tzinfo=timezone.utc), text)
        assert result.tzinfo is SH


@pytest.mark.parametrize("method", ["add", "at_fraction", "between", "closes", "next"])
def test_naive_datetimes_are_refused(cn, method):
    naive = datetime(2025, 9, 26, 10)
    calls = {
        "add": lambda: cn.add(naive, "3 working days"),
        "at_fraction": lambda: cn.at_fraction(naive, "3 working days", 0.5),
        "between": lambda: cn.business_time_between(naive, sh(2025, 9, 27)),
        "closes": lambda: cn.closes_of_business_between(sh(2025, 9, 20), naive),
        "next": lambda: cn.next_business_start(naive),
    }
    with pytest.raises(ValueError, match="timezone-aware"):
        calls[method]()


# -- business hours ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("start", "text", "expected"),
    [
        (sh(2025, 9, 26, 16), "8 business hours", "2025-09-28T15:00:00+08:00"),  # via make-up Sun
        (sh(2025, 9, 22, 7), "2 business hours", "2025-09-22T11:00:00+08:00"),  # before hours
        (sh(2025, 9, 22, 20), "2 business hours", "2025-09-23T11:00:00+08:00"),  # after hours
        (sh(2025, 10, 3, 10), "1 business hour", "2025-10-09T10:00:00+08:00"),  # on a holiday
        (sh(2025, 9, 22, 9), "9 business hours", "2025-09-22T18:00:00+08:00"),  # ends at close
        (sh(2025, 9, 22, 17, 45), "30 business minutes", "2025-09-23T09:15:00+08:00"),
        (sh(2025, 9, 22, 20), "0 business minutes", "2025-09-23T09:00:00+08:00"),
        (sh(2025, 9, 22, 10), "8个工作小时", "2025-09-22T18:00:00+08:00"),
    ],
)
def test_business_hours_count_only_open_time_on_working_days(cn, start, text, expected):
    assert iso(cn.add(start, text)) == expected


def test_business_hours_skip_lunch():
    cal = BusinessCalendar(business_hours=LUNCH, data_until=2026)
    assert iso(cal.add(sh(2025, 9, 22, 11), "2 business hours")) == "2025-09-22T14:30:00+08:00"
    lunch_start = cal.add(sh(2025, 9, 22, 12, 30), "30 business minutes")
    assert iso(lunch_start) == "2025-09-22T14:00:00+08:00"
    assert iso(cal.add(sh(2025, 9, 22, 17), "2 business hours")) == "2025-09-23T10:00:00+08:00"
    assert iso(cal.add(sh(2025, 9, 22, 10), "1 working day")) == "2025-09-23T18:00:00+08:00"
    whole_day = cal.business_time_between(sh(2025, 9, 22, 8), sh(2025, 9, 22, 20))
    assert whole_day == timedelta(hours=7.5)


def test_business_time_between(cn):
    # Fri 16-18, Sat off, Sun 09-28 (make-up) 9 h, Mon 09-10
    assert cn.business_time_between(sh(2025, 9, 26, 16), sh(2025, 9, 29, 10)) == timedelta(hours=12)
    assert cn.business_time_between(sh(2025, 10, 1, 9), sh(2025, 10, 8, 18)) == timedelta(0)
    assert cn.business_time_between(sh(2025, 9, 22, 10), sh(2025, 9, 22, 10)) == timedelta(0)
    with pytest.raises(ValueError, match="before start"):
        cn.business_time_between(sh(2025, 9, 22, 10), sh(2025, 9, 22, 9))


@pytest.mark.parametrize(
    ("moment", "expected"),
    [
        (sh(2025, 9, 22, 10, 30), "2025-09-22T10:30:00+08:00"),  # inside: itself
        (sh(2025, 9, 22, 7), "2025-09-22T09:00:00+08:00"),
        (sh(2025, 9, 22, 18), "2025-09-23T09:00:00+08:00"),  # half-open: 18:00 is closed
        (sh(2025, 9, 26, 19), "2025-09-28T09:00:00+08:00"),  # to the make-up Sunday
        (sh(2025, 10, 3, 11), "2025-10-09T09:00:00+08:00"),  # holiday
    ],
)
def test_next_business_start(cn, moment, expected):
    assert iso(cn.next_business_start(moment)) == expected


def test_next_business_start_after_lunch_break():
    cal = BusinessCalendar(business_hours=LUNCH, data_until=2026)
    assert iso(cal.next_business_start(sh(2025, 9, 22, 12, 30))) == "2025-09-22T13:30:00+08:00"


def test_close_of_business(cn):
    assert iso(cn.close_of_business(date(2025, 9, 30))) == "2025-09-30T18:00:00+08:00"
    cal = BusinessCalendar(business_hours=LUNCH, data_until=2026)
    assert iso(cal.close_of_business(date(2025, 9, 30))) == "2025-09-30T18:00:00+08:00"


def test_business_hours_accept_time_objects_and_are_validated():
    cal = BusinessCalendar(business_hours=((time(8, 30), time(17)),), data_until=2026)
    assert cal.business_hours == (("08:30", "17:00"),)
    bad = [
        (("18:00", "09:00"),),
        (("09:00", "09:00"),),
        (("13:00", "18:00"), ("09:00", "12:00")),
        (("09:00", "13:00"), ("12:00", "18:00")),
        (("9am", "18:00"),),
        (("09:00", "24:30"),),
        ("09:00", "18:00"),
    ]
    for hours in bad:
        with pytest.raises(ValueError, match="business hours"):
            BusinessCalendar(business_hours=hours)


# -- America/New_York across DST --------------------------------------------------------------


def test_new_york_business_hours_across_spring_forward(us):
    result = us.add(ny(2025, 3, 7, 16), "4 business hours")  # Fri EST -> Mon EDT
    assert iso(result) == "2025-03-10T12:00:00-04:00"
    assert us.business_time_between(ny(2025, 3, 7, 16), result) == timedelta(hours=4)


def test_new_york_business_hours_across_fall_back(us):
    result = us.add(ny(2025, 10, 31, 16), "4 business hours")  # Fri EDT -> Mon EST
    assert iso(result) == "2025-11-03T12:00:00-05:00"
    assert us.business_time_between(ny(2025, 10, 31, 16), result) == timedelta(hours=4)


def test_new_york_hours_are_absolute_and_days_keep_the_wall_clock(us):
    spring = ny(2025, 3, 8, 12)
    assert iso(us.add(spring, "24 hours")) == "2025-03-09T13:00:00-04:00"
    assert iso(us.add(spring, "1 day")) == "2025-03-09T12:00:00-04:00"
    # subtract in UTC: aware datetimes sharing one ZoneInfo subtract as wall clocks
    assert us.add(spring, "1 day").astimezone(timezone.utc) - spring == timedelta(hours=23)
    autumn = ny(2025, 11, 1, 12)
    assert iso(us.add(autumn, "24 hours")) == "2025-11-02T11:00:00-05:00"
    assert iso(us.add(autumn, "1 day")) == "2025-11-02T12:00:00-05:00"
    assert us.add(autumn, "1 day").astimezone(timezone.utc) - autumn == timedelta(hours=25)
    assert iso(us.add(autumn, "90 minutes")) == "2025-11-01T13:30:00-04:00"


def test_new_york_nonexistent_wall_time_moves_forward(us):
    assert iso(us.add(ny(2025, 3, 8, 2, 30), "1 day")) == "2025-03-09T03:30:00-04:00"
    # an ambiguous wall time takes its first occurrence
    assert iso(us.add(ny(2025, 11, 1, 1, 30), "1 day")) == "2025-11-02T01:30:00-04:00"


def test_new_york_working_days_and_us_holidays(us):
    assert iso(us.add(ny(2025, 3, 7, 10), "1 working day")) == "2025-03-10T17:00:00-04:00"
    assert iso(us.add(ny(2025, 10, 31, 10), "1 working day")) == "2025-11-03T17:00:00-05:00"
    # Thanksgiving, Thu 2025-11-27
    assert iso(us.add(ny(2025, 11, 26, 10), "1 working day")) == "2025-11-28T17:00:00-05:00"
    assert us.data_range() == (None, None)
    assert not us.is_working_day(date(2031, 12, 25))


def test_new_york_day_of_23_and_25_real_hours_counts_real_business_time():
    cal = BusinessCalendar(
        "ny24", timezone="America/New_York", business_hours=(), country=None,
        overrides={date(2025, 3, 9): True, date(2025, 11, 2): True},
    )
    assert cal.business_time_between(ny(2025, 3, 9), ny(2025, 3, 10)) == timedelta(hours=23)
    assert cal.business_time_between(ny(2025, 11, 2), ny(2025, 11, 3)) == timedelta(hours=25)
    assert iso(cal.add(ny(2025, 3, 8, 10), "1 working day")) == "2025-03-10T00:00:00-04:00"
    assert iso(cal.add(ny(2025, 3, 9, 0), "23 business hours")) == "2025-03-10T00:00:00-04:00"


# -- missing data ------------------------------------------------------------------------------


def test_missing_year_raises_naming_the_year_and_the_fix():
    cal = BusinessCalendar(data_until=2025)
    with pytest.raises(CalendarDataMissing) as info:
        cal.is_working_day(date(2026, 1, 5))
    assert isinstance(info.value, LookupError)
    assert info.value.year == 2026
    assert "2026" in str(info.value)
    assert "estateflow calendar import" in str(info.value)
    assert "--calendar cn" in str(info.value)


def test_counting_into_a_missing_year_raises(cn):
    cal = BusinessCalendar(data_until=2025)
    with pytest.raises(CalendarDataMissing) as info:
        cal.add(sh(2025, 12, 30, 10), "3 working days")
    assert info.value.day == date(2026, 1, 1)
    for call in (
        lambda: cal.add(sh(2025, 12, 31, 10), "9 business hours"),
        lambda: cal.business_time_between(sh(2025, 12, 31, 10), sh(2026, 1, 2, 10)),
        lambda: cal.closes_of_business_between(sh(2025, 12, 31, 10), sh(2026, 1, 2, 10)),
        lambda: cn.add(sh(2026, 12, 30, 10), "3 working days"),
        lambda: cn.is_working_day(date(2027, 1, 4)),
    ):
        with pytest.raises(CalendarDataMissing):
            call()
    # up to the last covered day everything still works
    assert iso(cal.add(sh(2025, 12, 29, 10), "2 working days")) == "2025-12-31T18:00:00+08:00"
    assert cal.business_time_between(sh(2025, 12, 31, 10), sh(2026, 1, 1)) == timedelta(hours=8)


def test_data_until_may_be_a_date():
    cal = BusinessCalendar(data_until=date(2025, 6, 30))
    assert cal.data_range() == (date(2004, 1, 1), date(2025, 6, 30))
    assert cal.is_working_day(date(2025, 6, 30))
    with pytest.raises(CalendarDataMissing) as info:
        cal.is_working_day(date(2025, 7, 1))
    assert info.value.day == date(2025, 7, 1)
    with pytest.raises(CalendarDataMissing):
        cal.add(sh(2025, 7, 2, 10), "1 working day")


def test_fallback_weekends_warns_once_per_year_and_carries_on(caplog):
    cal = BusinessCalendar(data_until=2025, fallback_weekends=True)
    with caplog.at_level(logging.WARNING, logger="estateflow.engine._calendar"):
        # weekends only in 2026: Thu Jan 1, Fri Jan 2, Mon Jan 5 (the real schedule gives Jan 6)
        assert iso(cal.add(sh(2025, 12, 31, 10), "3 working days")) == "2026-01-05T18:00:00+08:00"
        assert cal.is_working_day(date(2026, 1, 1))
        cal.add(sh(2026, 3, 2, 10), "3 working days")
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "2026" in warnings[0].getMessage()
    assert "weekends only" in warnings[0].getMessage()


def test_data_range(cn):
    assert cn.data_range() == (date(2004, 1, 1), date(2026, 12, 31))
    assert BusinessCalendar(data_until=2025).data_range() == (date(2004, 1, 1), date(2025, 12, 31))
    assert BusinessCalendar(country=None).data_range() == (None, None)
    weekends_until_2030 = BusinessCalendar(country=None, data_until=2030)
    assert weekends_until_2030.data_range() == (None, date(2030, 12, 31))
    with_2027 = cn.with_overrides({}, covered_years=[2027])
    assert with_2027.data_range() == (date(2004, 1, 1), date(2027, 12, 31))
    gap = cn.with_overrides({}, covered_years=[2029])  # 2027-2028 missing: not one span
    assert gap.data_range() == (date(2004, 1, 1), date(2026, 12, 31))


# -- overrides ---------------------------------------------------------------------------------


def test_override_day_off_on_a_normal_tuesday_pushes_the_deadline(cn):
    assert iso(cn.add(sh(2025, 9, 15, 10), "1 working day")) == "2025-09-16T18:00:00+08:00"
    closed = cn.with_overrides({date(2025, 9, 16): False})
    assert iso(closed.add(sh(2025, 9, 15, 10), "1 working day")) == "2025-09-17T18:00:00+08:00"
    assert not closed.is_working_day(date(2025, 9, 16))


def test_override_working_saturday_pulls_the_deadline_in(cn):
    assert iso(cn.add(sh(2025, 9, 19, 10), "1 working day")) == "2025-09-22T18:00:00+08:00"
    opened = cn.with_overrides({"2025-09-20": True})
    assert iso(opened.add(sh(2025, 9, 19, 10), "1 working day")) == "2025-09-20T18:00:00+08:00"


def test_override_wins_over_the_seed_holiday(cn):
    opened = cn.with_overrides({date(2025, 10, 8): True})
    assert iso(opened.add(sh(2025, 9, 30, 10), "1 working day")) == "2025-10-08T18:00:00+08:00"


def test_a_single_override_does_not_cover_its_year(cn):
    one_day = cn.with_overrides({date(2027, 1, 1): False})
    assert one_day.is_working_day(date(2027, 1, 1)) is False  # that day is settled
    with pytest.raises(CalendarDataMissing):
        one_day.is_working_day(date(2027, 1, 4))
    with pytest.raises(CalendarDataMissing) as info:
        one_day.add(sh(2026, 12, 31, 10), "1 working day")
    assert info.value.year == 2027


def test_a_full_schedule_with_covered_years_makes_the_year_work(cn):
    # a hypothetical 2027 notice: New Year's Day off, Sat Jan 9 a make-up working day
    notice = {date(2027, 1, 1): False, date(2027, 1, 9): True}
    cal = cn.with_overrides(notice, covered_years=[2027])
    assert iso(cal.add(sh(2026, 12, 31, 10), "1 working day")) == "2027-01-04T18:00:00+08:00"
    assert iso(cal.add(sh(2027, 1, 8, 10), "1 working day")) == "2027-01-09T18:00:00+08:00"
    assert cal.is_working_day(date(2027, 1, 4))
    assert not cal.is_working_day(date(2027, 1, 10))


def test_calendars_are_immutable_values(cn):
    changed = cn.with_overrides({date(2025, 9, 16): False})
    assert changed is not cn and changed != cn
    assert cn.is_working_day(date(2025, 9, 16))
    assert cn.overrides == {}
    same = BusinessCalendar(data_until=2026)
    assert same == cn and hash(same) == hash(cn)
    assert changed == BusinessCalendar(data_until=2026, overrides={date(2025, 9, 16): False})
    with pytest.raises(AttributeError):
        cn.name = "other"  # type: ignore[misc]
    with pytest.raises(TypeError):
        cn.overrides[date(2025, 9, 17)] = False  # type: ignore[index]
    assert pickle.loads(pickle.dumps(changed)) == changed


def test_bad_configuration_is_refused():
    with pytest.raises(ValueError, match="time zone"):
        BusinessCalendar(timezone="Mars/Olympus")
    with pytest.raises(ValueError, match="country"):
        BusinessCalendar(country="XX")
    with pytest.raises(ValueError, match="must be a date"):
        BusinessCalendar(overrides={20250916: False})  # type: ignore[dict-item]


# -- warnings and pauses -------------------------------------------------------------------------


def test_at_fraction_of_working_days_uses_the_counted_days_business_time(cn):
    start = sh(2025, 9, 26, 10)  # counted days: Sun 09-28, Mon 09-29, Tue 09-30; 27 h
    assert iso(cn.at_fraction(start, "3 working days", 0.75)) == "2025-09-30T11:15:00+08:00"
    assert iso(cn.at_fraction(start, "3 working days", 0)) == "2025-09-28T09:00:00+08:00"
    assert cn.at_fraction(start, "3 working days", 1) == cn.add(start, "3 working days")


def test_at_fraction_with_a_lunch_break():
    cal = BusinessCalendar(business_hours=LUNCH, data_until=2026)
    # 7.5 h on Tue 09-23; half is 3.75 h: 09:00-12:00 then 45 min after 13:30
    half = cal.at_fraction(sh(2025, 9, 22, 10), "1 working day", 0.5)
    assert iso(half) == "2025-09-23T14:15:00+08:00"


def test_at_fraction_of_business_and_calendar_time(cn, us):
    half = cn.at_fraction(sh(2025, 9, 26, 16), "8 business hours", 0.5)
    assert iso(half) == "2025-09-28T11:00:00+08:00"  # 2 h on Friday, 2 h on the make-up Sunday
    assert iso(cn.at_fraction(sh(2025, 9, 22, 10), "4 hours", 0.75)) == "2025-09-22T13:00:00+08:00"
    # 1 wall-clock day across spring-forward is 23 real hours; half is 11.5 h
    assert iso(us.at_fraction(ny(2025, 3, 8, 12), "1 day", 0.5)) == "2025-03-08T23:30:00-05:00"
    with pytest.raises(ValueError, match="fraction"):
        cn.at_fraction(sh(2025, 9, 22, 10), "4 hours", -0.1)


def test_closes_of_business_between_is_half_open(cn):
    # Fri 09-26, Sun 09-28 (make-up), Mon 09-29 close inside the window
    assert cn.closes_of_business_between(sh(2025, 9, 26, 10), sh(2025, 9, 30, 10)) == 3
    assert cn.closes_of_business_between(sh(2025, 9, 26, 18), sh(2025, 9, 29, 18)) == 2
    assert cn.closes_of_business_between(sh(2025, 9, 30, 18, 0, 1), sh(2025, 10, 9, 18)) == 0
    assert cn.closes_of_business_between(sh(2025, 9, 30, 18, 0, 1), sh(2025, 10, 9, 18, 0, 1)) == 1
    assert cn.closes_of_business_between(sh(2025, 9, 30), sh(2025, 9, 29)) == 0


def test_a_pause_moves_a_working_day_deadline(cn):
    due = cn.add(sh(2025, 9, 26, 10), "3 working days")  # Tue 09-30 18:00
    lost = cn.closes_of_business_between(sh(2025, 9, 26, 11), sh(2025, 9, 29, 10))  # Fri, Sun
    assert lost == 2
    assert iso(cn.add(due, Duration(lost, "working_days"))) == "2025-10-10T18:00:00+08:00"


def test_closes_of_business_at_midnight_without_business_hours():
    cal = BusinessCalendar(business_hours=(), data_until=2026)
    # Thu 2025-09-25 closes at Fri 00:00, Fri 2025-09-26 at Sat 00:00
    assert cal.closes_of_business_between(sh(2025, 9, 26), sh(2025, 9, 27)) == 1  # Thursday
    assert cal.closes_of_business_between(sh(2025, 9, 26, 0, 0, 1), sh(2025, 9, 27)) == 0
    assert cal.closes_of_business_between(sh(2025, 9, 26, 0, 0, 1), sh(2025, 9, 27, 0, 0, 1)) == 1
    assert cal.closes_of_business_between(sh(2025, 9, 27), sh(2025, 9, 27, 1)) == 1  # Friday


# -- properties --------------------------------------------------------------------------------

_CN = BusinessCalendar(data_until=2026)
_starts = st.datetimes(
    min_value=datetime(2024, 1, 1), max_value=datetime(2026, 6, 30), timezones=st.just(SH)
)


@settings(max_examples=300, deadline=None)
@given(start=_starts, n=st.integers(min_value=1, max_value=60))
def test_add_working_days_lands_on_a_close_with_exactly_n_working_days(start, n):
    result = _CN.add(start, Duration(n, "working_days"))
    day = result.date()
    assert result == _CN.close_of_business(day)
    assert chinese_calendar.is_workday(day)
    counted = sum(
        chinese_calendar.is_workday(start.date() + timedelta(days=k))
        for k in range(1, (day - start.date()).days + 1)
    )
    assert counted == n


@settings(max_examples=200, deadline=None)
@given(start=_starts, minutes=st.integers(min_value=0, max_value=60 * 60))
def test_business_minutes_added_are_the_business_time_between(start, minutes):
    result = _CN.add(start, Duration(minutes, "business_minutes"))
    assert result >= start
    assert _CN.business_time_between(start, result) == timedelta(minutes=minutes)
