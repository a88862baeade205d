"""Dates and times of day, spoken or typed, resolved against a given `today`.

Dates: "2026-03-03"; "3/3/2026", "3/3/26", "3/3" (month first, as in the US, unless the first
number is over 12); "march third", "march 3rd, 2026", "the third of march twenty twenty six",
"3 march"; "today", "tomorrow", "yesterday", "the day after tomorrow"; "monday" and "this
monday" (the next Monday, today included), "next monday" (the first Monday after today),
"last monday"; "in three days", "in two weeks"; "the fifteenth" (this month, or next month
once the day has passed). A date without a year is its next occurrence, today included.
Keypad: MMDDYYYY.

Times: "15:30", "3:30 pm", "3pm"; "three thirty pm", "nine oh five in the morning", "fifteen
hundred", "three o'clock", "half past three", "quarter to four", "ten past nine", "noon",
"midnight". Without AM/PM (and no "morning", "afternoon", "evening", "tonight"), an hour
from 1 to 6 is taken as afternoon (a business-hours reading; the spoken confirmation says
"PM" so the caller can correct it); "03:30" with its leading zero is 24-hour time. Keypad:
HHMM, 24-hour.
"""

from __future__ import annotations

import calendar
import datetime
import re
from collections.abc import Sequence

from opusagent.agent.nlu.numbers import NumberRun, cardinal_words, number_runs, ordinal_words
from opusagent.agent.nlu.results import Invalid, Parsed
from opusagent.agent.nlu.text import find_phrase, tokens

MONTHS = {name.lower(): i for i, name in enumerate(calendar.month_name) if name} | {
    "jan": 1,
    "feb": 2,
    "mar": 3,
    "apr": 4,
    "jun": 6,
    "jul": 7,
    "aug": 8,
    "sep": 9,
    "sept": 9,
    "oct": 10,
    "nov": 11,
    "dec": 12,
}
WEEKDAYS = {name.lower(): i for i, name in enumerate(calendar.day_name)}
_ISO_DATE = re.compile(r"\b(\d{4})-(\d{1,2})-(\d{1,2})\b")
_SLASH_DATE = re.compile(r"\b(\d{1,2})/(\d{1,2})(?:/(\d{4}|\d{2}))?\b")
_RELATIVE = (
    (("the", "day", "after", "tomorrow"), 2),
    (("day", "after", "tomorrow"), 2),
    (("the", "day", "before", "yesterday"), -2),
    (("day", "before", "yesterday"), -2),
    (("today",), 0),
    (("tonight",), 0),
    (("tomorrow",), 1),
    (("yesterday",), -1),
)
_SPANS = {"day": 1, "days": 1, "week": 7, "weeks": 7}
_LATEST_YEARS_AHEAD = 8  # enough to reach the next 29 February


def speak_date(day: datetime.date) -> str:
    """ "Tuesday, March third, 2026"."""
    weekday = calendar.day_name[day.weekday()]
    return f"{weekday}, {calendar.month_name[day.month]} {ordinal_words(day.day)}, {day.year}"


def _parsed(day: datetime.date, text: str) -> Parsed:
    return Parsed(day.isoformat(), speak_date(day), text)


def _year(digits: str) -> int | None:
    if len(digits) == 4:
        return int(digits)
    return 2000 + int(digits) if len(digits) == 2 else None


def _resolve(
    year: int | None, month: int, day: int, today: datetime.date, text: str
) -> Parsed | Invalid:
    """The date, or with no year its next occurrence from `today` on."""
    name = calendar.month_name[month]
    if not 1 <= day <= calendar.monthrange(2000, month)[1]:  # 2000 was a leap year
        return Invalid(f"{name} has no day {day}", text)
    if year is not None:
        if day > calendar.monthrange(year, month)[1]:
            return Invalid(f"{name} {year} has no day {day}", text)
        return _parsed(datetime.date(year, month, day), text)
    for candidate in range(today.year, today.year + _LATEST_YEARS_AHEAD + 1):
        if day <= calendar.monthrange(candidate, month)[1]:
            found = datetime.date(candidate, month, day)
            if found >= today:
                return _parsed(found, text)
    raise AssertionError("unreachable: every valid day recurs within eight years")


def _typed_date(text: str, today: datetime.date) -> Parsed | Invalid | None:
    match = _ISO_DATE.search(text)
    if match:
        year, month, day = (int(g) for g in match.groups())
        if not 1 <= month <= 12:
            return Invalid(f"there is no month {month}", match.group())
        return _resolve(year, month, day, today, match.group())
    match = _SLASH_DATE.search(text)
    if match:
        first, second = int(match.group(1)), int(match.group(2))
        month, day = (second, first) if first > 12 >= second else (first, second)
        if not 1 <= month <= 12:
            return Invalid(f"there is no month {month}", match.group())
        said_year = _year(match.group(3)) if match.group(3) else None
        return _resolve(said_year, month, day, today, match.group())
    return None


def _run_at(runs: Sequence[NumberRun], start: int) -> NumberRun | None:
    return next((r for r in runs if r.start == start), None)


def _run_ending_at(runs: Sequence[NumberRun], end: int) -> NumberRun | None:
    return next((r for r in runs if r.end == end), None)


def _day_then_year(run: NumberRun, runs: Sequence[NumberRun]) -> tuple[int, int | None, int]:
    """Day, year and end of "third [twenty twenty six]", "3 2026", "three twenty twenty six"."""
    if run.ordinal or len(run.groups) == 1:
        following = _run_at(runs, run.end)
        year = None if following is None or following.ordinal else _year(following.digits)
        if following is not None and year is not None:
            return int(run.groups[-1]), year, following.end
        return int(run.groups[-1]), None, run.end
    return int(run.groups[0]), _year("".join(run.groups[1:])), run.end


def _named_month(words: Sequence[str], today: datetime.date) -> Parsed | Invalid | None:
    """ "march [the] third [twenty twenty six]", "[the] third of march [2026]", "3 march"."""
    runs = [r for r in number_runs(words) if not r.negative and r.fraction is None]
    for i, word in enumerate(words):
        month = MONTHS.get(word)
        if month is None:
            continue
        before = _run_ending_at(runs, i - (words[i - 1 : i] == ["of"]))
        after = _run_at(runs, i + 1 + (words[i + 1 : i + 2] == ["the"]))
        if after is not None and len(after.groups) == 1 and len(after.digits) == 4:
            after = None  # "march 2026": a year, not a day
        if before is not None and (after is None or before.ordinal or words[i - 1] == "of"):
            day = int(before.groups[-1])
            following = _run_at(runs, i + 1)
            year = None if following is None or following.ordinal else _year(following.digits)
            end = i + 1 if following is None or year is None else following.end
            start = before.start - (words[before.start - 1 : before.start] == ["the"])
        elif after is not None:
            day, year, end = _day_then_year(after, runs)
            start = i
        else:
            continue
        return _resolve(year, month, day, today, " ".join(words[start:end]))
    return None


def _relative(words: Sequence[str], today: datetime.date) -> Parsed | None:
    for phrase, offset in _RELATIVE:
        if find_phrase(words, phrase) >= 0:
            return _parsed(today + datetime.timedelta(days=offset), " ".join(phrase))
    for run in number_runs(words):
        unit = words[run.end] if run.end < len(words) else ""
        if unit in _SPANS and run.start > 0 and words[run.start - 1] == "in":
            days = int(run.value) * _SPANS[unit]
            text = " ".join(words[run.start - 1 : run.end + 1])
            return _parsed(today + datetime.timedelta(days=days), text)
    return None


def _weekday(words: Sequence[str], today: datetime.date) -> Parsed | None:
    for i, word in enumerate(words):
        weekday = WEEKDAYS.get(word)
        if weekday is None:
            continue
        modifier = words[i - 1] if i > 0 else ""
        ahead = (weekday - today.weekday()) % 7
        if modifier == "next":
            ahead = ahead or 7
        elif modifier == "last":
            ahead = ahead - 7 if ahead else -7
        first = i - (modifier in ("next", "last", "this", "coming"))
        if modifier == "coming" and words[first - 1 : first] == ["this"]:
            first -= 1
        return _parsed(today + datetime.timedelta(days=ahead), " ".join(words[first : i + 1]))
    return None


def _day_of_month(words: Sequence[str], today: datetime.date) -> Parsed | Invalid | None:
    """ "the fifteenth": this month, or next month once it has passed."""
    for run in number_runs(words):
        if run.ordinal and run.start > 0 and words[run.start - 1] == "the":
            day = int(run.groups[-1])
            text = " ".join(words[run.start - 1 : run.end])
            month, year = today.month, today.year
            if day < today.day:
                month, year = (1, year + 1) if month == 12 else (month + 1, year)
            return _resolve(year, month, day, today, text)
    return None


def parse_date(text: str, today: datetime.date) -> Parsed | Invalid | None:
    """The date in `text` (see the module docstring for the forms)."""
    typed = _typed_date(text.lower(), today)
    if typed is not None:
        return typed
    words = tokens(text)
    return (
        _relative(words, today)
        or _named_month(words, today)
        or _weekday(words, today)
        or _day_of_month(words, today)
    )


def parse_keyed_date(keys: str, today: datetime.date) -> Parsed | Invalid | None:
    """Keypad MMDDYYYY."""
    entry = keys.rstrip("#")
    if len(entry) != 8 or not entry.isdigit():
        return None
    month = int(entry[:2])
    if not 1 <= month <= 12:
        return Invalid(f"there is no month {month}", keys)
    return _resolve(int(entry[4:]), month, int(entry[2:4]), today, keys)


# -- times ------------------------------------------------------------------------------

_TYPED_TIME = re.compile(r"(?<![\d:])(\d{1,2})(?::(\d{2}))?\s*(?:([ap])\.?\s?m\b\.?)?")
_MORNING = ("morning",)
_AFTERNOON = ("afternoon", "evening", "night", "tonight")
_NAMED_TIMES = {"noon": (12, 0), "midday": (12, 0), "midnight": (0, 0)}
_FRACTIONS = {"quarter": 15, "half": 30}


def speak_time(hour: int, minute: int) -> str:
    """ "three thirty PM", "nine oh five AM", "noon"."""
    if minute == 0 and hour in (0, 12):
        return "midnight" if hour == 0 else "noon"
    suffix = "AM" if hour < 12 else "PM"
    spoken = cardinal_words(hour % 12 or 12)
    if minute:
        spoken += (" oh " if minute < 10 else " ") + cardinal_words(minute)
    return f"{spoken} {suffix}"


def _clock(
    hour: int, minute: int, period: str | None, text: str, *, padded: bool = False
) -> Parsed | Invalid:
    if minute > 59 or hour > 23:
        return Invalid(f"{hour}:{minute:02d} is not a time of day", text)
    if period == "am":
        if hour > 12:
            return Invalid(f"{hour} AM is not a time of day", text)
        hour %= 12
    elif period == "pm":
        hour = hour % 12 + 12 if hour <= 12 else hour
    elif 1 <= hour <= 6 and not padded:
        hour += 12
    return Parsed(f"{hour:02d}:{minute:02d}", speak_time(hour, minute), text)


def _said_period(words: Sequence[str], end: int) -> tuple[str | None, int]:
    """AM/PM said right after the time ("pm", "p m"), with the index after it; else a part
    of the day said anywhere ("in the morning", "tonight")."""
    for period in ("am", "pm"):
        if words[end : end + 1] == [period]:
            return period, end + 1
        if words[end : end + 2] == list(period):
            return period, end + 2
    if any(w in _MORNING for w in words):
        return "am", end
    if any(w in _AFTERNOON for w in words):
        return "pm", end
    return None, end


def _typed_time(text: str) -> Parsed | Invalid | None:
    for match in _TYPED_TIME.finditer(text):
        hour, minute, period = match.group(1), match.group(2), match.group(3)
        if minute is None and period is None:
            continue
        said = f"{period}m" if period else _said_period(tokens(text), 0)[0]
        padded = hour.startswith("0")
        return _clock(int(hour), int(minute or 0), said, match.group().strip(), padded=padded)
    return None


def _hour_minute(run: NumberRun) -> tuple[int, int] | None:
    groups = run.groups
    if len(groups) == 1 and len(groups[0]) in (3, 4):  # "fifteen hundred", "1530"
        return divmod(int(groups[0]), 100)
    if len(groups) == 1:
        return int(groups[0]), 0
    minutes = "".join(groups[1:])  # "three thirty", "nine oh five"
    return (int(groups[0]), int(minutes)) if len(minutes) == 2 else None


def _spoken_time(words: Sequence[str]) -> Parsed | Invalid | None:
    for name, (hour, minute) in _NAMED_TIMES.items():
        if name in words:
            return Parsed(f"{hour:02d}:{minute:02d}", speak_time(hour, minute), name)
    runs = [
        r
        for r in number_runs(words)
        if not (r.ordinal or r.negative or r.fraction is not None)
        and not (r.start > 0 and words[r.start - 1] in MONTHS)
    ]
    relative = _relative_time(words, runs)
    if relative is not None:
        return relative
    best: tuple[NumberRun, int, int, str | None, int] | None = None
    for run in runs:  # the first time marked by AM/PM, "o'clock" or "at"; else the first
        clock = _hour_minute(run)
        if clock is None:
            continue
        end = run.end + (words[run.end : run.end + 1] in (["o'clock"], ["oclock"]))
        period, last = _said_period(words, end)
        best = best or (run, *clock, period, last)
        if last > end or end > run.end or words[run.start - 1 : run.start] == ["at"]:
            best = (run, *clock, period, last)
            break
    if best is None:
        return None
    run, hour, minute, period, last = best
    return _clock(hour, minute, period, " ".join(words[run.start : last]))


def _relative_time(words: Sequence[str], runs: Sequence[NumberRun]) -> Parsed | Invalid | None:
    """ "half past three", "quarter to four", "ten past nine", "twenty minutes to six"."""
    for i, word in enumerate(words):
        if word not in ("past", "to") or i == 0:
            continue
        hour_run = _run_at(runs, i + 1)
        if hour_run is None or len(hour_run.groups) != 1:
            continue
        before = i - (words[i - 1] in ("minute", "minutes"))
        minute_run = _run_ending_at(runs, before)
        if words[before - 1] in _FRACTIONS:
            minutes, first = _FRACTIONS[words[before - 1]], before - 1
            first -= words[first - 1 : first] == ["a"]
        elif minute_run is not None and len(minute_run.groups) == 1:
            minutes, first = int(minute_run.groups[0]), minute_run.start
        else:
            continue
        hour = int(hour_run.groups[0])
        if minutes >= 60 or not 1 <= hour <= 12:
            continue
        if word == "to":
            hour, minutes = hour - 1 or 12, 60 - minutes
        period, last = _said_period(words, hour_run.end)
        return _clock(hour, minutes, period, " ".join(words[first:last]))
    return None


def parse_time(text: str) -> Parsed | Invalid | None:
    """The time of day in `text` (see the module docstring for the forms)."""
    return _typed_time(text.lower()) or _spoken_time(tokens(text))


def parse_keyed_time(keys: str) -> Parsed | Invalid | None:
    """Keypad HHMM, 24-hour."""
    entry = keys.rstrip("#")
    if len(entry) != 4 or not entry.isdigit():
        return None
    return _clock(int(entry[:2]), int(entry[2:]), None, keys, padded=True)
