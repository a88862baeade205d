"""Dates and times: spoken, typed and keyed, relative words against a fixed `today`."""

import datetime

import pytest

from opusagent.agent.nlu.slots import Invalid, Parsed, SlotRules, extract, spoken

TODAY = datetime.date(2026, 3, 1)  # a Sunday
DATE = SlotRules("date")
TIME = SlotRules("time")


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("2026-03-03", "2026-03-03"),
        ("3/3/2026", "2026-03-03"),
        ("3/3/26", "2026-03-03"),
        ("25/12", "2026-12-25"),
        ("march third", "2026-03-03"),
        ("march 3rd, 2026", "2026-03-03"),
        ("march the fifth", "2026-03-05"),
        ("march three twenty twenty six", "2026-03-03"),
        ("march twenty third two thousand twenty six", "2026-03-23"),
        ("the third of march twenty twenty seven", "2027-03-03"),
        ("on the 21st of december 2027", "2027-12-21"),
        ("3 march", "2026-03-03"),
        ("i was born on july fourth nineteen ninety nine", "1999-07-04"),
        ("january fifth", "2027-01-05"),
        ("february twenty ninth", "2028-02-29"),
        ("march first", "2026-03-01"),
    ],
)
def test_calendar_dates(text: str, value: str) -> None:
    found = extract(DATE, text, today=TODAY)
    assert isinstance(found, Parsed)
    assert found.value == value


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("today", "2026-03-01"),
        ("tomorrow", "2026-03-02"),
        ("yesterday", "2026-02-28"),
        ("the day after tomorrow", "2026-03-03"),
        ("monday", "2026-03-02"),
        ("this sunday", "2026-03-01"),
        ("next sunday", "2026-03-08"),
        ("next monday", "2026-03-02"),
        ("last friday", "2026-02-27"),
        ("this coming friday", "2026-03-06"),
        ("in three days", "2026-03-04"),
        ("in two weeks", "2026-03-15"),
        ("the fifteenth", "2026-03-15"),
    ],
)
def test_relative_dates_resolve_against_today(text: str, value: str) -> None:
    found = extract(DATE, text, today=TODAY)
    assert isinstance(found, Parsed)
    assert found.value == value


def test_relative_dates_follow_the_given_today_not_the_clock() -> None:
    found = extract(DATE, "tomorrow", today=datetime.date(1999, 12, 31))
    assert isinstance(found, Parsed)
    assert found.value == "2000-01-01"


def test_a_past_day_of_the_month_is_next_months() -> None:
    found = extract(DATE, "the fifth", today=datetime.date(2026, 12, 20))
    assert isinstance(found, Parsed)
    assert found.value == "2027-01-05"


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("february thirtieth", "February has no day 30"),
        ("february twenty ninth twenty twenty seven", "February 2027 has no day 29"),
        ("2026-13-01", "there is no month 13"),
    ],
)
def test_impossible_dates_are_invalid(text: str, reason: str) -> None:
    found = extract(DATE, text, today=TODAY)
    assert isinstance(found, Invalid)
    assert found.reason == reason


@pytest.mark.parametrize("text", ["may i help you", "march 2026", "sometime soon"])
def test_no_date_is_nothing(text: str) -> None:
    assert extract(DATE, text, today=TODAY) is None


def test_a_keyed_date_is_mmddyyyy() -> None:
    found = extract(DATE, "", "03032026#", today=TODAY)
    assert found == Parsed("2026-03-03", "Tuesday, March third, 2026", "03032026#")


def test_dates_read_back_with_weekday_and_ordinal_day() -> None:
    assert spoken(DATE, "2026-03-03") == "Tuesday, March third, 2026"
    assert spoken(DATE, "2026-12-21") == "Monday, December twenty first, 2026"


@pytest.mark.parametrize(
    ("text", "value", "said"),
    [
        ("15:30", "15:30", "three thirty PM"),
        ("3:30 pm", "15:30", "three thirty PM"),
        ("3pm", "15:00", "three PM"),
        ("3 p.m.", "15:00", "three PM"),
        ("03:30", "03:30", "three thirty AM"),
        ("three thirty pm", "15:30", "three thirty PM"),
        ("three thirty p m", "15:30", "three thirty PM"),
        ("nine oh five in the morning", "09:05", "nine oh five AM"),
        ("at ten tomorrow morning", "10:00", "ten AM"),
        ("fifteen hundred", "15:00", "three PM"),
        ("three o'clock", "15:00", "three PM"),
        ("three thirty", "15:30", "three thirty PM"),
        ("seven", "07:00", "seven AM"),
        ("twelve thirty", "12:30", "twelve thirty PM"),
        ("half past three", "15:30", "three thirty PM"),
        ("quarter to four", "15:45", "three forty five PM"),
        ("ten past nine", "09:10", "nine ten AM"),
        ("twenty minutes to six", "17:40", "five forty PM"),
        ("noon", "12:00", "noon"),
        ("midnight", "00:00", "midnight"),
        ("on march 3 at 5 pm", "17:00", "five PM"),
        ("twelve am", "00:00", "midnight"),
    ],
)
def test_times(text: str, value: str, said: str) -> None:
    found = extract(TIME, text, today=TODAY)
    assert isinstance(found, Parsed)
    assert (found.value, found.spoken) == (value, said)


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("fifteen am", "15 AM is not a time of day"),
        ("25:00", "25:00 is not a time of day"),
        ("nine sixty", "9:60 is not a time of day"),
    ],
)
def test_impossible_times_are_invalid(text: str, reason: str) -> None:
    found = extract(TIME, text, today=TODAY)
    assert isinstance(found, Invalid)
    assert found.reason == reason


def test_a_keyed_time_is_24_hour_hhmm() -> None:
    found = extract(TIME, "", "0930", today=TODAY)
    assert isinstance(found, Parsed)
    assert found.value == "09:30"


def test_times_read_back() -> None:
    assert spoken(TIME, "15:30") == "three thirty PM"
    assert spoken(TIME, "09:05") == "nine oh five AM"
    assert spoken(TIME, "00:15") == "twelve fifteen AM"
