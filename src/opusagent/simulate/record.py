"""The callee's side of a simulated call: what the agent under test did, for the judge.

Audio mode reads the call record the server keeps (`GET /calls/{call_id}`); text mode reads the
web chat conversation's session (the same agent state a call record is made from).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from opusagent.agent.fsa.audit import AuditEntry
from opusagent.agent.fsa.state import AgentState


class Line(BaseModel):
    """One line of the callee's transcript."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    speaker: str
    text: str
    dtmf: str = ""
    heard: str | None = None
    interrupted: bool = False


class CalleeRecord(BaseModel):
    """The agent's path, transcript and audit log for one call."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    call_id: str
    agent: str
    final_state: str
    path: list[str]
    transcript: list[Line]
    audit: list[AuditEntry]
    end_reason: str = ""
    outcome: str = ""
    duration_s: float | None = None
    turn_latencies_s: list[float] = Field(default_factory=list)
    recording_path: str | None = None

    @classmethod
    def of_call(cls, record: dict[str, Any]) -> CalleeRecord:
        """From the JSON of `GET /calls/{call_id}`."""
        return cls.model_validate(record)

    @classmethod
    def of_state(cls, call_id: str, state: AgentState, *, end_reason: str) -> CalleeRecord:
        """From a text conversation's agent state."""
        return cls(
            call_id=call_id,
            agent=state.agent,
            final_state=state.state,
            path=list(state.path),
            transcript=[
                Line(
                    speaker=line.speaker,
                    text=line.generated or line.text,
                    dtmf=line.dtmf,
                    heard=line.text if line.speaker == "agent" else None,
                    interrupted=line.interrupted,
                )
                for line in state.history
            ],
            audit=list(state.audit),
            end_reason=end_reason,
            outcome="completed" if state.ended else "abandoned",
        )

    def slots(self) -> dict[str, Any]:
        """The slot values the agent held at the end (every turn's changes, in order)."""
        held: dict[str, Any] = {}
        for entry in self.audit:
            for name, value in entry.slot_changes.items():
                if value is None:
                    held.pop(name, None)
                else:
                    held[name] = value
        return held

    def states_reached(self) -> list[str]:
        if self.path and self.path[-1] == self.final_state:
            return list(self.path)
        return [*self.path, self.final_state]

    def turns(self) -> int:
        """Turns the agent answered: the caller's inputs and silences while the call was on."""
        return sum(
            1
            for entry in self.audit
            if entry.kind not in ("start", "hangup") and not entry.decision.startswith("ignored")
        )
