"""Dual-agent calls: one of our agents (outbound) calls another server's agent (inbound) over a
provider's WebSocket protocol, as if the calling agent were the phone network's side.

The calling agent runs on its own `Call` with this process's offline voice stack. Its far end is
the provider dial client (`bridges/dial.py`) connected to the inbound agent's server, and
`DialledLine` is the thin adapter between the two: the audio the dialler receives becomes the
Call's inbound audio (a continuous frame every `frame_ms`, silence between the inbound agent's
words, as a telephone line carries), and the Call's outbound frames go out through the dialler
as the caller's audio. The inbound side is judged as in any simulated call; both agents' paths,
transcripts and decisions go into the report.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Mapping
from pathlib import Path

import numpy as np

from opusagent.agent.fsa.agent import FsaAgent
from opusagent.agent.fsa.catalog import AgentCatalog
from opusagent.agent.llm.chat import LLMError
from opusagent.agent.nlu.embeddings import MiniLMEmbedder
from opusagent.audio.codecs import silence
from opusagent.audio.formats import AudioChunk, AudioFormat, Encoding
from opusagent.bridges.dial import DialError, DialSession, dial
from opusagent.bridges.farend import Clear, FarEnd, Play, Reaction
from opusagent.bridges.session import Frame
from opusagent.call.call import Call, Stages
from opusagent.call.events import (
    AgentAudio,
    AgentText,
    CallerAudio,
    CallerHungUp,
    CallerSpeech,
    CallerTranscript,
    CallMedia,
    CallOutput,
    ClearPlayback,
    HangUp,
    ReplyAudioEnd,
    SendDtmf,
    Transfer,
)
from opusagent.config import Settings
from opusagent.simulate.judge import judge
from opusagent.simulate.lines import Event, EventKind
from opusagent.simulate.llm import SimulationLLM
from opusagent.simulate.llm_judge import judge_by_llm
from opusagent.simulate.personas import DEFAULT_PERSONA
from opusagent.simulate.record import CalleeRecord
from opusagent.simulate.runner import (
    Bridge,
    Plan,
    RunResult,
    far_end_for,
    save_recording,
    status_of,
)
from opusagent.simulate.scenarios import CallerSpec, LoadedScenario, Scenario
from opusagent.simulate.server import AgentServer, SimulationServerError
from opusagent.voice.stack import VoiceStack

DRAIN_TIMEOUT_S = 2.0
"""How long a hang-up waits for the calling agent's last words to go down the line."""


class OutboundAgent:
    """The calling agent: its file, loaded once, and this process's voice stack for its calls."""

    def __init__(self, catalog: AgentCatalog, voice: VoiceStack, path: Path) -> None:
        self.catalog = catalog
        self.voice = voice
        self.path = path

    @property
    def name(self) -> str:
        return self.catalog.default

    def new_call(
        self, call_id: str, media: CallMedia, line: DialledLine, context: Mapping[str, str]
    ) -> tuple[Call, FsaAgent]:
        voice = self.voice
        if voice.vad is None or voice.stt is None or voice.tts is None:
            raise SimulationServerError("the calling agent's voice stack is not loaded")
        agent = self.catalog.new_agent(None, call_id=call_id, context=dict(context))
        stages = Stages(voice.vad, voice.stt, agent, voice.tts)
        return Call(call_id, media, stages, line.send, policy=voice.settings.turn), agent


@contextlib.asynccontextmanager
async def outbound_agent(
    settings: Settings, path: Path, llm: SimulationLLM | None
) -> AsyncIterator[OutboundAgent]:
    """The agent of `path` with its speech stages loaded (and its LLM roles, when configured)."""
    catalog = AgentCatalog.load(
        [path],
        proposer=llm.llm.proposer if llm is not None else None,
        phraser=llm.llm.phraser if llm is not None else None,
    )
    voice = VoiceStack(settings)
    try:
        if settings.nlu_embeddings:
            embedder = await asyncio.to_thread(MiniLMEmbedder)
            await asyncio.to_thread(catalog.use_embedder, embedder)
        await asyncio.gather(voice.load_vad(), voice.load_stt(), voice.load_tts())
        yield OutboundAgent(catalog, voice, path)
    finally:
        await voice.aclose()


class _ListeningFarEnd:
    """A provider's far end that also keeps the audio it is given to play (what the inbound
    agent says), for the calling agent to hear; a clear drops what was not heard yet."""

    def __init__(self, inner: FarEnd) -> None:
        self.inner = inner
        self.heard = bytearray()

    @property
    def audio_format(self) -> AudioFormat:
        return self.inner.audio_format

    @property
    def frame_ms(self) -> int:
        return self.inner.frame_ms

    @property
    def waits_for_ready(self) -> bool:
        return self.inner.waits_for_ready

    def headers(self) -> Mapping[str, str]:
        return self.inner.headers()

    def opening(self) -> list[Frame]:
        return self.inner.opening()

    def audio(self, data: bytes) -> Frame:
        return self.inner.audio(data)

    def dtmf(self, digit: str) -> list[Frame]:
        return self.inner.dtmf(digit)

    def hangup(self) -> list[Frame]:
        return self.inner.hangup()

    def marker_played(self, token: str) -> Frame | None:
        return self.inner.marker_played(token)

    def receive(self, frame: Frame) -> list[Reaction]:
        reactions = self.inner.receive(frame)
        for reaction in reactions:
            if isinstance(reaction, Play):
                self.heard += reaction.data
            elif isinstance(reaction, Clear):
                self.heard.clear()
        return reactions

    def resumed(self) -> FarEnd:
        return _ListeningFarEnd(self.inner.resumed())


class DialledLine:
    """The calling agent's Call on the dialler's line; see the module docstring."""

    def __init__(self, session: DialSession, tap: _ListeningFarEnd, name: str) -> None:
        self._session = session
        self._tap = tap
        self._name = name
        fmt = tap.audio_format
        self.media = CallMedia(
            inbound=fmt,
            outbound=AudioFormat(Encoding.PCM16, fmt.sample_rate),
            marks=False,
            frame_ms=tap.frame_ms,
        )
        self._frame_s = tap.frame_ms / 1000
        self._frame_bytes = fmt.bytes_for(self._frame_s)
        self._silence = silence(fmt, self._frame_s)
        self._outgoing = bytearray()
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self.events: list[Event] = []
        self.note = ""
        """What the calling agent asked of the line that it cannot do (a transfer)."""
        self._saying: tuple[int, float, list[str]] | None = None
        self._said_until: float | None = None
        self._hearing_from: float | None = None

    async def send(self, output: CallOutput) -> None:
        """The Call's writer (called from its sender task only)."""
        match output:
            case AgentAudio(chunk=chunk):
                self._outgoing += chunk.data
                self._idle.clear()
                self._wake.set()
            case ClearPlayback():
                self._outgoing.clear()
            case SendDtmf(digits=digits):
                await self._session.dtmf(digits)
                self._event("keys", digits)
            case HangUp(reason=reason):
                await self._hang_up(f"the calling agent hung up ({reason})")
            case Transfer(target=target):
                self.note = f"the calling agent asked for a transfer to {target}"
                await self._hang_up(f"{self.note}: a simulated line cannot transfer")
            case AgentText(generation=generation, text=text):
                self._words(generation, text)
            case ReplyAudioEnd():
                self._said()
            case CallerSpeech(started=True) if self._hearing_from is None:
                self._hearing_from = self._session.now
            case CallerTranscript(text=text, final=True):
                self._heard(text)

    async def carry(self, call: Call) -> None:
        """Feed the line's audio to `call` until either side ends the call."""
        pump = asyncio.create_task(self._pump())
        loop = asyncio.get_running_loop()
        fmt, heard = self._tap.audio_format, self._tap.heard
        start, n = loop.time(), 0
        try:
            while not self._session.ended and not call.ended:
                n += 1
                delay = start + n * self._frame_s - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
                data = bytes(heard[: self._frame_bytes]) or self._silence
                del heard[: len(data)]
                call.handle(CallerAudio(AudioChunk(data, fmt)))
        finally:
            pump.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pump
        if not call.ended:
            call.handle(CallerHungUp(self._session.end_reason or "the line ended"))

    async def _pump(self) -> None:
        """The calling agent's frames, in the order the Call paced them, down the line."""
        rate = self.media.outbound.sample_rate
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._outgoing:
                samples = np.frombuffer(bytes(self._outgoing), dtype=np.int16)
                self._outgoing.clear()
                await self._session.play(samples, rate)
            self._idle.set()

    async def _hang_up(self, why: str) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(DRAIN_TIMEOUT_S):
                await self._idle.wait()
        self._said()
        self._event("hang_up", note=why)
        await self._session.hangup()

    def _words(self, generation: int, text: str) -> None:
        if self._saying is None or self._saying[0] != generation:
            self._said()
            self._saying = (generation, self._session.now, [])
        self._saying[2].append(text)

    def _said(self) -> None:
        if self._saying is None:
            return
        _, began, words = self._saying
        self._saying = None
        now = self._session.now
        self._said_until = now
        text = " ".join(w.strip() for w in words if w.strip())
        self.events.append(Event(began, now, "caller", "speech", text, f"agent {self._name}"))

    def _heard(self, text: str) -> None:
        now = self._session.now
        began = self._hearing_from if self._hearing_from is not None else now
        self._hearing_from = None
        latency = None
        if self._said_until is not None and began >= self._said_until:
            latency = began - self._said_until
            self._said_until = None
        self.events.append(
            Event(began, now, "agent", "speech", text, "as the calling agent heard it", latency)
        )

    def _event(self, kind: EventKind, text: str = "", note: str = "") -> None:
        """Something the calling agent did on the line, now."""
        now = self._session.now
        self.events.append(Event(now, now, "caller", kind, text, note))


def dual_plan(caller_agent: Path, bridge: Bridge, number: int = 1) -> Plan:
    """A dual call with no scenario: the call is placed and reported, nothing is judged."""
    bare = Scenario(
        name=f"{caller_agent.stem}-call",
        description="A dual-agent call, not judged.",
        modes=["audio"],
        caller=CallerSpec(agent=caller_agent.resolve()),
    )
    loaded = LoadedScenario(scenario=bare, path=caller_agent.resolve())
    return Plan(loaded, DEFAULT_PERSONA, number, "audio", bridge)


async def run_dual(
    plan: Plan,
    server: AgentServer,
    outbound: OutboundAgent,
    out: Path,
    llm: SimulationLLM | None = None,
) -> RunResult:
    """The calling agent calls the agent `server` serves; the inbound side is judged by the
    plan's scenario. Cancelling hangs up and returns an `interrupted` result."""
    scenario = plan.scenario.scenario
    if "audio" not in scenario.modes:
        return RunResult(plan, "skipped", error="a dual-agent call is audio; written for text mode")
    caller = f"agent {outbound.name} ({outbound.path}) over {plan.bridge}"
    result = RunResult(plan, "error", caller=caller)
    far_end, path, call_id = far_end_for(plan, server.agent)
    tap = _ListeningFarEnd(far_end)
    loop = asyncio.get_running_loop()
    began = loop.time()
    agent: FsaAgent | None = None
    call: Call | None = None
    try:
        async with dial(tap, f"{server.ws_url}{path}") as session:
            line = DialledLine(session, tap, outbound.name)
            result.call_id, result.events = call_id, line.events
            call, agent = outbound.new_call(
                f"outbound-{uuid.uuid4().hex[:12]}", line.media, line, scenario.facts
            )
            await call.start()
            try:
                async with asyncio.timeout(scenario.limits.max_duration_s):
                    await line.carry(call)
            except TimeoutError:
                await session.hangup()
            result.error = line.note
        await call.aclose(session.end_reason or "the line ended")
        result.duration_s = loop.time() - began
        result.recording = save_recording(session.result(), out, plan)
        result.record = await server.record(call_id, "audio")
        result.verdicts = judge(scenario, result.record, duration_s=result.duration_s)
        result.verdicts += await judge_by_llm(scenario, result.record, llm)
        result.status = status_of(result.verdicts)
    except asyncio.CancelledError:
        result.status = "interrupted"
        result.error = "stopped before the call was judged"
    except (DialError, SimulationServerError, LLMError, OSError) as exc:
        result.error = str(exc)
    finally:
        if call is not None and not call.ended:
            await call.aclose("the run stopped")
    result.duration_s = result.duration_s or loop.time() - began
    if agent is not None:
        state = agent.state
        result.caller_path = list(state.path)
        result.caller_record = CalleeRecord.of_state(
            call.call_id if call is not None else "",
            state,
            end_reason=(call.end_reason if call is not None else None) or "",
        )
    return result
