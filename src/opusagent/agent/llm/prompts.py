"""Prompt pieces every LLM role shares: who the agent is, and the conversation so far."""

from __future__ import annotations

from collections.abc import Sequence

from opusagent.agent.fsa.spec import AgentSpec
from opusagent.agent.fsa.state import Line
from opusagent.agent.llm.chat import Message

HISTORY_LINES = 6
"""Lines of the conversation a model sees (the most recent ones)."""


def describe_agent(spec: AgentSpec) -> str:
    about = f": {spec.description.rstrip('.')}" if spec.description else ""
    return f"You are the phone agent {spec.name}{about}. Language: {spec.language}."


def conversation(history: Sequence[Line], latest: str = "") -> list[Message]:
    """The last lines of the conversation as the caller experienced it, ending with the
    caller's `latest` words when the history does not hold them yet."""
    messages: list[Message] = []
    for line in history[-HISTORY_LINES:]:
        text = line.text or (f"(keyed {line.dtmf})" if line.dtmf else "")
        if text:
            messages.append(Message("user" if line.speaker == "caller" else "assistant", text))
    latest = latest.strip()
    if latest and (not messages or messages[-1] != Message("user", latest)):
        messages.append(Message("user", latest))
    return messages
