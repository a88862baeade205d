"""The runner: one simulated call per (scenario, run), placed on the agent under test and then
judged; many at once with a bound on concurrency; stopped cleanly (each call hung up, what was
done kept) when cancelled."""

from __future__ import annotations

import asyncio
import contextlib
import wave
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal
from urllib.parse import urlencode

from websockets.exceptions import InvalidHandshake

from opusagent.agent.fsa.loader import load_agent
from opusagent.agent.llm.chat import LLMError
from opusagent.bridges.dial import DialError, DialResult, dial
from opusagent.bridges.farend import FarEnd
from opusagent.bridges.farends import AcsFarEnd, AudioCodesFarEnd, TwilioMediaFarEnd
from opusagent.simulate.callers import Caller, FsaCaller, Move, ScriptedCaller, Styled
from opusagent.simulate.judge import Verdict, judge
from opusagent.simulate.lines import ChatLine, Event, Line, PhoneLine, close_quietly, stereo
from opusagent.simulate.llm import NO_LLM, SimulationLLM
from opusagent.simulate.llm_caller import LLMCaller
from opusagent.simulate.llm_judge import judge_by_llm
from opusagent.simulate.personas import Persona
from opusagent.simulate.record import CalleeRecord
from opusagent.simulate.scenarios import LoadedScenario, Mode
from opusagent.simulate.server import AgentServer, SimulationServerError
from opusagent.simulate.voice import CallerVoice

RECORDING_RATE = 8000
"""The simulated call's recording is at the telephone's rate (it is embedded in the report)."""

Bridge = Literal["twilio", "audiocodes", "acs"]
BRIDGES: tuple[Bridge, ...] = ("twilio", "audiocodes", "acs")
Status = Literal["passed", "failed", "error", "interrupted", "skipped"]
HELLO = "Hello?"
"""What a caller says when the agent has said nothing for its patience."""


@dataclass(frozen=True, slots=True)
class Plan:
    """One run to make."""

    scenario: LoadedScenario
    persona: Persona
    number: int
    mode: Mode
    bridge: Bridge

    @property
    def label(self) -> str:
        return f"{self.scenario.name}-{self.number}"


RunPlan = Callable[[Plan], Awaitable["RunResult"]]
"""How a plan is run (a dual-agent call instead of a simulated caller)."""


@dataclass
class RunResult:
    plan: Plan
    status: Status
    call_id: str = ""
    verdicts: list[Verdict] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    record: CalleeRecord | None = None
    duration_s: float = 0.0
    error: str = ""
    recording: Path | None = None
    """The call as the caller heard it (stereo WAV, caller left), audio mode."""
    caller_path: list[str] = field(default_factory=list)
    """A caller FSA's own path."""
    caller: str = ""
    """Who the caller was: its script, its FSA, the LLM, or the calling agent."""
    caller_record: CalleeRecord | None = None
    """The calling agent's own record (path, transcript, audit), in a dual-agent call."""

    @property
    def passed(self) -> bool:
        return self.status in ("passed", "skipped")


def caller_kind(plan: Plan, llm: SimulationLLM | None) -> str:
    """Who answers for the caller of `plan`; "" when nobody can (an LLM caller, no LLM)."""
    spec = plan.scenario.scenario.caller
    if spec.llm is not None and llm is not None:
        return f"LLM {llm.model(spec.llm.model)} at {llm.base_url}"
    fallback = " (caller.llm: no LLM is configured)" if spec.llm is not None else ""
    if spec.agent is not None:
        return f"caller FSA {spec.agent}{fallback}"
    if spec.script is not None:
        return f"script{fallback}"
    return ""


def caller_for(plan: Plan, llm: SimulationLLM | None = None) -> Caller:
    scenario = plan.scenario.scenario
    spec = scenario.caller
    inner: Caller
    if spec.llm is not None and llm is not None:
        inner = LLMCaller(llm, spec.llm, scenario, plan.persona)
    elif spec.agent is not None:
        inner = FsaCaller(load_agent(plan.scenario.relative(spec.agent)), scenario.facts)
    else:
        inner = ScriptedCaller(
            spec.script or [],
            facts=scenario.facts,
            wrong_facts=scenario.wrong_facts,
            otherwise=spec.otherwise,
            persona=plan.persona,
        )
    return Styled(inner, plan.persona)


def far_end_for(plan: Plan, agent: str | None) -> tuple[FarEnd, str, str]:
    """The provider's side of the call, the path it dials, and the call id the server keeps."""
    params = dict(plan.scenario.scenario.params)
    if agent is not None:
        params["agent"] = agent
    if plan.bridge == "twilio":
        twilio = TwilioMediaFarEnd(parameters=params)
        return twilio, "/twilio/media", twilio.call_sid
    if plan.bridge == "audiocodes":
        vaic = AudioCodesFarEnd(start_parameters=params)
        return vaic, "/audiocodes", vaic.conversation_id
    acs = AcsFarEnd()
    return acs, f"/acs?{urlencode(params)}", acs.subscription_id


async def converse(line: Line, caller: Caller, plan: Plan) -> None:
    """The caller's side of the conversation until someone hangs up or the turns run out."""
    limits = plan.scenario.scenario.limits
    last: Move | None = None
    unanswered = 0
    turns = 0
    while not line.ended and turns < limits.max_caller_turns:
        heard = await line.listen()
        if line.ended:
            return
        if heard.nothing:
            unanswered += 1
            if last is not None and last.kind == "silent":
                if plan.mode == "text":
                    await line.hang_up("the chat never answers silence")
                    return
                if unanswered > 1:
                    await line.hang_up("the agent has stopped talking")
                    return
                continue
            if unanswered > 1:
                await line.hang_up(f"{plan.persona.name} ran out of patience")
                return
            await line.say(HELLO, "the agent said nothing")
            continue
        unanswered = 0
        for move in await caller.respond(heard.text):
            last = move
            await _do(line, move)
            if line.ended:
                return
        turns += 1


async def _do(line: Line, move: Move) -> None:
    if move.kind == "say":
        await line.say(move.text, move.why)
    elif move.kind == "keys":
        await line.keys(move.text, move.why)
    elif move.kind == "silent":
        await line.silence(move.why)
    else:
        await line.hang_up(move.why)


async def run_one(
    plan: Plan,
    server: AgentServer,
    voice: CallerVoice | None,
    out: Path,
    llm: SimulationLLM | None = None,
) -> RunResult:
    """Place one simulated call and judge it. Cancelling it hangs up and returns what was done,
    as an `interrupted` result."""
    scenario = plan.scenario.scenario
    if plan.mode not in scenario.modes:
        return RunResult(
            plan, "skipped", error=f"written for {' and '.join(scenario.modes)} mode only"
        )
    kind = caller_kind(plan, llm)
    if not kind:
        return RunResult(plan, "skipped", error=f"the caller is an LLM (caller.llm) and {NO_LLM}")
    caller = caller_for(plan, llm)
    loop = asyncio.get_running_loop()
    began = loop.time()
    result = RunResult(plan, "error", caller=kind)
    try:
        async with _line(plan, server, voice) as (line, dialled):
            result.call_id = line.call_id
            result.events = line.events
            try:
                async with asyncio.timeout(scenario.limits.max_duration_s):
                    await converse(line, caller, plan)
            except TimeoutError:
                await line.hang_up(f"the run's limit of {scenario.limits.max_duration_s:g} s")
            await close_quietly(line)
        result.duration_s = loop.time() - began
        result.call_id = line.call_id
        if dialled:
            result.recording = save_recording(dialled[0], out, plan)
        result.record = await server.record(result.call_id, plan.mode)
        result.verdicts = judge(scenario, result.record, duration_s=result.duration_s)
        result.verdicts += await judge_by_llm(scenario, result.record, llm)
        result.status = status_of(result.verdicts)
    except asyncio.CancelledError:
        result.status = "interrupted"
        result.error = "stopped before the call was judged"
    except LLMError as exc:
        result.error = f"the LLM caller failed: {exc}"
    except (DialError, SimulationServerError, InvalidHandshake, OSError) as exc:
        result.error = str(exc)
    result.duration_s = result.duration_s or loop.time() - began
    if isinstance(caller, Styled) and isinstance(caller.inner, FsaCaller):
        result.caller_path = caller.inner.path
    return result


def status_of(verdicts: list[Verdict]) -> Status:
    """Passed when every verdict passed; an error when only errors (an LLM judge's) did not."""
    if all(v.passed for v in verdicts):
        return "passed"
    if all(v.passed or v.unjudged == "error" for v in verdicts):
        return "error"
    return "failed"


@contextlib.asynccontextmanager
async def _line(
    plan: Plan, server: AgentServer, voice: CallerVoice | None
) -> AsyncIterator[tuple[Line, list[DialResult]]]:
    """The caller's line; for a phone call, the dialler's result lands in the list at the end."""
    if plan.mode == "text":
        chat = await ChatLine.open(f"{server.ws_url}/chat", server.agent)
        try:
            yield chat, []
        finally:
            await chat.close()
        return
    if voice is None:
        raise SimulationServerError("audio mode needs the caller's voice")
    far_end, path, call_id = far_end_for(plan, server.agent)
    dialled: list[DialResult] = []
    async with dial(far_end, f"{server.ws_url}{path}") as call:
        phone = PhoneLine(call, call_id, voice, plan.persona)
        try:
            yield phone, dialled
        finally:
            await close_quietly(phone)
    dialled.append(call.result())


def save_recording(result: DialResult, out: Path, plan: Plan) -> Path:
    """The call as the caller lived it: a stereo WAV, caller left, agent right."""
    path = out / f"{plan.label}.wav"
    path.parent.mkdir(parents=True, exist_ok=True)
    both = stereo(result, RECORDING_RATE)
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(2)
        wav.setsampwidth(2)
        wav.setframerate(RECORDING_RATE)
        wav.writeframes(both.astype("<i2").tobytes())
    return path


async def run_all(
    plans: list[Plan],
    server: AgentServer,
    voice: CallerVoice | None,
    out: Path,
    *,
    concurrency: int,
    on_done: Callable[[RunResult], None] | None = None,
    llm: SimulationLLM | None = None,
    run: RunPlan | None = None,
) -> list[RunResult]:
    """Every plan, at most `concurrency` at a time; results in plan order. Cancelling stops the
    calls under way (each hung up and returned as interrupted) and starts no more. Each plan is
    run by `run` (default: `run_one`, a simulated caller)."""
    gate = asyncio.Semaphore(concurrency)

    async def one(plan: Plan) -> RunResult:
        async with gate:
            if run is not None:
                return await run(plan)
            return await run_one(plan, server, voice, out, llm)

    def report(task: asyncio.Task[RunResult]) -> None:
        if on_done is not None and not task.cancelled() and task.exception() is None:
            on_done(task.result())

    tasks = [asyncio.create_task(one(plan)) for plan in plans]
    for task in tasks:
        task.add_done_callback(report)
    try:
        await asyncio.gather(*tasks)
    except asyncio.CancelledError:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return [
        task.result()
        if task.done() and not task.cancelled() and task.exception() is None
        else RunResult(plan, "interrupted", error="never started")
        for plan, task in zip(plans, tasks, strict=True)
    ]
