"""Spoken and typed numbers: runs, groups, and numbers back into words."""

from decimal import Decimal

import pytest

from opusagent.agent.nlu.numbers import (
    cardinal_words,
    decimal_words,
    digit_words,
    number_runs,
    ordinal_words,
)
from opusagent.agent.nlu.text import after_correction, tokens


@pytest.mark.parametrize(
    ("text", "groups", "value"),
    [
        ("four two one seven", ("4", "2", "1", "7"), "4217"),
        ("twenty five", ("25",), "25"),
        ("one hundred and five", ("105",), "105"),
        ("a thousand", ("1000",), "1000"),
        ("two thousand and six", ("2006",), "2006"),
        ("twenty twenty six", ("20", "26"), "2026"),
        ("nineteen ninety nine", ("19", "99"), "1999"),
        ("one oh five", ("1", "0", "5"), "105"),
        ("double five", ("5", "5"), "55"),
        ("triple oh seven", ("0", "0", "0", "7"), "7"),
        ("forty two seventeen", ("42", "17"), "4217"),
        ("fifteen hundred", ("1500",), "1500"),
        ("one million two hundred thousand three hundred forty five", ("1200345",), "1200345"),
        ("three point one four", ("3",), "3.14"),
        ("point five", ("0",), "0.5"),
        ("minus twelve", ("12",), "-12"),
        ("1,234.50", ("1234",), "1234.50"),
        ("4217", ("4217",), "4217"),
    ],
)
def test_a_run_reads_as_its_groups_and_value(
    text: str, groups: tuple[str, ...], value: str
) -> None:
    (run,) = number_runs(tokens(text))
    assert (run.groups, run.value) == (groups, Decimal(value))


@pytest.mark.parametrize(
    ("text", "day"), [("march twenty third", 23), ("march 3rd", 3), ("the first", 1)]
)
def test_ordinals_end_a_run_and_are_marked(text: str, day: int) -> None:
    (run,) = number_runs(tokens(text))
    assert run.ordinal
    assert int(run.value) == day


def test_runs_are_found_apart_with_their_positions() -> None:
    words = tokens("twenty five dollars fifty")
    runs = number_runs(words)
    assert [(r.start, r.end, r.digits) for r in runs] == [(0, 2, "25"), (3, 4, "50")]


@pytest.mark.parametrize("text", ["oh i see", "hello there", "a dog", "point taken"])
def test_words_that_only_look_like_numbers_are_not_runs(text: str) -> None:
    assert number_runs(tokens(text)) == []


@pytest.mark.parametrize(
    ("number", "cardinal", "ordinal"),
    [
        (1, "one", "first"),
        (3, "three", "third"),
        (12, "twelve", "twelfth"),
        (20, "twenty", "twentieth"),
        (21, "twenty one", "twenty first"),
        (105, "one hundred five", "one hundred fifth"),
        (2026, "two thousand twenty six", "two thousand twenty sixth"),
        (1_000_000, "one million", "one millionth"),
    ],
)
def test_numbers_back_into_words(number: int, cardinal: str, ordinal: str) -> None:
    assert (cardinal_words(number), ordinal_words(number)) == (cardinal, ordinal)


def test_zero_negative_decimal_and_digit_words() -> None:
    assert cardinal_words(0) == "zero"
    assert cardinal_words(-7) == "minus seven"
    assert decimal_words(Decimal("3.14")) == "three point one four"
    assert decimal_words(Decimal("-0.5")) == "minus zero point five"
    assert digit_words("4207") == "four two zero seven"


def test_tokens_keep_numerals_and_symbols_and_drop_hesitations() -> None:
    assert tokens("Um, that's $25.50 for 3rd-class, uh, OK?") == [
        "that's",
        "$",
        "25.50",
        "for",
        "3rd",
        "class",
        "ok",
    ]


@pytest.mark.parametrize(
    ("text", "tail"),
    [
        ("four, no, five", "five"),
        ("four two one, sorry, four two one seven", "four two one seven"),
        ("march third, I mean march fourth", "march fourth"),
        ("no", None),
        ("four two one seven", None),
    ],
)
def test_after_correction_keeps_what_follows_the_last_marker(text: str, tail: str | None) -> None:
    assert after_correction(text) == tail
