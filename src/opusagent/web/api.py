"""The JSON the softphone and the dashboard read: the agents and their graphs, and the calls in
progress on this instance.

`GET /agents` and `GET /agents/{name}/graph.{svg,dot,mmd}` are open, like `WS /browser`: the
softphone needs them to place a call. `GET /live/calls` and `GET /live/calls/{call_id}` show
what callers say, so they need the `X-API-Key` header when an API key is configured. Finished
calls are at `GET /calls` and `GET /calls/{call_id}` (`sessions/records_api.py`).
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any, Literal

from fastapi import Depends, FastAPI, HTTPException
from fastapi.responses import Response
from pydantic import BaseModel
from pydantic_core import to_jsonable_python

from opusagent.agent.fsa.catalog import AgentCatalog, UnknownAgentError
from opusagent.agent.fsa.graph import GraphError, render_graph
from opusagent.bridges.twilio_calls import api_key_guard
from opusagent.sessions.live import LiveCall, LiveCalls

AGENTS_PATH = "/agents"
GRAPH_PATH = f"{AGENTS_PATH}/{{name}}/graph.{{kind}}"
LIVE_CALLS_PATH = "/live/calls"
LIVE_CALL_PATH = f"{LIVE_CALLS_PATH}/{{call_id}}"

GRAPH_MEDIA_TYPES = {
    "svg": "image/svg+xml",
    "dot": "text/vnd.graphviz; charset=utf-8",
    "mmd": "text/plain; charset=utf-8",
}


class StateInfo(BaseModel):
    name: str
    final: bool


class AgentInfo(BaseModel):
    name: str
    description: str
    initial: str
    states: list[StateInfo]
    slots: list[str]


class AgentList(BaseModel):
    default: str
    agents: list[AgentInfo]


class LiveCallSummary(BaseModel):
    call_id: str
    bridge: str
    agent: str
    state: str | None
    started_at: datetime
    duration_s: float
    last_latency_s: float | None
    caller_speaking: bool


class LiveLineOut(BaseModel):
    speaker: Literal["caller", "agent"]
    text: str
    generation: int | None
    interrupted: bool


class LiveDecisionOut(BaseModel):
    turn: Any
    state: str
    decision: Any


class LiveCallDetail(LiveCallSummary):
    path: list[str]
    slots: dict[str, Any]
    decisions: list[LiveDecisionOut]
    transcript: list[LiveLineOut]
    partial: str
    latencies_s: list[float]


class LiveCallList(BaseModel):
    calls: list[LiveCallSummary]


def summary(call: LiveCall) -> LiveCallSummary:
    return LiveCallSummary(
        call_id=call.call_id,
        bridge=call.bridge,
        agent=call.agent,
        state=call.state,
        started_at=call.started_at,
        duration_s=round(call.duration_s, 3),
        last_latency_s=call.last_latency_s,
        caller_speaking=call.caller_speaking,
    )


def detail(call: LiveCall) -> LiveCallDetail:
    # Slot values and decisions may be dates or other values JSON has no type for: sent as text.
    return LiveCallDetail(
        **summary(call).model_dump(),
        path=list(call.path),
        slots=to_jsonable_python(call.slots, fallback=str),
        decisions=[
            LiveDecisionOut(
                turn=to_jsonable_python(d.turn, fallback=str),
                state=d.state,
                decision=to_jsonable_python(d.decision, fallback=str),
            )
            for d in call.decisions
        ],
        transcript=[
            LiveLineOut(
                speaker=line.speaker,
                text=line.text,
                generation=line.generation,
                interrupted=line.interrupted,
            )
            for line in call.transcript
        ],
        partial=call.partial,
        latencies_s=list(call.latencies_s),
    )


def agent_list(agents: AgentCatalog) -> AgentList:
    infos = []
    for name in agents.names():
        spec = agents.entry(name).loaded.spec
        infos.append(
            AgentInfo(
                name=spec.name,
                description=spec.description,
                initial=spec.initial,
                states=[StateInfo(name=n, final=s.final) for n, s in spec.states.items()],
                slots=list(spec.slots),
            )
        )
    return AgentList(default=agents.default, agents=infos)


def mount_web_api(
    app: FastAPI, agents: AgentCatalog, live: LiveCalls, *, api_key: str | None
) -> None:
    """Serve the agents, their graphs and the calls in progress (`live`) on `app`."""
    protected = [Depends(api_key_guard(api_key))]
    graphs: dict[tuple[str, str], str] = {}
    """Drawn graphs by (agent, kind): agents do not change while the server runs."""

    @app.get(AGENTS_PATH, summary="The agents this server offers")
    async def list_agents() -> AgentList:
        return agent_list(agents)

    @app.get(
        GRAPH_PATH,
        response_class=Response,
        responses={
            200: {"content": {t: {} for t in GRAPH_MEDIA_TYPES.values()}},
        },
        summary="An agent's states and transitions drawn as SVG, Graphviz DOT or Mermaid",
    )
    async def agent_graph(name: str, kind: str) -> Response:
        if kind not in GRAPH_MEDIA_TYPES:
            raise HTTPException(
                404, f"No graph format {kind!r}; use one of {', '.join(GRAPH_MEDIA_TYPES)}."
            )
        try:
            spec = agents.entry(name).loaded.spec
        except UnknownAgentError as exc:
            problem = str(exc)
            raise HTTPException(404, f"{problem[:1].upper()}{problem[1:]}.") from None
        drawn = graphs.get((name, kind))
        if drawn is None:
            try:
                # SVG runs Graphviz's `dot` in a child process: off the event loop.
                drawn = await asyncio.to_thread(render_graph, spec, f".{kind}")
            except GraphError as exc:
                raise HTTPException(503, f"The graph cannot be drawn: {exc}.") from None
            graphs[(name, kind)] = drawn
        return Response(drawn, media_type=GRAPH_MEDIA_TYPES[kind])

    @app.get(LIVE_CALLS_PATH, dependencies=protected, summary="The calls in progress here")
    async def live_calls() -> LiveCallList:
        return LiveCallList(calls=[summary(call) for call in live.calls()])

    @app.get(LIVE_CALL_PATH, dependencies=protected, summary="A call in progress, so far")
    async def live_call(call_id: str) -> LiveCallDetail:
        call = live.get(call_id)
        if call is None:
            raise HTTPException(
                404,
                f"No call {call_id!r} is in progress here; a finished call's record is at "
                f"/calls/{call_id}.",
            )
        return detail(call)
