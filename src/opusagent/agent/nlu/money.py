"""Amounts of money: "twenty five dollars fifty", "$25.50", "fifty cents", "10 eur".

The value is `{"amount": "25.50", "currency": "USD"}`: a decimal string with exactly the
currency's minor-unit digits and its ISO 4217 code. Without a currency word or symbol the
slot's default currency applies; "dollars", "bucks" and "$" mean that default when it is a
dollar currency, else USD. Two groups with a two-digit second one and no currency word are a
price ("twenty five fifty" -> 25.50, "one fifty" -> 1.50). On the keypad "*" is the decimal
point ("25*50").
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal, InvalidOperation

from opusagent.agent.nlu.numbers import NumberRun, cardinal_words, decimal_words, number_runs
from opusagent.agent.nlu.results import Invalid, JsonValue, Parsed
from opusagent.agent.nlu.text import tokens, word_set

# ISO 4217 minor units (List One, https://www.iso.org/iso-4217-currency-codes.html): the
# codes with 0 or 3 decimal places; every other code has 2.
_ZERO_DECIMALS = word_set("BIF CLP DJF GNF ISK JPY KMF KRW PYG RWF UGX UYI VND VUV XAF XOF XPF")
_THREE_DECIMALS = word_set("BHD IQD JOD KWD LYD OMR TND")
_COMMON = word_set("USD EUR GBP CAD AUD NZD CHF INR MXN SEK NOK DKK CNY HKD SGD ZAR BRL PLN")
KNOWN_CODES = _COMMON | _ZERO_DECIMALS | _THREE_DECIMALS
_DOLLARS = frozenset({"USD", "CAD", "AUD", "NZD", "HKD", "SGD"})

# Spoken names: (one, many, minor one, minor many).
_NAMES: dict[str, tuple[str, str, str, str]] = {
    **{code: ("dollar", "dollars", "cent", "cents") for code in _DOLLARS},
    "EUR": ("euro", "euros", "cent", "cents"),
    "GBP": ("pound", "pounds", "penny", "pence"),
    "JPY": ("yen", "yen", "", ""),
    "INR": ("rupee", "rupees", "paisa", "paise"),
    "CHF": ("franc", "francs", "centime", "centimes"),
    "MXN": ("peso", "pesos", "centavo", "centavos"),
}
_DOLLAR = "$"  # stands for the default currency when it is a dollar, else USD
_MAJOR_WORDS = {
    "dollar": _DOLLAR,
    "dollars": _DOLLAR,
    "buck": _DOLLAR,
    "bucks": _DOLLAR,
    "$": _DOLLAR,
    "pound": "GBP",
    "pounds": "GBP",
    "quid": "GBP",
    "£": "GBP",
    "euro": "EUR",
    "euros": "EUR",
    "€": "EUR",
    "yen": "JPY",
    "¥": "JPY",
    "rupee": "INR",
    "rupees": "INR",
    "franc": "CHF",
    "francs": "CHF",
    "peso": "MXN",
    "pesos": "MXN",
}
_MINOR_WORDS = {
    "cent": "",
    "cents": "",
    "penny": "GBP",
    "pennies": "GBP",
    "pence": "GBP",
    "paise": "INR",
    "centime": "CHF",
    "centimes": "CHF",
    "centavo": "MXN",
    "centavos": "MXN",
}
_SYMBOLS = frozenset({"$", "£", "€", "¥"})


def minor_digits(currency: str) -> int:
    """Decimal places of `currency` (ISO 4217)."""
    if currency in _ZERO_DECIMALS:
        return 0
    return 3 if currency in _THREE_DECIMALS else 2


def _currency(word: str, default: str) -> str | None:
    code = _MAJOR_WORDS.get(word)
    if code == _DOLLAR:
        return default if default in _DOLLARS else "USD"
    if code is not None:
        return code
    upper = word.upper()
    return upper if upper in KNOWN_CODES or upper == default else None


def speak_amount(amount: Decimal, currency: str) -> str:
    """ "twenty five dollars and fifty cents", "one pound", "fifty cents"."""
    names = _NAMES.get(currency)
    if names is None:
        return f"{decimal_words(amount)} {' '.join(currency)}"
    one, many, minor_one, minor_many = names
    whole = int(amount)
    minor = int((amount - whole).scaleb(minor_digits(currency)))
    parts = []
    if whole or not minor:
        parts.append(f"{cardinal_words(whole)} {one if whole == 1 else many}")
    if minor:
        parts.append(f"{cardinal_words(minor)} {minor_one if minor == 1 else minor_many}")
    return " and ".join(parts)


def _result(amount: Decimal, currency: str, text: str) -> Parsed | Invalid:
    places = minor_digits(currency)
    quantum = Decimal(1).scaleb(-places)
    rounded = amount.quantize(quantum)
    if rounded != amount:
        return Invalid(f"{amount} has more than {places} decimal places for {currency}", text)
    value: dict[str, JsonValue] = {"amount": f"{rounded:f}", "currency": currency}
    return Parsed(value, speak_amount(rounded, currency), text)


def _plain(run: NumberRun) -> Decimal:
    """A run with no currency word: a price when it reads like one ("twenty five fifty")."""
    if run.fraction is None and len(run.groups) == 2 and len(run.groups[1]) == 2:
        return Decimal(f"{run.groups[0]}.{run.groups[1]}")
    return run.value


def _span(words: Sequence[str], start: int, end: int) -> str:
    return " ".join(words[start:end])


def parse_amount(text: str, default: str) -> Parsed | Invalid | None:
    """The first amount in `text`, in `default` currency unless one is said."""
    words = tokens(text)
    runs = [r for r in number_runs(words) if not r.ordinal and not r.negative]
    single = _a_single_unit(words, default)
    for index, run in enumerate(runs):
        if single is not None and single[0] < run.start:
            break
        before = words[run.start - 1] if run.start > 0 else ""
        prefixed = before in _SYMBOLS or before.upper() in KNOWN_CODES
        start = run.start - prefixed
        prefix_currency = _currency(before, default) if prefixed else None
        after = words[run.end] if run.end < len(words) else ""
        if after in _MINOR_WORDS:  # "fifty cents"
            minor_currency = _MINOR_WORDS[after] or prefix_currency or default
            amount = run.value.scaleb(-minor_digits(minor_currency))
            return _result(amount, minor_currency, _span(words, start, run.end + 1))
        suffix_currency = _currency(after, default) if after else None
        currency = prefix_currency or suffix_currency
        if currency is None:
            return _result(_plain(run), default, _span(words, start, run.end))
        end = run.end + (suffix_currency is not None)
        amount = run.value
        minor = _minor_after(words, end, runs[index + 1 :]) if run.fraction is None else None
        if minor is not None:
            cents, end = minor
            if cents >= 10 ** minor_digits(currency):
                return Invalid(
                    f"{cents} is too many minor units of {currency}", _span(words, start, end)
                )
            amount += Decimal(cents).scaleb(-minor_digits(currency))
        return _result(amount, currency, _span(words, start, end))
    return None if single is None else single[1]


def _minor_after(
    words: Sequence[str], end: int, runs: Sequence[NumberRun]
) -> tuple[int, int] | None:
    """The cents after "... dollars": "and fifty cents", "fifty", "and fifty": (cents, end)."""
    start = end + (end < len(words) and words[end] == "and")
    following = next((r for r in runs if r.start == start), None)
    if following is None or following.fraction is not None:
        return None
    last = following.end + (following.end < len(words) and words[following.end] in _MINOR_WORDS)
    return int(following.digits), last


def _a_single_unit(words: Sequence[str], default: str) -> tuple[int, Parsed | Invalid] | None:
    """ "a dollar", "a buck fifty": no number before the currency word; (where, result)."""
    for i in range(len(words) - 1):
        currency = _currency(words[i + 1], default)
        if words[i] != "a" or currency is None:
            continue
        amount = Decimal(1)
        end = i + 2
        minor = _minor_after(words, end, number_runs(words))
        if minor is not None:
            cents, end = minor
            amount += Decimal(cents).scaleb(-minor_digits(currency))
        return i, _result(amount, currency, _span(words, i, end))
    return None


def parse_keyed_amount(keys: str, default: str) -> Parsed | Invalid | None:
    """DTMF: digits, "*" as the decimal point, "#" ends the entry."""
    entry = keys.rstrip("#").replace("*", ".")
    try:
        amount = Decimal(entry)
    except InvalidOperation:
        return None
    return _result(amount, default, keys)
