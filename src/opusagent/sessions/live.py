"""The calls in progress on this instance, as their notices describe them (for the dashboard).

A call's outputs pass through `LiveCall.watching(send)` on their way to its bridge; the notices
among them (transcripts, agent text, the agent's state, reply latency) update the call's entry.
The entry is listed from when the call is made until it ends. Finished calls are in the call
records (`sessions/records.py`), not here.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal

from opusagent.call.call import SendOutput
from opusagent.call.events import (
    AgentStatus,
    AgentText,
    CallerSpeech,
    CallerTranscript,
    CallOutput,
    ClearPlayback,
    ReplyLatency,
)


@dataclass(slots=True)
class LiveLine:
    """One line of the conversation so far: a caller's final transcript or an agent's reply."""

    speaker: Literal["caller", "agent"]
    text: str
    generation: int | None = None
    """The agent reply's generation (None for the caller)."""
    interrupted: bool = False
    """The caller barged in on this reply."""


@dataclass(slots=True)
class LiveDecision:
    """One decided turn as the agent reported it: where it went and why."""

    turn: object
    state: str
    decision: object


@dataclass(slots=True)
class LiveCall:
    """What is known so far of one call in progress."""

    call_id: str
    bridge: str
    agent: str
    started_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    started: float = field(default_factory=time.monotonic)
    """`time.monotonic()` when the call was made (durations are measured on it)."""
    state: str | None = None
    path: list[str] = field(default_factory=list)
    """The states entered, in order."""
    slots: dict[str, object] = field(default_factory=dict)
    decisions: list[LiveDecision] = field(default_factory=list)
    transcript: list[LiveLine] = field(default_factory=list)
    partial: str = ""
    """What the caller is saying now (the newest partial transcript), until its final."""
    caller_speaking: bool = False
    latencies_s: list[float] = field(default_factory=list)

    @property
    def duration_s(self) -> float:
        return time.monotonic() - self.started

    @property
    def last_latency_s(self) -> float | None:
        return self.latencies_s[-1] if self.latencies_s else None

    def watching(self, send: SendOutput) -> SendOutput:
        """`send`, noting each output on this entry before it goes out."""

        async def send_noted(output: CallOutput) -> None:
            self.note(output)
            await send(output)

        return send_noted

    def note(self, output: CallOutput) -> None:
        """Update the entry from one of the call's outputs (audio and controls are ignored)."""
        match output:
            case CallerTranscript(text=text, final=False):
                self.partial = text
            case CallerTranscript(text=text, final=True):
                self.partial = ""
                if text:
                    self.transcript.append(LiveLine("caller", text))
            case AgentText(generation=generation, text=text):
                self._agent_said(generation, text.strip())
            case AgentStatus(state=state, detail=detail):
                self._agent_moved(state, detail)
            case ReplyLatency(seconds=seconds):
                self.latencies_s.append(seconds)
            case CallerSpeech(started=started):
                self.caller_speaking = started
            case ClearPlayback(generation=generation):
                for line in reversed(self.transcript):
                    if line.generation == generation:
                        line.interrupted = True
                        break

    def _agent_said(self, generation: int, text: str) -> None:
        if not text:
            return
        last = self.transcript[-1] if self.transcript else None
        if last is not None and last.speaker == "agent" and last.generation == generation:
            last.text = f"{last.text} {text}"
        else:
            self.transcript.append(LiveLine("agent", text, generation))

    def _agent_moved(self, state: str, detail: Mapping[str, object]) -> None:
        self.state = state
        if not self.path or self.path[-1] != state:
            self.path.append(state)
        slots = detail.get("slots")
        if isinstance(slots, Mapping):
            self.slots = {str(name): value for name, value in slots.items()}
        if "decision" in detail:
            self.decisions.append(LiveDecision(detail.get("turn"), state, detail["decision"]))


class LiveCalls:
    """The registry of calls in progress on this instance, by call id."""

    def __init__(self) -> None:
        self._calls: dict[str, LiveCall] = {}

    def add(self, call: LiveCall) -> None:
        """List `call` (a reconnect under the same id replaces the older entry)."""
        self._calls[call.call_id] = call

    def remove(self, call: LiveCall) -> None:
        """Unlist `call`, unless a newer call under its id has replaced it."""
        if self._calls.get(call.call_id) is call:
            del self._calls[call.call_id]

    def get(self, call_id: str) -> LiveCall | None:
        return self._calls.get(call_id)

    def calls(self) -> list[LiveCall]:
        """Every call in progress, oldest first."""
        return sorted(self._calls.values(), key=lambda call: call.started)

    def __len__(self) -> int:
        return len(self._calls)
