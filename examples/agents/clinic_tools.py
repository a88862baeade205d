"""Tools of the clinic triage agent, over a demonstration appointment book."""

from __future__ import annotations

from opusagent.agent.tools import tool

_OPENINGS = {
    "monday": ["9:30 AM", "2:00 PM"],
    "tuesday": [],
    "wednesday": ["11:15 AM"],
    "thursday": ["8:45 AM", "4:30 PM"],
    "friday": ["10:00 AM"],
}


@tool
async def first_opening(day: str, reason: str) -> dict[str, object]:
    """The first free appointment on `day` for a visit about `reason`."""
    times = _OPENINGS.get(day, [])
    return {"found": bool(times), "time": times[0] if times else ""}


@tool
async def book(day: str, time: str) -> dict[str, object]:
    """Book the appointment at `time` on `day`."""
    if time not in _OPENINGS.get(day, []):
        return {"booked": False, "reference": ""}
    compact = time.replace(":", "").replace(" ", "")
    return {"booked": True, "reference": f"{day[:3].upper()} {compact}"}
