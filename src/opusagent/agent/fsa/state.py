"""Everything a Finite State Agent knows about one conversation, in one serialisable object.

`AgentState` is what a session store persists and resumes: the current state, slot values,
tool results, call facts, per-state counters, the scratchpad, the conversation as the caller
experienced it, and the audit log of every decision.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from opusagent.agent.fsa.audit import AuditEntry

JsonValue = Any
"""A value that survives a JSON round trip."""


class Line(BaseModel):
    """One line of the conversation."""

    model_config = ConfigDict(extra="forbid")

    speaker: str
    text: str
    """For the agent: the words the caller heard."""
    dtmf: str = ""
    interrupted: bool = False
    overlapped: bool = False
    generated: str = ""
    """For the agent: everything generated for the reply, heard or not."""


class AgentState(BaseModel):
    """One conversation's place in its agent; JSON in and out (`model_dump_json`)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=False)

    agent: str
    state: str
    slots: dict[str, JsonValue] = Field(default_factory=dict)
    tools: dict[str, JsonValue] = Field(default_factory=dict)
    context: dict[str, JsonValue] = Field(default_factory=dict)
    retries: int = 0
    """Turns in the current state that got nowhere (no input, nothing understood)."""
    no_inputs: int = 0
    """Silent turns in the current state."""
    turn: int = 0
    started: bool = False
    ended: bool = False
    path: list[str] = Field(default_factory=list)
    """Every state entered, in order."""
    visits: dict[str, int] = Field(default_factory=dict)
    """How many times each state was entered (for conditions such as `visits.verify >= 3`)."""
    scratchpad: list[str] = Field(default_factory=list)
    history: list[Line] = Field(default_factory=list)
    audit: list[AuditEntry] = Field(default_factory=list)
    last_said: str = ""
    """The agent's last reply, for "repeat"."""
