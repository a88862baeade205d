"""The controller: event sequences in, path, reply and audit out; no LLM involved."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

from opusagent.agent.fsa.controller import Proposal, TurnInput, Understanding
from opusagent.agent.fsa.spec import AgentSpec
from opusagent.agent.fsa.state import AgentState
from opusagent.agent.tools import tool
from opusagent.call.events import HangUp, Transfer
from opusagent.call.stages import TurnKind

from .conftest import LoadText
from .conversation import Conversation, controller_for

PIZZA = """
name: pizza
initial: size
greeting: Welcome to Pizza Line.
max_retries: 1
slots:
  size: {type: choice, options: {small: [little], large: [big, huge]}}
  count: {type: number, minimum: 1, maximum: 5, prompt: "How many pizzas?"}
  confirm: {type: yes_no}
intents:
  human: {examples: [agent, talk to a person, human]}
  menu: {examples: [what is on the menu, read me the menu]}
  repeat: {examples: [say that again, repeat that]}
global_transitions:
  - {to: operator, when: {intent: human}, priority: 100}
states:
  size:
    say: What size would you like, small or large?
    collect: [size, count]
    no_input_say: Are you there? Small or large?
    transitions:
      - {to: confirm, when: {filled: [size, count]}, priority: 10}
      - {to: menu, when: {intent: menu}, priority: 5}
      - {to: operator, when: {retries_exhausted: true}, priority: 1}
  menu:
    say: We have margherita.
    transitions:
      - {to: size, when: {}}
  confirm:
    say: "{{ slots.count }} {{ slots.size }} pizza, right?"
    collect: [confirm]
    transitions:
      - to: done
        when: {expr: "slots.confirm == true"}
        priority: 10
      - to: size
        when: {expr: "slots.confirm == false"}
        clear: [size, count, confirm]
        say: Let's start again.
        priority: 5
      - {to: operator, when: {retries_exhausted: true}, priority: 1}
  done: {say: "Thanks, it is on its way.", final: true}
  operator:
    say: Connecting you.
    on_enter: [{tool: transfer, args: {target: "+15550199"}}]
    final: true
"""


@pytest.fixture
def pizza(load_text: LoadText) -> Conversation:
    return Conversation(controller_for(load_text(PIZZA)))


async def test_start_greets_and_enters_the_initial_state(pizza: Conversation) -> None:
    outcome = await pizza.start()

    assert outcome.reply == ["Welcome to Pizza Line.", "What size would you like, small or large?"]
    assert outcome.state.path == ["size"]
    assert outcome.audit.decision == "start in size"


async def test_slots_from_one_utterance_fire_the_transition(pizza: Conversation) -> None:
    await pizza.start()

    outcome = await pizza.say("two large please")

    assert pizza.state.slots == {"size": "large", "count": 2}
    assert pizza.state.state == "confirm"
    assert outcome.speech == "2 large pizza, right?"
    held = [check.to for check in outcome.audit.checks if check.held]
    assert held == ["confirm"]


async def test_a_slot_at_a_time_asks_for_the_missing_one(pizza: Conversation) -> None:
    await pizza.start()

    outcome = await pizza.say("large please")

    assert pizza.state.state == "size"
    assert pizza.state.slots == {"size": "large"}
    assert outcome.speech == "How many pizzas?"
    assert outcome.audit.decision == "stay (ask for count)"


async def test_every_condition_is_in_the_audit(pizza: Conversation) -> None:
    await pizza.start()

    outcome = await pizza.say("what is on the menu")

    checks = {check.to: check for check in outcome.audit.checks}
    assert checks["menu"].held
    assert [c.condition for c in checks["confirm"].conditions] == ["filled size", "filled count"]
    assert not checks["confirm"].held
    assert outcome.audit.intent == "menu"
    assert outcome.audit.decision == "to menu, then to size"


async def test_a_state_without_input_moves_on_in_the_same_turn(pizza: Conversation) -> None:
    await pizza.start()

    outcome = await pizza.say("read me the menu")

    assert outcome.reply == ["We have margherita.", "What size would you like, small or large?"]
    assert pizza.state.path == ["size", "menu", "size"]


async def test_turns_that_get_nowhere_reprompt_then_exhaust_retries(pizza: Conversation) -> None:
    await pizza.start()

    first = await pizza.say("the weather is nice")
    second = await pizza.say("blue")

    assert first.audit.decision == "stay (reprompt)"
    assert first.speech == "How many pizzas?" or first.speech.startswith("What size")
    assert pizza.state.state == "operator"
    assert second.reply[-1] == Transfer("+15550199", "")


async def test_no_input_says_the_no_input_prompt(pizza: Conversation) -> None:
    await pizza.start()

    outcome = await pizza.silence()

    assert outcome.speech == "Are you there? Small or large?"
    assert outcome.audit.decision == "stay (no input)"
    assert pizza.state.no_inputs == 1


async def test_global_intent_applies_in_every_state(pizza: Conversation) -> None:
    await pizza.start()
    await pizza.say("two large")

    outcome = await pizza.say("can I talk to a person")

    assert pizza.state.state == "operator"
    assert outcome.reply == ["Connecting you.", Transfer("+15550199", "")]


async def test_transfer_ends_without_a_hang_up_and_final_states_hang_up(
    pizza: Conversation,
) -> None:
    await pizza.start()
    await pizza.say("one small")

    outcome = await pizza.say("yes")

    assert outcome.reply == ["Thanks, it is on its way.", HangUp("final state done")]
    assert pizza.state.ended


async def test_edge_clears_slots_and_speaks_before_the_next_state(pizza: Conversation) -> None:
    await pizza.start()
    await pizza.say("one small")

    outcome = await pizza.say("no")

    assert pizza.state.state == "size"
    assert pizza.state.slots == {}
    assert outcome.reply[0] == "Let's start again."
    assert outcome.audit.slot_changes["size"] is None


async def test_repeat_says_the_last_reply_again(pizza: Conversation) -> None:
    await pizza.start()
    first = await pizza.say("large please")

    outcome = await pizza.say("say that again")

    assert outcome.speech == first.speech
    assert outcome.audit.decision == "stay (repeat)"


async def test_same_events_give_the_same_path_and_audit(load_text: LoadText) -> None:
    agent = load_text(PIZZA)
    runs = []
    for _ in range(2):
        chat = Conversation(controller_for(agent))
        await chat.start()
        for text in ("what is on the menu", "large please", "three", "yes"):
            await chat.say(text)
        runs.append([e.model_dump(exclude={"timings_ms"}) for e in chat.state.audit])
    assert runs[0] == runs[1]


async def test_state_survives_a_json_round_trip(pizza: Conversation) -> None:
    await pizza.start()
    await pizza.say("large please")

    restored = AgentState.model_validate_json(pizza.state.model_dump_json())
    resumed = Conversation(pizza.controller)
    resumed.state = restored
    outcome = await resumed.say("two")

    assert outcome.state.state == "confirm"
    assert outcome.state.slots == {"size": "large", "count": 2}


async def test_decide_never_changes_the_state_it_is_given(pizza: Conversation) -> None:
    await pizza.start()
    before = pizza.state.model_dump_json()

    await pizza.controller.decide(pizza.state, TurnInput(TurnKind.SPEECH, "two large"))

    assert pizza.state.model_dump_json() == before


# --- proposals -----------------------------------------------------------------------------


class Scripted:
    """A proposer that proposes what it is told, recording what it saw."""

    def __init__(self, proposal: Proposal) -> None:
        self.proposal = proposal
        self.seen: list[Understanding] = []

    async def propose(
        self, spec: AgentSpec, state: AgentState, turn: TurnInput, understanding: Understanding
    ) -> Proposal | None:
        self.seen.append(understanding)
        return self.proposal


async def test_proposal_refused_when_its_conditions_fail(load_text: LoadText) -> None:
    proposer = Scripted(Proposal(to="confirm", reason="the caller sounds ready"))
    chat = Conversation(controller_for(load_text(PIZZA), proposer))
    await chat.start()

    outcome = await chat.say("hmm let me think")

    record = outcome.audit.proposal
    assert record is not None and not record.accepted
    assert record.refusal == "the conditions of every transition to confirm failed"
    assert record.reason == "the caller sounds ready"
    assert chat.state.state == "size"


async def test_proposal_to_an_unconnected_state_is_refused(load_text: LoadText) -> None:
    chat = Conversation(controller_for(load_text(PIZZA), Scripted(Proposal(to="done"))))
    await chat.start()

    outcome = await chat.say("two large")

    assert outcome.audit.proposal is not None
    assert outcome.audit.proposal.refusal == "no transition from size to done"
    assert chat.state.state == "confirm"  # the rules still decided


async def test_proposal_chooses_among_transitions_that_hold(load_text: LoadText) -> None:
    chat = Conversation(controller_for(load_text(PIZZA), Scripted(Proposal(to="menu"))))
    await chat.start()

    outcome = await chat.say("two large and what is on the menu")

    assert outcome.audit.proposal is not None and outcome.audit.proposal.accepted
    assert chat.state.path[:2] == ["size", "menu"]


async def test_proposed_slot_values_pass_the_slot_validator(load_text: LoadText) -> None:
    proposal = Proposal(slots={"count": "nine", "size": "huge"}, reason="caller said so")
    chat = Conversation(controller_for(load_text(PIZZA), Scripted(proposal)))
    await chat.start()

    outcome = await chat.say("something unclear")

    assert chat.state.slots == {"size": "large"}
    assert outcome.audit.proposal is not None
    assert "count" in outcome.audit.proposal.refused_slots


# --- tools ---------------------------------------------------------------------------------

TOOLS = """
name: tools
initial: ask
slots:
  code: {type: digits, length: 3}
states:
  ask:
    say: Code?
    collect: [code]
    transitions:
      - to: check
        when: {filled: code}
        priority: 10
      - {to: bye, when: {retries_exhausted: true}}
  check:
    on_enter: [{tool: check_code, args: {code: "{{ slots.code }}"}, save_as: result}]
    transitions:
      - {to: ok, when: {expr: tools.result.valid}, priority: 10}
      - {to: broken, when: {event: tool_failed}, priority: 5}
      - {to: bye, when: {}}
  ok: {say: "Valid, {{ tools.result.owner }}.", final: true}
  broken: {say: Our system is down., final: true}
  bye: {say: Bye., final: true}
"""


async def test_tool_result_feeds_conditions_and_templates(load_text: LoadText) -> None:
    seen: list[Mapping[str, Any]] = []

    @tool
    async def check_code(code: str) -> dict[str, Any]:
        seen.append({"code": code})
        return {"valid": code == "123", "owner": "Alex"}

    agent = load_text(TOOLS)
    agent.tools.register(check_code)
    chat = Conversation(controller_for(agent))
    await chat.start()

    outcome = await chat.key("123")

    assert seen == [{"code": "123"}]
    assert chat.state.state == "ok"
    assert outcome.reply[0] == "Valid, Alex."
    (call,) = outcome.audit.tool_calls
    assert (call.name, call.args, call.result) == (
        "check_code",
        {"code": "123"},
        {"valid": True, "owner": "Alex"},
    )


async def test_tool_failure_is_an_event(load_text: LoadText) -> None:
    async def check_code(code: str) -> dict[str, Any]:
        raise ConnectionError("database unreachable")

    agent = load_text(TOOLS)
    agent.tools.register(check_code)
    chat = Conversation(controller_for(agent))
    await chat.start()

    outcome = await chat.key("123")

    assert chat.state.state == "broken"
    assert "database unreachable" in outcome.audit.tool_calls[0].error


async def test_hangup_turn_records_the_end(pizza: Conversation) -> None:
    await pizza.start()

    outcome = await pizza.turn(TurnKind.HANGUP)

    assert outcome.reply == []
    assert pizza.state.ended
    assert outcome.audit.decision == "end (caller hung up)"


async def test_a_lost_connection_pauses_instead_of_ending(pizza: Conversation) -> None:
    await pizza.start()

    outcome = await pizza.controller.decide(
        pizza.state, TurnInput(TurnKind.HANGUP, "socket_closed", event="dropped")
    )

    assert not outcome.state.ended
    assert outcome.audit.decision == "paused (connection lost; may resume)"


async def test_start_of_a_started_conversation_resumes_without_the_greeting(
    pizza: Conversation,
) -> None:
    await pizza.start()
    await pizza.say("large please")

    outcome = await pizza.start()

    assert outcome.reply == [
        "Sorry, we got cut off. Let's carry on.",
        "What size would you like, small or large?",
    ]
    assert outcome.audit.decision == "resume in size"
    assert pizza.state.slots == {"size": "large"}
