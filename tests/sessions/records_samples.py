"""Call records for the records tests: one whole call, and variations of it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from opusagent.sessions.records import CallRecordIn, TranscriptLine

T0 = datetime(2025, 3, 4, 10, 0, tzinfo=UTC)


def record(call_id: str = "CA1", *, at_minute: int = 0, **changes: Any) -> CallRecordIn:
    """A finished call started `at_minute` minutes after `T0`, lasting 42.5 s."""
    started = T0 + timedelta(minutes=at_minute)
    fields: dict[str, Any] = {
        "call_id": call_id,
        "agent": "bank_card",
        "bridge": "twilio_media",
        "caller": "+15550123",
        "called": "+15550100",
        "started_at": started,
        "ended_at": started + timedelta(seconds=42.5),
        "end_reason": "caller_hung_up",
        "outcome": "completed",
        "final_state": "goodbye",
        "path": ["greeting", "verify", "block_card", "goodbye"],
        "transcript": [
            TranscriptLine(
                speaker="agent",
                text="Hello, how can I help you today?",
                heard="Hello, how can",
                interrupted=True,
                at_s=0.4,
            ),
            TranscriptLine(speaker="caller", text="my card is lost", overlapped=True, at_s=1.9),
            TranscriptLine(speaker="caller", text="", dtmf="1234#", at_s=8.0),
            TranscriptLine(speaker="agent", text="Your card is blocked.", at_s=9.2),
        ],
        "audit": [{"turn": 1, "state_before": "greeting", "decision": "to verify"}],
        "tool_calls": [{"name": "block_card", "args": {"last4": "1234"}, "result": "ok"}],
        "quality": {"caller_rms_dbfs": -23.5, "clipping": 0.0},
        "turn_latencies_s": [0.61, 0.48],
        "recording_path": f"{call_id}.wav",
    }
    fields.update(changes)
    return CallRecordIn.model_validate(fields)
