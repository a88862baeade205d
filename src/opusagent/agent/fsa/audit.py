"""The audit log: one entry per turn recording why the agent did what it did."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ConditionResult(_Record):
    """One condition of one transition and whether it held."""

    condition: str
    held: bool
    detail: str = ""


class TransitionCheck(_Record):
    """A transition considered this turn, in the order it was checked."""

    to: str
    priority: int
    where: str
    held: bool
    conditions: list[ConditionResult] = Field(default_factory=list)


class ProposalRecord(_Record):
    """What an LLM proposed and what the rules made of it."""

    to: str | None = None
    slots: dict[str, Any] = Field(default_factory=dict)
    reason: str = ""
    accepted: bool = False
    refusal: str = ""
    refused_slots: dict[str, str] = Field(default_factory=dict)


class LLMCallRecord(_Record):
    """One request to a model: which model and why, how long it took, what it cost."""

    role: str
    """"propose" or "phrase"."""
    model: str = ""
    """The agent file's name of the model that answered (or was tried last)."""
    endpoint_model: str = ""
    route: str = ""
    """Why this model: the `llm` it came from, the route that matched, a fallback."""
    failed: list[str] = Field(default_factory=list)
    """Models tried first that failed or timed out, each with why."""
    ttft_ms: float | None = None
    total_ms: float = 0.0
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    error: str = ""
    text: str = ""
    """For "phrase": the words generated (the caller may have heard fewer)."""
    outcome: str = ""
    """For "phrase": "phrased", "fallback (…)" or "cancelled"."""


class ToolRecord(_Record):
    name: str
    args: dict[str, Any] = Field(default_factory=dict)
    result: Any = None
    error: str = ""
    ms: float = 0.0


class AuditEntry(_Record):
    """One turn: input, understanding, proposal, every condition, the decision, its effects."""

    turn: int
    generation: int
    kind: str
    text: str = ""
    dtmf: str = ""
    state_before: str
    intent: str | None = None
    intent_score: float | None = None
    intent_scores: dict[str, float] = Field(default_factory=dict)
    slot_results: dict[str, str] = Field(default_factory=dict)
    """Per slot collected here: "filled: <value>", "invalid: <reason>" or "none"."""
    proposal: ProposalRecord | None = None
    checks: list[TransitionCheck] = Field(default_factory=list)
    decision: str = ""
    """"to <state>" / "stay (reprompt)" / "stay (no input)" / "end"."""
    slot_changes: dict[str, Any] = Field(default_factory=dict)
    tool_calls: list[ToolRecord] = Field(default_factory=list)
    llm: list[LLMCallRecord] = Field(default_factory=list)
    scratchpad: str = ""
    state_after: str = ""
    said: str = ""
    timings_ms: dict[str, float] = Field(default_factory=dict)
