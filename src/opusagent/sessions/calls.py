"""One call's life outside the process: resumed from the session store, each decided turn
written back (off the audio path, in order), and its record stored when it ends.

A lost connection (`CONNECTION_LOST`) is not an end: the session stays in the store for the
provider to reconnect, on this server or another, within the store's TTL.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any, Protocol

from opusagent.agent.fsa.controller import Outcome
from opusagent.agent.fsa.state import AgentState
from opusagent.audio.formats import AudioFormat, Encoding
from opusagent.audio.quality import QualityFigures
from opusagent.call.call import TurnRecord
from opusagent.call.events import CONNECTION_LOST, CallMedia
from opusagent.sessions.records import CallRecordIn, CallRecords, TranscriptLine
from opusagent.sessions.store import SessionRecord, SessionStore
from opusagent.sessions.writer import SessionWriter

log = logging.getLogger(__name__)

RecordsGetter = Callable[[], CallRecords | None]
"""The call records, once the database is open (None: records are not kept)."""


class RecordedCall(Protocol):
    """What a call's record takes from the call (the pipeline `Call` or a `RealtimeCall`)."""

    @property
    def call_id(self) -> str: ...

    @property
    def end_reason(self) -> str | None: ...

    @property
    def turns(self) -> tuple[TurnRecord, ...]: ...

    def quality(self) -> QualityFigures: ...


def media_of(media: CallMedia) -> dict[str, str]:
    return {"inbound": format_name(media.inbound), "outbound": format_name(media.outbound)}


def format_name(fmt: AudioFormat) -> str:
    """`pcm16/16000`: how a session record names an audio format."""
    return f"{fmt.encoding.value}/{fmt.sample_rate}"


def parse_format(name: str) -> AudioFormat | None:
    """A format named by `format_name`; None for anything else."""
    encoding, _, rate = name.partition("/")
    try:
        return AudioFormat(Encoding(encoding), int(rate))
    except ValueError:
        return None


class CallSession:
    """Persistence for one call of one agent over one bridge."""

    def __init__(
        self,
        call_id: str,
        *,
        agent: str,
        bridge: str,
        media: CallMedia,
        store: SessionStore,
        records: RecordsGetter,
    ) -> None:
        self.call_id = call_id
        self._agent = agent
        self._bridge = bridge
        self._media = media_of(media)
        self._store = store
        self._records = records
        self._writer = SessionWriter(store)
        self._created_at = datetime.now(UTC)
        self._version = 0
        self.resumed = False
        self.recording: str | None = None
        """The call's recording, relative to `recordings_dir` (None: not recorded)."""

    async def resume(self) -> AgentState | None:
        """The conversation's state if it was under way (a reconnect), else None."""
        previous = await self._store.load(self.call_id)
        if previous is None or previous.ended or previous.agent != self._agent:
            return None
        self._created_at = previous.created_at
        self._version = previous.version
        self.resumed = True
        log.info(
            "call %s: resuming %s in state %s (session v%d)",
            self.call_id,
            self._agent,
            previous.state.state,
            previous.version,
        )
        return previous.state

    def commit(self, state: AgentState, outcome: Outcome) -> None:
        """A turn was decided: write the state behind the call's back, in order."""
        self._writer.put(self._record(state, ended=state.ended))

    async def finish(self, call: RecordedCall, state: AgentState) -> None:
        """The call is over (or its connection was lost): flush, then store its record."""
        dropped = call.end_reason == CONNECTION_LOST
        self._writer.put(self._record(state, ended=not dropped))
        await self._writer.flush()
        records = self._records()
        if records is None:
            log.warning("call %s: the call records are not open: no record kept", self.call_id)
            return
        record = call_record(
            call,
            state,
            agent=self._agent,
            bridge=self._bridge,
            started_at=self._created_at,
        ).model_copy(update={"recording_path": self.recording})
        await records.add(record)

    def _record(self, state: AgentState, *, ended: bool) -> SessionRecord:
        now = datetime.now(UTC)
        return SessionRecord(
            call_id=self.call_id,
            agent=self._agent,
            bridge=self._bridge,
            media=self._media,
            state=state,
            created_at=self._created_at,
            updated_at=now,
            ended=ended,
            version=self._version,
        )


def call_record(
    call: RecordedCall, state: AgentState, *, agent: str, bridge: str, started_at: datetime
) -> CallRecordIn:
    """What is kept of a call once it is over: the conversation across every connection it had
    (the agent state's history), the path, the audit, and this connection's figures."""
    tool_calls = [
        {"turn": entry.turn, **call_.model_dump(mode="json")}
        for entry in state.audit
        for call_ in entry.tool_calls
    ]
    quality = {k: float(v) for k, v in asdict(call.quality()).items() if v is not None}
    return CallRecordIn(
        call_id=call.call_id,
        agent=agent,
        bridge=bridge,
        caller=_text(state.context.get("caller")),
        called=_text(state.context.get("To") or state.context.get("called")),
        started_at=started_at,
        ended_at=datetime.now(UTC),
        end_reason=call.end_reason or "",
        outcome=outcome_of(call.end_reason or "", state, tool_calls),
        final_state=state.state,
        path=list(state.path),
        transcript=[
            TranscriptLine(
                speaker="agent" if line.speaker == "agent" else "caller",
                text=line.generated or line.text,
                dtmf=line.dtmf,
                heard=line.text if line.speaker == "agent" else None,
                interrupted=line.interrupted,
                overlapped=line.overlapped,
            )
            for line in state.history
        ],
        audit=[entry.model_dump(mode="json") for entry in state.audit],
        tool_calls=tool_calls,
        quality=quality,
        turn_latencies_s=[t.response_latency for t in call.turns if t.response_latency is not None],
        recording_path=None,
    )


def outcome_of(end_reason: str, state: AgentState, tool_calls: list[dict[str, Any]]) -> str:
    """dropped, transferred, completed (a final state ended it), error or abandoned."""
    if end_reason == CONNECTION_LOST:
        return "dropped"
    if any(
        isinstance(c.get("result"), dict) and c["result"].get("action") == "transfer"
        for c in tool_calls
    ):
        return "transferred"
    last = state.audit[-1].decision if state.audit else ""
    if state.ended and "(caller hung up)" not in last:
        return "completed"
    if end_reason.startswith(("provider_error", "send_failed")):
        return "error"
    return "abandoned"


def _text(value: object) -> str | None:
    return str(value) if value else None


class RecordsHolder:
    """The call records database, opened at start-up (a `/ready` component); until it is open
    (or when it failed to open), calls end without a record, and say so in the log."""

    def __init__(self, url: str) -> None:
        self._url = url
        self._records: CallRecords | None = None

    async def open(self) -> None:
        self._records = await CallRecords.open(self._url)

    def __call__(self) -> CallRecords | None:
        return self._records

    async def aclose(self) -> None:
        if self._records is not None:
            await self._records.aclose()
