"""Numbers and amounts of money: speech, typing, DTMF, bounds and read-back."""

import datetime

import pytest

from opusagent.agent.nlu.slots import Invalid, Parsed, SlotRules, extract, spoken

TODAY = datetime.date(2026, 3, 1)
NUMBER = SlotRules("number")
AMOUNT = SlotRules("amount")


@pytest.mark.parametrize(
    ("text", "value", "said"),
    [
        ("twenty five", 25, "twenty five"),
        ("i need four tickets", 4, "four"),
        ("one hundred and five", 105, "one hundred five"),
        ("three point five", 3.5, "three point five"),
        ("minus twelve", -12, "minus twelve"),
        ("42", 42, "forty two"),
        ("four, no, five", 5, "five"),
    ],
)
def test_numbers(text: str, value: float, said: str) -> None:
    found = extract(NUMBER, text, today=TODAY)
    assert isinstance(found, Parsed)
    assert (found.value, type(found.value), found.spoken) == (value, type(value), said)


@pytest.mark.parametrize(("keys", "value"), [("42#", 42), ("2*5", 2.5)])
def test_keyed_numbers_with_star_as_the_decimal_point(keys: str, value: float) -> None:
    found = extract(NUMBER, "", keys, today=TODAY)
    assert isinstance(found, Parsed)
    assert found.value == value


@pytest.mark.parametrize(
    ("rules", "text", "reason"),
    [
        (SlotRules("number", minimum=1, maximum=10), "twenty", "20 is more than the maximum 10"),
        (SlotRules("number", minimum=1), "zero", "0 is less than the minimum 1"),
        (
            SlotRules("amount", maximum=100),
            "two hundred dollars",
            "200.00 is more than the maximum 100",
        ),
        (SlotRules("amount", minimum=0.5), "ten cents", "0.10 is less than the minimum 0.5"),
    ],
)
def test_out_of_bounds_is_invalid(rules: SlotRules, text: str, reason: str) -> None:
    found = extract(rules, text, today=TODAY)
    assert isinstance(found, Invalid)
    assert found.reason == reason


def test_no_number_is_nothing() -> None:
    assert extract(NUMBER, "i am not sure", today=TODAY) is None


@pytest.mark.parametrize(
    ("text", "amount", "currency"),
    [
        ("twenty five dollars fifty", "25.50", "USD"),
        ("twenty five dollars and fifty cents", "25.50", "USD"),
        ("twenty five fifty", "25.50", "USD"),
        ("one fifty", "1.50", "USD"),
        ("fifty cents", "0.50", "USD"),
        ("a dollar fifty", "1.50", "USD"),
        ("five bucks", "5.00", "USD"),
        ("two hundred dollars", "200.00", "USD"),
        ("$25.50", "25.50", "USD"),
        ("$25", "25.00", "USD"),
        ("25.50", "25.50", "USD"),
        ("1,234.56", "1234.56", "USD"),
        ("usd 25", "25.00", "USD"),
        ("ten euros", "10.00", "EUR"),
        ("10 eur", "10.00", "EUR"),
        ("two pounds fifty", "2.50", "GBP"),
        ("£3", "3.00", "GBP"),
        ("one thousand yen", "1000", "JPY"),
        ("twenty, no, thirty dollars", "30.00", "USD"),
    ],
)
def test_amounts(text: str, amount: str, currency: str) -> None:
    found = extract(AMOUNT, text, today=TODAY)
    assert isinstance(found, Parsed)
    assert found.value == {"amount": amount, "currency": currency}


def test_dollars_mean_the_slots_dollar_currency() -> None:
    found = extract(SlotRules("amount", currency="CAD"), "ten dollars", today=TODAY)
    assert isinstance(found, Parsed)
    assert found.value == {"amount": "10.00", "currency": "CAD"}


def test_a_bare_number_is_in_the_default_currency() -> None:
    found = extract(SlotRules("amount", currency="EUR"), "twelve", today=TODAY)
    assert isinstance(found, Parsed)
    assert found.value == {"amount": "12.00", "currency": "EUR"}


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("25.555", "25.555 has more than 2 decimal places for USD"),
        ("twenty dollars and a hundred cents", "100 is too many minor units of USD"),
    ],
)
def test_amounts_finer_than_the_currency_are_invalid(text: str, reason: str) -> None:
    found = extract(AMOUNT, text, today=TODAY)
    assert isinstance(found, Invalid)
    assert found.reason == reason


def test_a_keyed_amount_with_star_as_the_decimal_point() -> None:
    found = extract(AMOUNT, "", "25*50#", today=TODAY)
    assert found == Parsed(
        {"amount": "25.50", "currency": "USD"}, "twenty five dollars and fifty cents", "25*50#"
    )


@pytest.mark.parametrize(
    ("value", "said"),
    [
        ({"amount": "25.50", "currency": "USD"}, "twenty five dollars and fifty cents"),
        ({"amount": "1.00", "currency": "USD"}, "one dollar"),
        ({"amount": "0.01", "currency": "USD"}, "one cent"),
        ({"amount": "0.00", "currency": "USD"}, "zero dollars"),
        ({"amount": "2.50", "currency": "GBP"}, "two pounds and fifty pence"),
        ({"amount": "1000", "currency": "JPY"}, "one thousand yen"),
        ({"amount": "12.50", "currency": "SEK"}, "twelve point five zero S E K"),
    ],
)
def test_amounts_read_back(value: dict[str, str], said: str) -> None:
    assert spoken(AMOUNT, value) == said


def test_numbers_read_back() -> None:
    assert spoken(NUMBER, 2026) == "two thousand twenty six"
    assert spoken(NUMBER, 2.25) == "two point two five"
