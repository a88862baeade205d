"""Tools of the appointment reminder agent."""

from __future__ import annotations

from typing import Literal

from opusagent.agent.tools import ToolContext, tool


@tool
async def record_answer(
    answer: Literal["confirmed", "cancelled"], context: ToolContext
) -> dict[str, object]:
    """Record the patient's answer against the appointment the call was placed for."""
    return {
        "recorded": True,
        "answer": answer,
        "appointment": context.context.get("appointment_id", ""),
    }
