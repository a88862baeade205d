"""The LLM's roles in an FSA against the real llama.cpp server: proposals parsed from a
structured tool call, replies phrased token by token (the say when the model fails), and a
barge-in stopping the reply's stream."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from opusagent.agent.fsa.agent import FsaAgent
from opusagent.agent.fsa.catalog import build_controller
from opusagent.agent.fsa.controller import Controller, TurnInput, Understanding
from opusagent.agent.fsa.loader import LoadedAgent
from opusagent.agent.llm.endpoint import LLM, llm_from_settings
from opusagent.agent.llm.proposer import next_states, proposal_tool
from opusagent.call.stages import ReplyPart, TurnKind, UserTurn

from ..fsa.conftest import LoadText
from .conftest import llama_settings
from .llama_server import MODEL
from .scripted_server import Answer, scripted

pytestmark = pytest.mark.slow

SHOP = """
name: shop
description: Take a pizza order.
initial: ask
llm: {model: default, timeout_s: 60, max_tokens: 40}
slots:
  size: {type: choice, options: {small: [small], large: [large, big]}}
intents:
  order: {examples: [I want a pizza, a pizza please]}
states:
  ask:
    say: Hello! What size of pizza would you like?
    instruction: Greet the caller and ask what size of pizza they want.
    scratchpad: Note what the caller wants.
    collect: [size]
    transitions:
      - {to: done, when: {filled: size}, description: the caller chose a size}
  done:
    say: Thank you, your pizza is on its way.
    final: true
"""


def agent_with(llm: LLM, loaded: LoadedAgent) -> tuple[Controller, FsaAgent]:
    controller = build_controller(loaded, proposer=llm.proposer)
    return controller, FsaAgent(controller, call_id="test", phraser=llm.phraser)


async def collect(parts: AsyncIterator[ReplyPart]) -> list[str]:
    return [part async for part in parts if isinstance(part, str)]


def test_the_proposal_tool_offers_exactly_the_state_s_choices(load_text: LoadText) -> None:
    spec = load_text(SHOP).spec
    schema = proposal_tool(spec, "ask", open_targets=["done"]).parameters

    assert list(schema["properties"]) == ["scratchpad", "to", "slots", "reason"]
    assert schema["properties"]["to"]["enum"] == ["done"]
    assert list(schema["properties"]["slots"]["properties"]) == ["size"]
    assert next_states(spec, "ask") == {"done": "the caller chose a size"}


async def test_a_proposal_is_parsed_from_the_model_s_tool_call(
    llama_llm: LLM, load_text: LoadText
) -> None:
    spec = load_text(SHOP).spec
    controller = build_controller(load_text(SHOP))
    state = controller.new_state()
    state.started = True
    turn = TurnInput(TurnKind.SPEECH, "a big one please")
    understanding = Understanding(None, None, {}, {}, {})

    proposal = await llama_llm.proposer.propose(spec, state, turn, understanding)

    assert proposal is not None
    (call,) = proposal.calls
    assert call.error == ""
    assert (call.role, call.model, call.endpoint_model) == ("propose", "default", MODEL)
    assert proposal.to in ("done", None)
    assert set(proposal.slots) <= {"size"}
    assert call.ttft_ms is not None and 0 < call.ttft_ms <= call.total_ms
    assert call.completion_tokens is None or call.completion_tokens > 0


async def test_the_controller_audits_the_proposal_and_its_fate(
    llama_llm: LLM, load_text: LoadText
) -> None:
    _controller, agent = agent_with(llama_llm, load_text(SHOP))
    await collect(agent.respond(UserTurn(TurnKind.START)))
    await collect(agent.respond(UserTurn(TurnKind.SPEECH, "a large pizza", generation=1)))

    entry = agent.state.audit[-1]
    assert [c.role for c in entry.llm][:1] == ["propose"]
    assert entry.timings_ms["proposal"] > 0
    assert entry.decision == "to done"
    assert entry.proposal is not None  # "large" fills the slot: done is the one move open
    assert (entry.proposal.to, entry.proposal.accepted) == ("done", True)
    if entry.scratchpad:  # logged, never spoken
        assert agent.state.scratchpad[-1] == f"[ask] {entry.scratchpad}"
        assert entry.scratchpad not in entry.said


async def test_a_phrased_reply_streams_token_by_token(llama_llm: LLM, load_text: LoadText) -> None:
    _, agent = agent_with(llama_llm, load_text(SHOP))
    pieces = await collect(agent.respond(UserTurn(TurnKind.START)))

    record = agent.state.audit[0].llm[-1]
    assert record.role == "phrase"
    assert record.outcome == "phrased"
    assert len(pieces) > 3
    assert "".join(pieces).strip() == record.text.strip()
    assert record.ttft_ms is not None and record.ttft_ms < record.total_ms


async def test_a_barge_in_stops_the_reply_s_stream_at_once(
    llama_url: str, load_text: LoadText
) -> None:
    llm = llm_from_settings(llama_settings(llama_url))
    assert llm is not None
    long_reply = SHOP.replace("max_tokens: 40", "max_tokens: 400")
    _, agent = agent_with(llm, load_text(long_reply))
    greeting = agent.respond(UserTurn(TurnKind.START, generation=1))
    async for part in greeting:
        if isinstance(part, str):
            break  # the first token is out: the caller starts talking
    cut_at = time.perf_counter()
    newer = asyncio.create_task(collect(agent.respond(UserTurn(TurnKind.NO_INPUT, generation=2))))
    rest = await asyncio.wait_for(collect(greeting), 2)
    stopped_after = time.perf_counter() - cut_at
    await asyncio.wait_for(newer, 60)
    await llm.aclose()

    record = agent.state.audit[0].llm[-1]
    assert record.outcome == "cancelled"
    assert stopped_after < 1.0
    assert len(rest) < 50


def slow(body: Any, index: int) -> Answer:
    return Answer(text="Too late.", delay_s=2)


async def test_a_model_too_slow_to_start_leaves_the_say_spoken(load_text: LoadText) -> None:
    async with scripted(slow) as (_server, url):
        llm = llm_from_settings(llama_settings(url, llm_max_retries=0))
        assert llm is not None
        quick = SHOP.replace("timeout_s: 60", "timeout_s: 0.3")
        _, agent = agent_with(llm, load_text(quick))
        pieces = await collect(agent.respond(UserTurn(TurnKind.START)))
        await llm.aclose()

    record = agent.state.audit[0].llm[-1]
    assert "".join(pieces).strip() == "Hello! What size of pizza would you like?"
    assert record.outcome == "fallback (error)"
    assert "no answer within 0.3 s" in record.error
