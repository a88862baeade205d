"""The streaming sentence and clause splitter."""

from __future__ import annotations

import random

import pytest

from opusagent.voice.tts.sentences import SentenceSplitter, SplitRules, split_text


def stream(text: str, sizes: list[int], rules: SplitRules | None = None) -> list[list[str]]:
    """Pieces returned by each push (deltas of the given sizes, cycled), then by the flush."""
    splitter = SentenceSplitter(rules)
    returned: list[list[str]] = []
    offset = 0
    k = 0
    while offset < len(text):
        size = sizes[k % len(sizes)]
        returned.append(splitter.push(text[offset : offset + size]))
        offset += size
        k += 1
    returned.append(splitter.flush())
    return returned


@pytest.mark.parametrize(
    ("text", "pieces"),
    [
        ("Hello there. How are you?", ["Hello there.", "How are you?"]),
        ("Stop! Wait? Go.", ["Stop!", "Wait?", "Go."]),
        ("It ends here.", ["It ends here."]),
        ("Dr. Smith will call you.", ["Dr. Smith will call you."]),
        ("Mr. and Mrs. Jones are here. Bye.", ["Mr. and Mrs. Jones are here.", "Bye."]),
        ("Bring ID, e.g. a passport. Thanks.", ["Bring ID, e.g. a passport.", "Thanks."]),
        ("Use i.e. this one. Ok.", ["Use i.e. this one.", "Ok."]),
        ("It is 3.5 miles away. Drive safely.", ["It is 3.5 miles away.", "Drive safely."]),
        ("You owe $1,000.50 today. Pay now.", ["You owe $1,000.50 today.", "Pay now."]),
        ("Ask J. R. Smith. He knows.", ["Ask J. R. Smith.", "He knows."]),
        ("It is approx. five miles. Okay.", ["It is approx. five miles.", "Okay."]),
        ('He said "yes." Then he left.', ['He said "yes."', "Then he left."]),
        ("Really?! Yes.", ["Really?!", "Yes."]),
        ("Well... I see.", ["Well...", "I see."]),
        ("Open the app\nTap settings", ["Open the app", "Tap settings"]),
        ("1. Open the app.\n2. Tap settings.", ["1. Open the app.", "2. Tap settings."]),
        ("We open at 9 a.m. every day.", ["We open at 9 a.m. every day."]),
    ],
)
def test_sentence_boundaries(text: str, pieces: list[str]) -> None:
    assert split_text(text) == pieces


def test_a_sentence_is_released_as_soon_as_its_end_is_certain() -> None:
    splitter = SentenceSplitter()
    assert splitter.push("Hello there.") == []  # "3." or "Dr." could still turn out otherwise
    assert splitter.push(" ") == []  # "approx. five" would continue the sentence
    assert splitter.push("H") == ["Hello there."]
    assert splitter.push("ow are you? ") == ["How are you?"]  # ? and a space are enough
    assert splitter.flush() == []


def test_a_decimal_split_across_deltas_is_not_a_boundary() -> None:
    splitter = SentenceSplitter()
    assert splitter.push("That is 3.") == []
    assert splitter.push("5 percent. N") == ["That is 3.5 percent."]
    assert splitter.flush() == ["N"]


def test_deltas_split_mid_word_give_the_same_pieces() -> None:
    text = (
        "Thank you for calling Acme Bank, how can I help you today? Dr. Lee can see you at "
        "3.30 p.m. on Jan. 5, e.g. next week. That costs $1,000.50 - or less. Anything else?\n"
        "1. Yes\n2. No"
    )
    whole = split_text(text)
    rng = random.Random(7)
    for _ in range(200):
        sizes = [rng.randint(1, 6) for _ in range(rng.randint(1, 5))]
        assert [p for ps in stream(text, sizes) for p in ps] == whole


def test_pieces_come_out_early_while_streaming() -> None:
    returned = stream("One two three. Four five six. Seven", [1])
    pushes = [ps for ps in returned if ps]
    assert pushes == [["One two three."], ["Four five six."], ["Seven"]]
    assert returned[-1] == ["Seven"]  # the unterminated rest waits for the flush


def test_a_long_first_sentence_is_cut_at_a_clause() -> None:
    assert split_text("Thank you for calling Acme Bank, how can I help you today?") == [
        "Thank you for calling Acme Bank,",
        "how can I help you today?",
    ]


def test_a_short_first_clause_is_not_cut() -> None:
    assert split_text("Hello, how can I help you today?") == ["Hello, how can I help you today?"]


@pytest.mark.parametrize("mark", [";", ":", " -", " \u2013", "\u2014"])
def test_clause_marks(mark: str) -> None:
    text = f"I have checked your account today{mark} it looks fine."
    assert split_text(text) == [f"I have checked your account today{mark}", "it looks fine."]


def test_hyphens_and_thousands_are_not_clause_marks() -> None:
    text = "Our well-known team handled 1,000,000 calls from happy customers last year."
    assert split_text(text) == [text]


def test_later_sentences_are_cut_only_when_long() -> None:
    rules = SplitRules(first_clause_words=3, clause_words=6)
    text = "Yes, of course, here it is. Sure, fine. One two three four five six, seven eight."
    assert split_text(text, rules) == [
        "Yes, of course,",
        "here it is.",
        "Sure, fine.",
        "One two three four five six,",
        "seven eight.",
    ]


def test_flush_speaks_the_rest_with_whitespace_normalised() -> None:
    splitter = SentenceSplitter()
    assert splitter.push("  Hello\tthere  my ") == []
    assert splitter.flush() == ["Hello there my"]
    assert splitter.flush() == []


def test_nothing_speakable_is_dropped() -> None:
    assert split_text("... -- !") == []
    assert split_text("") == []
    assert split_text("Okay. ... Bye.") == ["Okay.", "Bye."]


def test_rules_are_validated() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        SplitRules(first_clause_words=0)
