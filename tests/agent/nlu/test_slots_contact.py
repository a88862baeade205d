"""Email, name and free-text slots; what every kind's grammar hint is."""

import datetime
import json

import pytest

from opusagent.agent.nlu.slots import (
    Invalid,
    Parsed,
    SlotKind,
    SlotRules,
    expected_phrases,
    extract,
    spoken,
)

TODAY = datetime.date(2026, 3, 1)
EMAIL = SlotRules("email")
NAME = SlotRules("name")


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("John.Smith@Example.com", "john.smith@example.com"),
        ("my email is john dot smith at example dot com", "john.smith@example.com"),
        ("j o h n underscore two three at gmail dot com", "john_23@gmail.com"),
        ("it is jane at example dot co dot uk thanks", "jane@example.co.uk"),
        ("send it to bob at mail dot example dot org please", "bob@mail.example.org"),
        ("my address is mary dash ann at foo dot com", "mary-ann@foo.com"),
    ],
)
def test_email_addresses(text: str, value: str) -> None:
    found = extract(EMAIL, text, today=TODAY)
    assert isinstance(found, Parsed)
    assert found.value == value


def test_an_email_reads_back_with_its_symbols_named() -> None:
    found = extract(EMAIL, "John.Smith23@Example.com", today=TODAY)
    assert isinstance(found, Parsed)
    assert found.spoken == "john dot smith two three at example dot com"


def test_a_malformed_address_is_invalid() -> None:
    found = extract(EMAIL, "my email is dot dot at example dot com", today=TODAY)
    assert found == Invalid(
        "..@example.com is not a valid email address", "dot dot at example dot com"
    )


@pytest.mark.parametrize("text", ["john at example", "i'm at home", "no email"])
def test_no_address_is_nothing(text: str) -> None:
    assert extract(EMAIL, text, today=TODAY) is None


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("my name is john smith", "John Smith"),
        ("this is j o h n smith", "John Smith"),
        ("um my name is peter", "Peter"),
        ("i'm mary-jane o'brien and i'm calling about my bill", "Mary-Jane O'Brien"),
        ("john f kennedy", "John F Kennedy"),
        ("no, it's smith", "Smith"),
    ],
)
def test_names_in_title_case(text: str, value: str) -> None:
    found = extract(NAME, text, today=TODAY)
    assert isinstance(found, Parsed)
    assert (found.value, found.spoken) == (value, value)


@pytest.mark.parametrize("text", ["it's 42", "my name is"])
def test_no_name_is_nothing(text: str) -> None:
    assert extract(NAME, text, today=TODAY) is None


def test_free_text_is_kept_stripped() -> None:
    rules = SlotRules("text")
    assert extract(rules, "  my card was eaten by the ATM  ", today=TODAY) == Parsed(
        "my card was eaten by the ATM",
        "my card was eaten by the ATM",
        "my card was eaten by the ATM",
    )
    assert extract(rules, "   ", today=TODAY) is None


def test_free_text_lengths_are_characters() -> None:
    found = extract(SlotRules("text", min_length=10), "hi", today=TODAY)
    assert found == Invalid("2 characters, need at least 10", "hi")


def test_free_text_ignores_what_looks_like_a_correction() -> None:
    found = extract(SlotRules("text"), "no, it was stolen", today=TODAY)
    assert isinstance(found, Parsed)
    assert found.value == "no, it was stolen"


def test_stored_names_and_emails_read_back() -> None:
    assert spoken(NAME, "John Smith") == "John Smith"
    assert spoken(EMAIL, "a_b-c@x.io") == "a underscore b dash c at x dot io"


@pytest.mark.parametrize("kind", ["number", "amount", "date", "time", "email", "name", "text"])
def test_open_ended_kinds_give_no_grammar(kind: SlotKind) -> None:
    assert expected_phrases(SlotRules(kind)) == []


@pytest.mark.parametrize(
    ("rules", "text"),
    [
        (SlotRules("amount"), "twenty five dollars fifty"),
        (SlotRules("date"), "next monday"),
        (SlotRules("yes_no"), "yeah"),
        (SlotRules("number"), "three point five"),
        (EMAIL, "john at example dot com"),
    ],
)
def test_values_are_json_and_the_same_every_time(rules: SlotRules, text: str) -> None:
    first = extract(rules, text, today=TODAY)
    second = extract(rules, text, today=TODAY)
    assert isinstance(first, Parsed)
    assert first == second
    assert json.loads(json.dumps(first.value)) == first.value
