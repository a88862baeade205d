"""Callers: scripted rules, a caller FSA, and a persona's habits changing what is done."""

from __future__ import annotations

from opusagent.agent.fsa.loader import load_agent
from opusagent.simulate.callers import FsaCaller, Move, ScriptedCaller, Styled
from opusagent.simulate.personas import Persona, Tendencies
from opusagent.simulate.scenarios import Rule

from .helpers import SCENARIOS

CALM = Persona(name="calm")
RULES = [
    Rule(when="how can i help", say="I lost my card.", short="Lost card."),
    Rule(when="digits|your card", say="{{ facts.card }}"),
    Rule(when="birth", say="{{ facts.birth }}"),
    Rule(when="go ahead", say="Yes."),
]
FACTS = {"card": "4217", "birth": "March third"}


def scripted(persona: Persona = CALM, **kwargs: object) -> ScriptedCaller:
    return ScriptedCaller(RULES, facts=FACTS, persona=persona, **kwargs)  # type: ignore[arg-type]


async def test_a_rule_answers_what_it_hears() -> None:
    caller = scripted()

    assert await caller.respond("For security, what is your date of birth?") == [
        Move("say", "March third", "heard /birth/ (rule 3)")
    ]


async def test_the_last_question_heard_is_answered() -> None:
    caller = scripted()

    [move] = await caller.respond("I will block your card. Shall I go ahead?")

    assert move.text == "Yes."


async def test_nothing_understood_answers_the_next_rule_not_used() -> None:
    caller = scripted()
    await caller.respond("how can I help you")

    [move] = await caller.respond("mumble mumble")

    assert move == Move("say", "4217", "nothing matched: next rule (2)")


async def test_other_fallbacks() -> None:
    repeat = scripted(otherwise="repeat")
    await repeat.respond("how can I help")
    hang_up = scripted(otherwise="hang_up")

    assert (await repeat.respond("what?"))[0].text == "I lost my card."
    assert (await hang_up.respond("what?"))[0].kind == "hang_up"


async def test_a_wrong_fact_comes_first_then_the_right_one() -> None:
    forgetful = Persona(name="forgetful", tendencies=Tendencies(wrong_info_first=True))
    caller = scripted(forgetful, wrong_facts={"card": "1111"})

    first = await caller.respond("the last four digits")
    second = await caller.respond("the last four digits")

    assert (first[0].text, second[0].text) == ("1111", "4217")


async def test_a_terse_persona_says_the_short_form() -> None:
    terse = Persona(name="terse", verbosity="terse")

    [move] = await scripted(terse).respond("how can I help")

    assert move.text == "Lost card."


async def test_a_keypad_persona_keys_digits_it_would_say() -> None:
    keypad = Persona(name="keypad", tendencies=Tendencies(digits="keyed"))
    caller = Styled(scripted(keypad), keypad)

    [move] = await caller.respond("the last four digits of your card")

    assert (move.kind, move.text) == ("keys", "4217#")


async def test_a_chatty_persona_wraps_its_answers() -> None:
    chatty = Persona(name="chatty", verbosity="chatty")
    caller = Styled(scripted(chatty), chatty)

    [move] = await caller.respond("go ahead?")

    assert move.text == "Oh, okay. Yes."


async def test_a_persona_goes_silent_after_its_answers() -> None:
    quiet = Persona(name="quiet", tendencies=Tendencies(goes_silent_after=1))
    caller = Styled(scripted(quiet), quiet)

    first = await caller.respond("how can I help")
    second = await caller.respond("the last four digits")

    assert [first[0].kind, second[0].kind] == ["say", "silent"]


async def test_a_caller_fsa_answers_from_its_states() -> None:
    loaded = load_agent(SCENARIOS / "bank" / "callers" / "lost_card_caller.yaml")
    caller = FsaCaller(loaded, {"card_last4": "4217", "birth_date": "March third"})

    opening = await caller.respond("Thank you for calling. How can I help you today?")
    card = await caller.respond("Please say or key in the last four digits of your card.")
    done = await caller.respond("Thank you for calling Opus Bank. Goodbye.")

    assert [m.text for m in opening + card] == ["Hello, I lost my card.", "4217"]
    assert [m.kind for m in done] == ["say", "hang_up"]
    assert caller.path == ["opening", "give_card", "done"]
