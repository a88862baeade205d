"""The opening_hours agent's tool."""

from opusagent.agent.tools.registry import tool


@tool
def opening_hours(day: str) -> dict[str, object]:
    """Opening hours of the branch on one day."""
    return {"day": day, "open": "09:00", "close": "13:00" if day == "saturday" else "17:00"}
