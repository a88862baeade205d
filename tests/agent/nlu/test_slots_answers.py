"""Yes/no and choice slots: words, negation, position, DTMF, read-back, grammar hints."""

import datetime

import pytest

from opusagent.agent.nlu.slots import Invalid, Parsed, SlotRules, expected_phrases, extract, spoken

TODAY = datetime.date(2026, 3, 1)
YES_NO = SlotRules("yes_no")
ACCOUNT = SlotRules(
    "choice",
    options={
        "checking": ["checking account", "checking", "current account"],
        "savings": ["savings account"],
        "credit_card": [],
    },
)


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("yes", True),
        ("yeah", True),
        ("yep that's right", True),
        ("uh huh", True),
        ("sure go ahead", True),
        ("no problem", True),
        ("no", False),
        ("nope", False),
        ("nah", False),
        ("not really", False),
        ("that's not right", False),
        ("that isn't correct", False),
        ("no, yes", True),
        ("yeah no", False),
    ],
)
def test_yes_and_no(text: str, value: bool) -> None:
    found = extract(YES_NO, text, today=TODAY)
    assert isinstance(found, Parsed)
    assert (found.value, found.spoken) == (value, "yes" if value else "no")


@pytest.mark.parametrize("text", ["i'm not sure", "i don't know", "maybe", "what was that"])
def test_unsure_or_unrelated_is_no_answer(text: str) -> None:
    assert extract(YES_NO, text, today=TODAY) is None


@pytest.mark.parametrize(("keys", "value"), [("1", True), ("2#", False)])
def test_keyed_yes_no(keys: str, value: bool) -> None:
    found = extract(YES_NO, "", keys, today=TODAY)
    assert isinstance(found, Parsed)
    assert found.value is value


def test_another_key_is_no_answer() -> None:
    assert extract(YES_NO, "", "5", today=TODAY) is None


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("checking", "checking"),
        ("my current account please", "checking"),
        ("the savings account", "savings"),
        ("credit card", "credit_card"),
        ("not savings, checking", "checking"),
        ("savings, no, checking", "checking"),
        ("the second one", "savings"),
        ("option three", "credit_card"),
        ("savins acount", "savings"),
    ],
)
def test_choices(text: str, value: str) -> None:
    found = extract(ACCOUNT, text, today=TODAY)
    assert isinstance(found, Parsed)
    assert found.value == value


def test_two_options_said_is_ambiguous() -> None:
    found = extract(ACCOUNT, "checking or savings", today=TODAY)
    assert found == Invalid("could be any of: checking, savings", "checking")


def test_a_position_past_the_options_is_invalid() -> None:
    assert extract(ACCOUNT, "", "4", today=TODAY) == Invalid("there are 3 options, not 4", "4")


def test_a_key_picks_the_option_at_its_position() -> None:
    found = extract(ACCOUNT, "", "2", today=TODAY)
    assert found == Parsed("savings", "savings account", "2")


def test_nothing_like_an_option_is_nothing() -> None:
    assert extract(ACCOUNT, "what's the weather", today=TODAY) is None


def test_an_option_reads_back_as_its_first_synonym_or_its_key() -> None:
    assert spoken(ACCOUNT, "checking") == "checking account"
    assert spoken(ACCOUNT, "credit_card") == "credit card"
    with pytest.raises(ValueError, match="not one of the options"):
        spoken(ACCOUNT, "pension")


def test_yes_no_read_back() -> None:
    assert (spoken(YES_NO, True), spoken(YES_NO, False)) == ("yes", "no")


def test_grammar_hints_are_the_options_and_their_synonyms() -> None:
    assert expected_phrases(ACCOUNT) == [
        "checking",
        "checking account",
        "current account",
        "savings",
        "savings account",
        "credit card",
    ]


def test_yes_no_grammar_hints_hold_both_answers() -> None:
    phrases = expected_phrases(YES_NO)
    assert {"yes", "yeah", "no", "nope"} <= set(phrases)
