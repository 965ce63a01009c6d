from datetime import timedelta

import pytest

from estateflow.engine._durations import Duration
from estateflow.engine._errors import DurationError, EstateflowError


@pytest.mark.parametrize(
    ("text", "amount", "unit"),
    [
        ("3 working days", 3, "working_days"),
        ("1 working day", 1, "working_days"),
        ("8 business hours", 8, "business_hours"),
        ("1 business hour", 1, "business_hours"),
        ("30 business minutes", 30, "business_minutes"),
        ("7 days", 7, "days"),
        ("1 day", 1, "days"),
        ("4 hours", 4, "hours"),
        ("90 minutes", 90, "minutes"),
        ("0 minutes", 0, "minutes"),
        ("3个工作日", 3, "working_days"),
        ("3工作日", 3, "working_days"),
        ("8个工作小时", 8, "business_hours"),
        ("7天", 7, "days"),
        ("4小时", 4, "hours"),
        ("4个小时", 4, "hours"),
        ("30分钟", 30, "minutes"),
        ("  3   working\tdays ", 3, "working_days"),
        ("3workingdays", 3, "working_days"),
        ("3 个 工作日", 3, "working_days"),
        ("3 Working Days", 3, "working_days"),
    ],
)
def test_parse_accepts_english_and_chinese_forms(text, amount, unit):
    assert Duration.parse(text) == Duration(amount, unit)


@pytest.mark.parametrize(
    "text",
    ["", "3", "days", "-3 days", "3.5 days", "3 weeks", "three days", "3 working", "3 days late",
     "3 days 4 hours", "3 business days", "+3 days"],
)
def test_parse_rejects_anything_else_naming_the_accepted_forms(text):
    with pytest.raises(DurationError) as info:
        Duration.parse(text)
    assert isinstance(info.value, ValueError)
    assert isinstance(info.value, EstateflowError)
    message = str(info.value)
    assert repr(text) in message
    assert "N working days" in message and "N个工作日" in message


def test_parse_rejects_non_text():
    with pytest.raises(DurationError, match="expected text"):
        Duration.parse(3)  # type: ignore[arg-type]


def test_parse_passes_a_duration_through_and_caches_text():
    d = Duration(3, "working_days")
    assert Duration.parse(d) is d
    assert Duration.parse("5 hours") is Duration.parse("5 hours")


@pytest.mark.parametrize(
    ("duration", "text"),
    [
        (Duration(3, "working_days"), "3 working days"),
        (Duration(1, "working_days"), "1 working day"),
        (Duration(8, "business_hours"), "8 business hours"),
        (Duration(1, "business_minutes"), "1 business minute"),
        (Duration(0, "days"), "0 days"),
        (Duration(4, "hours"), "4 hours"),
        (Duration(90, "minutes"), "90 minutes"),
    ],
)
def test_str_is_english_and_round_trips(duration, text):
    assert str(duration) == text
    assert Duration.parse(str(duration)) == duration


def test_chinese_text_round_trips_to_english():
    assert str(Duration.parse("8个工作小时")) == "8 business hours"


def test_constructor_validates_amount_and_unit():
    with pytest.raises(DurationError):
        Duration(-1, "days")
    with pytest.raises(DurationError):
        Duration(True, "days")  # type: ignore[arg-type]
    with pytest.raises(DurationError):
        Duration(1, "weeks")  # type: ignore[arg-type]


def test_duration_is_frozen():
    d = Duration(1, "days")
    with pytest.raises(AttributeError):
        d.amount = 2  # type: ignore[misc]


def test_is_working_time():
    assert Duration.parse("3 working days").is_working_time
    assert Duration.parse("8 business hours").is_working_time
    assert Duration.parse("30 business minutes").is_working_time
    assert not Duration.parse("7 days").is_working_time
    assert not Duration.parse("4 hours").is_working_time
    assert not Duration.parse("30 minutes").is_working_time


def test_as_timedelta():
    assert Duration.parse("7 days").as_timedelta() == timedelta(days=7)
    assert Duration.parse("4 hours").as_timedelta() == timedelta(hours=4)
    assert Duration.parse("90 minutes").as_timedelta() == timedelta(minutes=90)
    assert Duration.parse("8 business hours").as_timedelta() == timedelta(hours=8)
    assert Duration.parse("30 business minutes").as_timedelta() == timedelta(minutes=30)
    with pytest.raises(DurationError, match="working days have no fixed length"):
        Duration.parse("3 working days").as_timedelta()
