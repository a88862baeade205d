"""Every example agent lints clean and completes its happy path and its escalation path."""

from __future__ import annotations

from pathlib import Path

import pytest

from opusagent.agent.fsa.catalog import agent_files
from opusagent.agent.fsa.lint import lint
from opusagent.agent.fsa.loader import load_agent
from opusagent.call.events import HangUp, Transfer

from .conversation import EXAMPLES, Conversation, controller_for

EXAMPLE_FILES = agent_files([EXAMPLES])


def chat(file_name: str, context: dict[str, str] | None = None) -> Conversation:
    agent = load_agent(EXAMPLES / file_name)
    conversation = Conversation(controller_for(agent), agent)
    if context:
        conversation.state.context.update(context)
    return conversation


def test_there_are_four_example_agents() -> None:
    assert sorted(p.name for p in EXAMPLE_FILES) == [
        "appointment_reminder.yaml",
        "bank.yaml",
        "clinic_triage.yaml",
        "insurance_fnol.yaml",
    ]


@pytest.mark.parametrize("path", EXAMPLE_FILES, ids=lambda p: p.stem)
def test_example_lints_clean(path: Path) -> None:
    findings = lint(load_agent(path))

    assert [f.format(path.name) for f in findings] == []


# --- bank card replacement -----------------------------------------------------------------


async def test_bank_happy_path_blocks_and_replaces_the_card() -> None:
    bank = chat("bank.yaml")
    await bank.start()

    await bank.say("hi I lost my card")
    await bank.say("four two one seven")
    await bank.say("march third nineteen eighty")
    done = await bank.say("yes please")

    assert bank.state.path == [
        "welcome",
        "identify",
        "lookup_account",
        "verify",
        "check_identity",
        "confirm_block",
        "card_replaced",
    ]
    assert bank.state.tools["blocked"]["blocked"] is True
    assert isinstance(done.reply[-1], HangUp)
    assert "5 working days" in done.speech


async def test_bank_card_digits_by_dtmf() -> None:
    bank = chat("bank.yaml")
    await bank.start()
    await bank.say("my card was stolen")

    outcome = await bank.key("4217")

    assert bank.state.state == "verify"
    assert outcome.speech.startswith("Thanks. For security")


async def test_bank_asks_for_a_human_from_any_state() -> None:
    bank = chat("bank.yaml")
    await bank.start()
    await bank.say("I lost my card")

    outcome = await bank.say("can I speak to a person")

    assert bank.state.state == "handoff"
    assert outcome.reply[-1] == Transfer("+15550100", "card replacement help")


async def test_bank_three_wrong_birth_dates_hand_off() -> None:
    bank = chat("bank.yaml")
    await bank.start()
    await bank.say("I lost my card")
    await bank.say("four two one seven")

    for _ in range(3):
        outcome = await bank.say("january first two thousand")

    assert bank.state.state == "handoff"
    assert "couldn't verify your identity" in outcome.speech
    assert bank.state.path.count("verify") == 3


async def test_bank_answers_a_question_from_its_knowledge_base() -> None:
    bank = chat("bank.yaml")
    await bank.start()

    outcome = await bank.say("is there a fee for a replacement")

    assert "free of charge" in outcome.speech
    assert bank.state.state == "welcome"


async def test_bank_silent_caller_is_handed_off_after_retries() -> None:
    bank = chat("bank.yaml")
    await bank.start()

    for _ in range(3):
        outcome = await bank.silence()

    assert bank.state.state == "handoff"
    assert isinstance(outcome.reply[-1], Transfer)


# --- clinic triage -------------------------------------------------------------------------


async def test_clinic_books_an_appointment() -> None:
    clinic = chat("clinic_triage.yaml")
    await clinic.start()

    await clinic.say("I have a high temperature")
    await clinic.say("thursday")
    booked = await clinic.say("yes")

    assert clinic.state.state == "booked"
    assert "8:45 AM" in booked.speech
    assert "THU 845AM" in booked.speech


async def test_clinic_fully_booked_day_asks_again() -> None:
    clinic = chat("clinic_triage.yaml")
    await clinic.start()
    await clinic.say("a cough")

    outcome = await clinic.say("tuesday")

    assert clinic.state.state == "pick_day"
    assert "fully booked" in outcome.speech


async def test_clinic_emergency_from_any_state_transfers() -> None:
    clinic = chat("clinic_triage.yaml")
    await clinic.start()

    outcome = await clinic.say("my father has chest pain")

    assert clinic.state.state == "emergency"
    assert outcome.reply[-1] == Transfer("+15550911", "emergency triage")


# --- insurance first notice of loss --------------------------------------------------------


async def test_insurance_opens_a_claim() -> None:
    claims = chat("insurance_fnol.yaml")
    await claims.start()

    keyed = await claims.key("12345678")
    await claims.say("it was a car accident")
    await claims.say("yesterday")
    await claims.say("no")
    opened = await claims.say("someone reversed into my car in a car park")

    assert keyed.reply[0] == "Policy number one two three four, five six seven eight."
    assert claims.state.state == "claim_opened"
    assert claims.state.slots["loss_date"] == "2026-11-20"
    assert claims.state.tools["claim"]["number"] in opened.speech


async def test_insurance_injury_goes_to_an_adjuster() -> None:
    claims = chat("insurance_fnol.yaml")
    await claims.start()
    await claims.key("12345678")
    await claims.say("my house")
    await claims.say("november the tenth")

    outcome = await claims.say("yes someone was hurt")

    assert claims.state.state == "adjuster"
    assert isinstance(outcome.reply[-1], Transfer)


# --- outbound appointment reminder ---------------------------------------------------------

APPOINTMENT = {"patient": "Alex", "day": "Monday", "time": "9:30 AM", "appointment_id": "A-1"}


async def test_reminder_confirms_the_appointment() -> None:
    reminder = chat("appointment_reminder.yaml", APPOINTMENT)
    opening = await reminder.start()
    await reminder.say("yes speaking")

    done = await reminder.say("yes I will be there")

    assert "calling for Alex" in opening.speech
    assert reminder.state.state == "confirmed"
    assert reminder.state.tools["record"] == {
        "recorded": True,
        "answer": "confirmed",
        "appointment": "A-1",
    }
    assert isinstance(done.reply[-1], HangUp)


async def test_reminder_reschedule_goes_to_reception() -> None:
    reminder = chat("appointment_reminder.yaml", APPOINTMENT)
    await reminder.start()
    await reminder.say("yes")
    await reminder.say("no I can't make it")

    outcome = await reminder.say("reschedule it please")

    assert reminder.state.state == "reception"
    assert isinstance(outcome.reply[-1], Transfer)


async def test_reminder_leaves_a_voicemail() -> None:
    reminder = chat("appointment_reminder.yaml", APPOINTMENT)
    await reminder.start()

    outcome = await reminder.say("please leave your message after the tone")

    assert reminder.state.state == "voicemail"
    assert "call us back" in outcome.speech
