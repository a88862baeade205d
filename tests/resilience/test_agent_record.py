"""A turn the Finite State Agent failed to decide (its model raised, or the call stopped waiting)
is still on the record: the conversation so far, and an audit entry saying so; the state stays
where it was."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path

import pytest

from opusagent.agent.fsa.agent import FsaAgent
from opusagent.agent.fsa.catalog import AgentCatalog
from opusagent.agent.fsa.controller import Proposal, TurnInput, Understanding
from opusagent.agent.fsa.spec import AgentSpec
from opusagent.agent.fsa.state import AgentState
from opusagent.call.stages import HistoryEntry, Speaker, TurnKind, UserTurn

from .faults import hang

BANK = Path(__file__).parents[2] / "examples" / "agents" / "bank.yaml"
HEARD = (
    HistoryEntry(Speaker.AGENT, "Thank you for calling Opus Bank."),
    HistoryEntry(Speaker.CALLER, "I lost my card"),
)


class BrokenModel:
    """A proposer whose model raises, or never answers."""

    def __init__(self, hangs: bool) -> None:
        self._hangs = hangs

    async def propose(
        self, spec: AgentSpec, state: AgentState, turn: TurnInput, understanding: Understanding
    ) -> Proposal | None:
        if self._hangs:
            await hang()
        raise RuntimeError("the model server is on fire")


async def started_agent(hangs: bool) -> FsaAgent:
    controller = AgentCatalog.load([BANK]).entry().controller
    agent = FsaAgent(dataclasses.replace(controller, proposer=BrokenModel(hangs)), call_id="CA1")
    async for _ in agent.respond(UserTurn(TurnKind.START, generation=1)):
        pass
    return agent


async def say(agent: FsaAgent, text: str) -> None:
    async for _ in agent.respond(UserTurn(TurnKind.SPEECH, text, history=HEARD, generation=2)):
        pass


async def test_a_turn_whose_model_raised_is_audited_and_the_state_stays() -> None:
    agent = await started_agent(hangs=False)

    with pytest.raises(RuntimeError):
        await say(agent, "I lost my card")

    last = agent.state.audit[-1]
    assert (last.kind, last.text) == ("speech", "I lost my card")
    assert last.decision == "failed (RuntimeError('the model server is on fire'))"
    assert agent.state.state == last.state_before == last.state_after == "welcome"
    assert [line.text for line in agent.state.history] == [e.text for e in HEARD]


async def test_a_turn_the_call_gave_up_on_is_audited_as_abandoned() -> None:
    agent = await started_agent(hangs=True)

    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.2):
            await say(agent, "I lost my card")

    assert agent.state.audit[-1].decision == "abandoned (no decision in time)"
    assert agent.state.state == "welcome"
    assert agent.state.history[-1].text == "I lost my card"
