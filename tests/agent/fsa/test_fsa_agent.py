"""The FSA as the Call's agent stage: reply parts, commits by generation, a call on a timeline."""

from __future__ import annotations

import asyncio
from typing import Any

from opusagent.agent.fsa.agent import FsaAgent
from opusagent.agent.fsa.loader import load_agent
from opusagent.call.events import AgentStatus, HangUp
from opusagent.call.stages import ExpectSpeech, ReplyPart, TurnKind, UserTurn
from opusagent.call.turn_policy import TurnPolicy
from opusagent.testing import ScriptedSTT, Timeline, Utterance, run_timeline

from .conftest import LoadText
from .conversation import EXAMPLES, controller_for

SLOW = """
name: slow
initial: ask
slots:
  code: {type: digits, length: 3}
states:
  ask:
    say: Code?
    collect: [code]
    transitions:
      - {to: check, when: {filled: code}, priority: 10}
      - {to: bye, when: {retries_exhausted: true}}
  check:
    on_enter: [{tool: slow_check, args: {code: "{{ slots.code }}"}}]
    transitions:
      - {to: bye, when: {}}
  bye: {say: Bye., final: true}
"""


async def parts(agent: FsaAgent, turn: UserTurn) -> list[ReplyPart]:
    return [part async for part in agent.respond(turn)]


async def test_reply_tells_state_then_listening_hint_then_speech() -> None:
    loaded = load_agent(EXAMPLES / "bank.yaml")
    agent = FsaAgent(controller_for(loaded), call_id="c1", knowledge=loaded.knowledge)
    await parts(agent, UserTurn(TurnKind.START, generation=1))

    reply = await parts(agent, UserTurn(TurnKind.SPEECH, "I lost my card", generation=2))

    status, hint, *speech = reply
    assert status == AgentStatus(
        "identify", {"slots": {}, "decision": "to identify", "turn": 2, "final": False}
    )
    assert isinstance(hint, ExpectSpeech) and hint.phrases is not None
    assert "<digits:4>" in hint.phrases
    assert speech == [
        "I can help with that. Please say or key in the last four digits of your card. "
    ]


async def test_a_superseded_turn_commits_nothing(load_text: LoadText) -> None:
    release = asyncio.Event()

    async def slow_check(code: str) -> dict[str, Any]:
        await release.wait()
        return {"ok": True}

    loaded = load_text(SLOW)
    loaded.tools.register(slow_check)
    agent = FsaAgent(controller_for(loaded), call_id="c2")
    await parts(agent, UserTurn(TurnKind.START, generation=1))

    slow = asyncio.create_task(parts(agent, UserTurn(TurnKind.DTMF, dtmf="123", generation=2)))
    await asyncio.sleep(0)
    newer = await parts(agent, UserTurn(TurnKind.NO_INPUT, generation=3))
    release.set()
    stale = await slow

    assert stale == []
    assert agent.state.state == "ask"
    assert agent.state.slots == {}
    assert [e.generation for e in agent.state.audit] == [1, 3]
    assert newer[-1] == "Code? "


def test_bank_agent_on_a_call_timeline() -> None:
    """Caller speech through the real Call (fake STT/TTS) walks the bank agent."""
    loaded = load_agent(EXAMPLES / "bank.yaml")
    agent = FsaAgent(controller_for(loaded), call_id="c3", knowledge=loaded.knowledge)
    timeline = (
        Timeline(duration=60)
        .say("I lost my card", at=12.0, seconds=1.0)
        .dtmf("4217#", at=22.0)
        .say("march third nineteen eighty", at=30.0, seconds=1.5)
        .say("yes", at=45.0, seconds=0.5)
    )
    stt = ScriptedSTT(
        [
            Utterance(12.0, 13.0, "I lost my card"),
            Utterance(30.0, 31.5, "march third nineteen eighty"),
            Utterance(45.0, 45.5, "yes"),
        ]
    )

    result = run_timeline(timeline, agent=agent, stt=stt, policy=TurnPolicy(no_input_timeout_ms=0))

    assert agent.state.path[-1] == "card_replaced"
    statuses = [s.state for _, s in result.of_type(AgentStatus)]
    assert statuses == ["welcome", "identify", "verify", "confirm_block", "card_replaced"]
    assert result.of_type(HangUp)
