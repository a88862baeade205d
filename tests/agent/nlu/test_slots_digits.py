"""Digit strings and phone numbers: speech, typing, DTMF, lengths, read-back, grammar."""

import datetime

import pytest

from opusagent.agent.nlu.slots import (
    Invalid,
    Parsed,
    SlotRules,
    expected_phrases,
    extract,
    spoken,
)

TODAY = datetime.date(2026, 3, 1)
PIN = SlotRules("digits", min_length=4, max_length=4)
CARD = SlotRules("digits", min_length=16, max_length=16)
PHONE = SlotRules("phone")


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("four two one seven", "4217"),
        ("my pin is four two one seven", "4217"),
        ("oh four two one", "0421"),
        ("double five oh seven", "5507"),
        ("forty two seventeen", "4217"),
        ("4217", "4217"),
        ("4 2 1 7", "4217"),
        ("four two dash one seven", "4217"),
        ("four for my account it's four two one seven", "4217"),
        ("four two one, sorry, four two one seven", "4217"),
        ("um four two uh one seven", "4217"),
    ],
)
def test_a_pin_from_speech_or_typing(text: str, value: str) -> None:
    found = extract(PIN, text, today=TODAY)
    assert isinstance(found, Parsed)
    assert found.value == value


def test_a_card_number_typed_with_dashes_is_read_back_in_fours() -> None:
    found = extract(CARD, "4217-1234-5678-9012", today=TODAY)
    assert found == Parsed(
        "4217123456789012",
        "four two one seven, one two three four, five six seven eight, nine zero one two",
        "4217 1234 5678 9012",
    )


def test_dtmf_is_read_before_the_words() -> None:
    found = extract(PIN, "one two three four", "9876#", today=TODAY)
    assert found == Parsed("9876", "nine eight seven six", "9876#")


@pytest.mark.parametrize(
    ("rules", "text", "reason"),
    [
        (CARD, "four two one seven " * 3 + "four two one", "15 digits, need 16"),
        (SlotRules("digits", min_length=4, max_length=6), "one two", "2 digits, need 4 to 6"),
        (SlotRules("digits", min_length=6), "one two", "2 digits, need at least 6"),
        (SlotRules("digits", max_length=2), "one two three", "3 digits, need at most 2"),
        (SlotRules("digits", pattern=r"4\d+"), "5 2 1 7", "5217 is not in the expected format"),
    ],
)
def test_digits_failing_a_validator_are_invalid(rules: SlotRules, text: str, reason: str) -> None:
    found = extract(rules, text, today=TODAY)
    assert isinstance(found, Invalid)
    assert found.reason == reason


def test_no_digits_is_nothing() -> None:
    assert extract(PIN, "i don't remember it", today=TODAY) is None


@pytest.mark.parametrize(
    ("text", "value", "said"),
    [
        (
            "five five five one two three four five six seven",
            "5551234567",
            "five five five, one two three, four five six seven",
        ),
        ("(555) 123-4567", "5551234567", "five five five, one two three, four five six seven"),
        (
            "+1 (555) 123-4567",
            "+15551234567",
            "plus one, five five five, one two three, four five six seven",
        ),
        (
            "plus four four two oh seven nine four six oh nine five eight",
            "+442079460958",
            "plus four four two zero, seven nine four six, zero nine five eight",
        ),
        (
            "country code one five five five one two three four five six seven",
            "+15551234567",
            "plus one, five five five, one two three, four five six seven",
        ),
    ],
)
def test_phone_numbers_national_and_e164(text: str, value: str, said: str) -> None:
    found = extract(PHONE, text, today=TODAY)
    assert isinstance(found, Parsed)
    assert (found.value, found.spoken) == (value, said)


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("five five five one two", "5 digits, need 7 to 15"),
        ("plus " + "one " * 16, "16 digits, need 7 to 15"),
    ],
)
def test_phone_numbers_are_7_to_15_digits_by_default(text: str, reason: str) -> None:
    found = extract(PHONE, text, today=TODAY)
    assert isinstance(found, Invalid)
    assert found.reason == reason


def test_a_keyed_phone_number() -> None:
    found = extract(PHONE, "", "5551234567#", today=TODAY)
    assert isinstance(found, Parsed)
    assert found.value == "5551234567"


@pytest.mark.parametrize(
    ("value", "said"),
    [
        ("4217", "four two one seven"),
        ("12345", "one two three, four five"),
        ("1234567", "one two three, four five six seven"),
        ("0000", "zero zero zero zero"),
    ],
)
def test_stored_digits_are_read_one_by_one_in_groups(value: str, said: str) -> None:
    assert spoken(SlotRules("digits"), value) == said


def test_a_stored_value_of_the_wrong_type_is_refused() -> None:
    with pytest.raises(TypeError):
        spoken(SlotRules("digits"), 4217)


@pytest.mark.parametrize(
    ("rules", "phrases"),
    [
        (CARD, ["<digits:16>"]),
        (SlotRules("digits", min_length=4, max_length=6), ["<digits:4-6>"]),
        (SlotRules("digits", min_length=4), ["<digits:4-64>"]),
        (SlotRules("digits", max_length=6), ["<digits:1-6>"]),
        (SlotRules("digits"), ["<digits>"]),
        (PHONE, ["<digits:7-15>", "plus <digits:7-15>"]),
    ],
)
def test_digit_grammar_hints_use_the_stt_digits_token(rules: SlotRules, phrases: list[str]) -> None:
    assert expected_phrases(rules) == phrases
