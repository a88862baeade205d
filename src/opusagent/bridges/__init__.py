"""Bridges: one module per provider protocol, translating its messages to and from a Call.

`session` holds the per-connection runner every WebSocket bridge shares; `twilio_media` speaks
Twilio Media Streams.
"""

from opusagent.bridges.session import CallFactory, run_session
from opusagent.bridges.twilio_media import mount_twilio_media

__all__ = ["CallFactory", "mount_twilio_media", "run_session"]
