"""The bank agent with its LLM on the real llama.cpp server, served and driven over text (the
web chat WebSocket and ConversationRelay): its free-speech states ask the model, and the audit
shows the proposals the rules accepted and refused."""

from __future__ import annotations

import json

import pytest
from websockets.asyncio.client import connect

from bridges.loopback import serving
from opusagent.agent.fsa.audit import AuditEntry
from opusagent.agent.fsa.catalog import AgentCatalog, CatalogEntry, build_controller
from opusagent.agent.fsa.loader import LoadedAgent, load_agent
from opusagent.agent.llm.endpoint import LLM, llm_from_settings
from opusagent.agent.llm.proposer import LLMProposer
from opusagent.app import create_app
from opusagent.bridges.farends.twilio_relay import relay_session
from opusagent.bridges.twilio_relay import TextToken

from .conftest import llama_settings
from .llama_server import MODEL, REPO

pytestmark = pytest.mark.slow

BANK = REPO / "examples" / "agents" / "bank.yaml"
PATIENT_S = 60.0
"""The bank file allows its model 4 s; the tests, on a shared 2-core machine, allow more."""
CALLER = [
    "hmm, well, I am not sure",
    "I lost my card",
    "4217",
    "I was born on the third of March 1980",
    "yes",
]


def patient(loaded: LoadedAgent) -> LoadedAgent:
    spec = loaded.spec
    states = {
        name: state.model_copy(
            update={"llm": state.llm.model_copy(update={"timeout_s": PATIENT_S})}
        )
        if state.llm is not None
        else state
        for name, state in spec.states.items()
    }
    return LoadedAgent(
        spec.model_copy(update={"states": states}),
        loaded.path,
        loaded.source,
        loaded.tools,
        loaded.knowledge,
        loaded.raw,
    )


def bank_catalog(llm: LLM) -> AgentCatalog:
    loaded = patient(load_agent(BANK))
    controller = build_controller(loaded, proposer=llm.proposer)
    return AgentCatalog({loaded.spec.name: CatalogEntry(loaded, controller)}, phraser=llm.phraser)


async def chat(url: str, lines: list[str]) -> tuple[str, list[dict[str, object]]]:
    replies = []
    async with connect(f"{url}/chat", open_timeout=10) as socket:
        await socket.send(json.dumps({"type": "start"}))
        replies.append(json.loads(await socket.recv()))
        for line in lines:
            await socket.send(json.dumps({"type": "text", "text": line}))
            replies.append(json.loads(await socket.recv()))
    return str(replies[0]["callId"]), replies


async def test_the_bank_s_free_speech_states_use_the_llm_and_the_rules_decide(
    llama_url: str,
) -> None:
    settings = llama_settings(llama_url)
    llm = llm_from_settings(settings)
    assert llm is not None
    app = create_app(settings, loaders={}, agents=bank_catalog(llm))
    async with serving(app) as url:
        call_id, replies = await chat(url, CALLER)
        record = await app.state.sessions.load(call_id)
    await llm.aclose()

    assert [r["state"] for r in replies] == [
        "welcome",
        "welcome",
        "identify",
        "verify",
        "confirm_block",
        "card_replaced",
    ]
    audit: list[AuditEntry] = record.state.audit
    greeting = audit[0].llm[0]
    assert (greeting.role, greeting.model, greeting.endpoint_model) == ("phrase", "default", MODEL)
    assert greeting.route == "states.welcome.llm"
    assert greeting.outcome == "phrased" and replies[0]["text"] != ""
    asked = {entry.state_before for entry in audit for call in entry.llm if call.role == "propose"}
    assert asked == {"welcome", "verify"}  # the free-speech states; identify's digits are not
    _, unsure, lost, _, born, _ = (entry.proposal for entry in audit)
    # Nothing the rules allow: the model is offered all of welcome's moves, and refused.
    assert unsure is not None and unsure.to is not None and not unsure.accepted
    assert unsure.refusal == f"the conditions of every transition to {unsure.to} failed"
    # "I lost my card": identify is the one move open, and the model's proposal is accepted.
    assert lost is not None and (lost.to, lost.accepted) == ("identify", True)
    # The date parser understood the birth date: the model's value for it is never taken.
    assert born is not None and born.to == "check_identity" and born.accepted
    assert set(born.refused_slots) <= {"birth_date"}
    assert all(value == "***" for value in born.slots.values())  # sensitive: kept out of logs
    assert all(call.ttft_ms is not None for entry in audit for call in entry.llm)


async def test_a_server_with_an_llm_base_url_gives_its_agents_the_llm(llama_url: str) -> None:
    app = create_app(llama_settings(llama_url, agents=[BANK]), loaders={})
    catalog: AgentCatalog = app.state.agents

    assert catalog.phraser is not None
    assert isinstance(catalog.entry("bank_card").controller.proposer, LLMProposer)


async def test_conversation_relay_streams_the_phrased_greeting_as_tokens(llama_url: str) -> None:
    settings = llama_settings(llama_url)
    llm = llm_from_settings(settings)
    assert llm is not None
    app = create_app(settings, loaders={}, agents=bank_catalog(llm))
    async with (
        serving(app) as url,
        relay_session(f"{url.replace('http', 'ws')}/twilio/relay") as twilio,
    ):
        await twilio.setup()
        greeting = await twilio.reply(PATIENT_S)
    await llm.aclose()

    tokens = [message for _, message in twilio.received if isinstance(message, TextToken)]
    assert greeting is not None and greeting.text
    assert len(tokens) > 5  # token by token, not the say in one piece
    assert not twilio.errors
