"""What a server offers callers: its agents, one Call per connection, and every bridge mounted.

A call names its agent with the parameter `agent` (a Twilio `<Parameter>` or webhook query
parameter, the browser's `start.agent`, an AudioCodes start parameter…); without one it gets the
default agent. The other parameters become the agent's call context (the caller's number, an
appointment to remind, …).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from fastapi import FastAPI

from opusagent.agent.fsa.agent import FsaAgent
from opusagent.agent.fsa.catalog import AgentCatalog
from opusagent.agent.tools.registry import ToolContext
from opusagent.audio.formats import AudioFormat
from opusagent.audio.recorder import StereoRecorder
from opusagent.bridges.acs import mount_acs
from opusagent.bridges.audiocodes import mount_audiocodes
from opusagent.bridges.browser import mount_browser
from opusagent.bridges.chat import mount_chat
from opusagent.bridges.session import TRY_AGAIN_LATER, CallFactory, StreamRefusedError
from opusagent.bridges.telnyx import mount_telnyx
from opusagent.bridges.twilio_calls import mount_twilio_calls
from opusagent.bridges.twilio_media import mount_twilio_media
from opusagent.bridges.twilio_relay import mount_twilio_relay
from opusagent.bridges.twilio_rest import TwilioRest
from opusagent.bridges.twilio_sms import mount_twilio_sms
from opusagent.bridges.vonage import mount_vonage
from opusagent.call.call import Call, SendOutput, Stages
from opusagent.call.events import CallMedia
from opusagent.call.fallback import SpokenLines
from opusagent.call.stages import Agent
from opusagent.config import Settings
from opusagent.limits import LimitCounts, MeteredCall
from opusagent.realtime.call import RealtimeCall, realtime_options
from opusagent.sessions.calls import CallSession, RecordsGetter, parse_format
from opusagent.sessions.links import Links
from opusagent.sessions.live import LiveCall, LiveCalls
from opusagent.sessions.store import SessionStore
from opusagent.sessions.text import TextConversations
from opusagent.telemetry import CallWatch, Telemetry
from opusagent.voice.stack import VoiceStack

log = logging.getLogger(__name__)

AGENT_PARAMETER = "agent"
CALLER_PARAMETERS = ("From", "caller", "from")
"""Where each provider puts the caller's number among a call's parameters."""


class NotReadyError(RuntimeError):
    """A call arrived before the speech models finished loading (see `/ready`)."""


class CallRefusedError(StreamRefusedError):
    """A call arrived while the server drains (see `opusagent.drain`) or is full
    (`limits.max_calls`)."""


def call_context(call_id: str, params: Mapping[str, str]) -> dict[str, Any]:
    """The agent's view of a call: its parameters, with the caller's number as `caller`."""
    context: dict[str, Any] = {k: v for k, v in params.items() if k != AGENT_PARAMETER}
    context["call_id"] = call_id
    caller = next((params[k] for k in CALLER_PARAMETERS if params.get(k)), None)
    if caller is not None:
        context["caller"] = caller
    return context


class CallMaker:
    """Builds each connection's Call: the process's voice stages and a fresh agent, whose
    conversation is resumed from and written to the session store, and recorded at the end."""

    def __init__(
        self,
        settings: Settings,
        voice: VoiceStack,
        agents: AgentCatalog,
        store: SessionStore,
        records: RecordsGetter,
        links: Links,
        telemetry: Telemetry | None = None,
        limit_counts: LimitCounts | None = None,
    ) -> None:
        self._settings = settings
        self._telemetry = telemetry
        self._limit_counts = limit_counts
        self._taking_calls = True
        self.live = LiveCalls()
        """The calls in progress, listed from when they are made until they are recorded."""
        self.links = links
        self._voice = voice
        self._agents = agents
        self.store = store
        self._records = records
        self._endings: set[asyncio.Task[None]] = set()
        self._lines = SpokenLines()
        """The agents' fallback lines in the process's voice, rendered by the first call."""

    def agent(self, call_id: str, params: Mapping[str, str]) -> Agent:
        """A new agent for one text conversation (`UnknownAgentError` names the agents)."""
        return self._agents.new_agent(
            params.get(AGENT_PARAMETER), call_id=call_id, context=call_context(call_id, params)
        )

    def for_bridge(self, bridge: str) -> CallFactory:
        """The call factory of one bridge (its name goes on the session and the record); each
        call's caller audio is metered against floods (`limits.MeteredCall`)."""

        def make(
            call_id: str, media: CallMedia, send: SendOutput, params: Mapping[str, str]
        ) -> MeteredCall:
            call = self.make(bridge, call_id, media, send, params)
            return MeteredCall(call, self._settings.limits, functools.partial(self._flood, bridge))

        return make

    def _flood(self, bridge: str) -> None:
        if self._limit_counts is not None:
            self._limit_counts.hit("audio_flood", bridge)

    def make(
        self,
        bridge: str,
        call_id: str,
        media: CallMedia,
        send: SendOutput,
        params: Mapping[str, str],
    ) -> Call | RealtimeCall:
        voice = self._voice
        if not self._taking_calls:
            self._refused(bridge, "draining")
            raise CallRefusedError(
                f"call {call_id} refused: this server is stopping; call again",
                code=TRY_AGAIN_LATER,
            )
        max_calls = self._settings.limits.max_calls
        if len(self.live) >= max_calls:
            self._refused(bridge, "busy")
            if self._limit_counts is not None:
                self._limit_counts.hit("busy", bridge)
            raise CallRefusedError(
                f"call {call_id} refused: {len(self.live)} calls in progress, the most this "
                f"server takes (limits.max_calls {max_calls}); call again",
                code=TRY_AGAIN_LATER,
            )
        if self._settings.backend == "realtime":
            return self._realtime(bridge, call_id, media, send, params)
        if voice.vad is None or voice.stt is None or voice.tts is None:
            self._refused(bridge, "not_ready")
            raise NotReadyError(
                f"call {call_id} refused: the speech models are still loading (see /ready)"
            )
        session, agent = self._conversation(bridge, call_id, media, params)
        recorder = self._recorder(call_id, voice.stt.input_format.sample_rate)
        session.recording = recorder.path.name if recorder is not None else None
        live = LiveCall(call_id, bridge=bridge, agent=agent.controller.spec.name)
        watch = self._watch(call_id, bridge, agent)
        stages = Stages(voice.vad, voice.stt, agent, voice.tts)
        if watch is not None:
            stages = Stages(
                voice.vad, voice.stt, watch.wrap_agent(agent), watch.wrap_tts(voice.tts)
            )
            send = watch.wrap_send(send)
        call = Call(
            call_id,
            media,
            stages,
            live.watching(send),
            policy=self._settings.turn,
            recorder=recorder,
            fallback=agent.fallback,
            lines=self._lines,
        )
        if watch is not None:
            # Only now: the call's first stage tasks (e.g. the VAD's) must not inherit it.
            watch.enter()
        self._track(call, agent, session, live, watch)
        return call

    def _realtime(
        self,
        bridge: str,
        call_id: str,
        media: CallMedia,
        send: SendOutput,
        params: Mapping[str, str],
    ) -> RealtimeCall:
        """A call voiced by the speech-to-speech model (backend realtime); the agent decides."""
        session, agent = self._conversation(bridge, call_id, media, params)
        live = LiveCall(call_id, bridge=bridge, agent=agent.controller.spec.name)
        watch = self._watch(call_id, bridge, agent)
        if watch is not None:
            send = watch.wrap_send(send)
        options = realtime_options(self._settings.realtime)
        call = RealtimeCall(
            call_id, media, agent, live.watching(send), options, policy=self._settings.turn
        )
        if watch is not None:
            watch.enter()
        self._track(call, agent, session, live, watch)
        return call

    def _conversation(
        self, bridge: str, call_id: str, media: CallMedia, params: Mapping[str, str]
    ) -> tuple[CallSession, FsaAgent]:
        """The call's session and its agent (`UnknownAgentError` names the agents)."""
        entry = self._agents.entry(params.get(AGENT_PARAMETER))
        session = CallSession(
            call_id,
            agent=entry.loaded.spec.name,
            bridge=bridge,
            media=media,
            store=self.store,
            records=self._records,
        )
        agent = self._agents.new_agent(
            entry.loaded.spec.name,
            call_id=call_id,
            context=call_context(call_id, params),
            on_commit=session.commit,
            resume=session.resume,
            links=self.links,
            sessions=self.store,
        )
        return session, agent

    def _track(
        self,
        call: Call | RealtimeCall,
        agent: FsaAgent,
        session: CallSession,
        live: LiveCall,
        watch: CallWatch | None,
    ) -> None:
        """List the call as live until it has ended and its session and record are stored."""
        self.live.add(live)
        ending = asyncio.get_running_loop().create_task(
            self._finish(call, agent, session, live, watch)
        )
        self._endings.add(ending)
        ending.add_done_callback(self._endings.discard)

    def _recorder(self, call_id: str, rate: int) -> StereoRecorder | None:
        """A stereo WAV (caller left, agent right) in `recordings_dir`, one per connection."""
        folder = self._settings.recordings_dir
        if folder is None:
            return None
        folder.mkdir(parents=True, exist_ok=True)
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")
        name = re.sub(r"[^A-Za-z0-9_.-]", "_", call_id)[:80]
        return StereoRecorder(folder / f"{name}-{stamp}.wav", rate)

    def text_conversations(self, twilio: TwilioRest | None = None) -> TextConversations:
        """Conversations by text (SMS, web chat) over the same sessions as the calls."""
        tools = ToolContext(
            call_id="",
            slots={},
            context={},
            twilio=twilio,
            sms_from=self._settings.bridges.twilio_from_number,
        )
        return TextConversations(self._agents, self.store, self.links, tools)

    async def known_format(self, call_id: str) -> AudioFormat | None:
        """The inbound format of a call the session store holds (AudioCodes `session.resume`)."""
        record = await self.store.load(call_id)
        if record is None or record.ended:
            return None
        return parse_format(record.media.get("inbound", ""))

    def _watch(self, call_id: str, bridge: str, agent: FsaAgent) -> CallWatch | None:
        """The call's telemetry; the values of its private slots are kept out of the logs."""
        if self._telemetry is None:
            return None
        redacted = set(self._settings.telemetry.redact_slot_types)
        slots = agent.controller.spec.slots
        private = [n for n, s in slots.items() if s.sensitive or s.type in redacted]
        return self._telemetry.watch(
            call_id,
            bridge=bridge,
            agent=agent.controller.spec.name,
            private=lambda: [agent.state.slots.get(name) for name in private],
        )

    def _refused(self, bridge: str, reason: str) -> None:
        if self._telemetry is not None:
            self._telemetry.refused(bridge, reason)

    def stop_taking_calls(self) -> None:
        """Refuse every new call from now on (the server drains)."""
        self._taking_calls = False

    async def wait_idle(self, within: float) -> int:
        """Wait until every call has ended and been stored, or `within` seconds; returns how
        many calls are still live."""
        if self._endings:
            await asyncio.wait(self._endings, timeout=within)
        return len(self._endings)

    async def _finish(
        self,
        call: Call | RealtimeCall,
        agent: FsaAgent,
        session: CallSession,
        live: LiveCall,
        watch: CallWatch | None,
    ) -> None:
        await call.wait_closed()
        if watch is not None:
            watch.finish(call.end_reason or "closed")
        try:
            await session.finish(call, agent.state)
        except Exception:
            log.exception("call %s: its session or record could not be stored", call.call_id)
        finally:
            self.live.remove(live)

    async def aclose(self) -> None:
        """Wait for ending calls to store their sessions and records."""
        if self._endings:
            await asyncio.gather(*self._endings, return_exceptions=True)


def mount_bridges(
    app: FastAPI, settings: Settings, calls: CallMaker, rest: TwilioRest | None
) -> None:
    """Serve every bridge on `app`, with the credentials `settings` holds for each; `rest` is
    the Twilio account's REST client (None: not configured)."""
    bridges = settings.bridges
    twilio = {"auth_token": bridges.twilio_auth_token, "public_url": bridges.public_url}
    mount_twilio_media(app, calls.for_bridge("twilio"), rest=rest, **twilio)
    mount_twilio_relay(app, calls.agent, **twilio)
    mount_twilio_calls(app, bridges, rest=rest)
    mount_audiocodes(
        app,
        calls.for_bridge("audiocodes"),
        token=bridges.audiocodes_token,
        known=calls.known_format,
    )
    mount_acs(app, calls.for_bridge("acs"), token=bridges.acs_token)
    mount_telnyx(app, calls.for_bridge("telnyx"), token=bridges.telnyx_token)
    mount_vonage(app, calls.for_bridge("vonage"), token=bridges.vonage_token)
    mount_browser(app, calls.for_bridge("browser"))
    texts = calls.text_conversations(rest)
    mount_twilio_sms(app, texts, calls.links, **twilio)
    mount_chat(app, texts)
    if rest is None:
        log.info("Twilio REST is not configured: hang-ups close the stream; no outbound calls")
