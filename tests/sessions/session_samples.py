"""Session records for the session store tests."""

from __future__ import annotations

from datetime import UTC, datetime

from opusagent.agent.fsa.state import AgentState, Line
from opusagent.sessions import SessionRecord


def make_record(call_id: str = "CA1", *, state: str = "greeting", turn: int = 0) -> SessionRecord:
    """A record with something in every part of the agent state."""
    now = datetime(2025, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)
    return SessionRecord(
        call_id=call_id,
        agent="bank_card",
        bridge="twilio",
        media={"inbound": "mulaw/8000", "outbound": "mulaw/8000"},
        state=AgentState(
            agent="bank_card",
            state=state,
            slots={"card_last4": "1234", "amount": 12.5, "confirmed": True, "none": None},
            tools={"lookup": {"ok": True, "cards": [1, 2]}},
            context={"caller": "+15550100"},
            turn=turn,
            started=True,
            path=["greeting", state],
            visits={"greeting": 1, state: 1},
            scratchpad=["asked for the card"],
            history=[
                Line(speaker="agent", text="Hello, how can I help?"),
                Line(speaker="caller", text="My card is lost", interrupted=True),
            ],
            last_said="Hello, how can I help?",
        ),
        heard_s=1.25,
        created_at=now,
        updated_at=now,
    )
