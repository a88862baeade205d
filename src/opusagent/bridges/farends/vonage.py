"""Vonage's side of a Voice API WebSocket, for the dialler.

Facts (https://developer.vonage.com/en/voice/voice-api/concepts/websockets, CATALOG §5.2):

- Vonage sends `{"event":"websocket:connected","content-type":"audio/l16;rate=N"}` with the NCCO
  endpoint's `headers` flattened beside those keys, then binary frames of 20 ms of 16-bit
  little-endian PCM at that rate, DTMF as `{"event":"websocket:dtmf","digit":…,"duration":…}`;
  when the call ends it closes the socket.
- The server must send binary frames of exactly 20 ms (Vonage drops others); `{"action":"clear"}`
  drops the queued audio and is answered by `{"event":"websocket:cleared"}`. Anything else is
  reported as `Heard("error", …)` and ignored.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from opusagent.audio.formats import AudioFormat, Encoding
from opusagent.bridges.farend import Clear, Heard, Play, Reaction, Send
from opusagent.bridges.session import Frame

FRAME_MS = 20
RATES = frozenset({8000, 16000, 24000})
DIGITS = frozenset("0123456789*#ABCD")
KEY_DURATION_MS = 260
CLEARED = json.dumps({"event": "websocket:cleared"})


class VonageFarEnd:
    """Vonage's side of one WebSocket call (implements `opusagent.bridges.farend.FarEnd`).

    `headers` are the NCCO endpoint's `headers` (they reach the server inside
    `websocket:connected`); with `token`, the upgrade carries `Authorization: Bearer <token>`.
    """

    def __init__(
        self,
        *,
        sample_rate: int = 16000,
        headers: Mapping[str, object] | None = None,
        token: str | None = None,
    ) -> None:
        if sample_rate not in RATES:
            raise ValueError(f"Vonage streams audio/l16 at {sorted(RATES)} Hz, not {sample_rate}")
        self._format = AudioFormat(Encoding.PCM16, sample_rate)
        self.ncco_headers = dict(headers or {})
        self._token = token

    @classmethod
    def for_url(cls, url: str, *, token: str | None = None) -> VonageFarEnd:
        """A 16 kHz far end dialling `url`."""
        return cls(token=token)

    def resumed(self) -> VonageFarEnd:
        """Vonage puts no call id on the socket: a reconnect is a new call to the server."""
        raise ValueError("Vonage sends no call id on the socket; a reconnect cannot resume")

    @property
    def audio_format(self) -> AudioFormat:
        return self._format

    @property
    def frame_ms(self) -> int:
        return FRAME_MS

    @property
    def frame_bytes(self) -> int:
        return self._format.bytes_for(FRAME_MS / 1000)

    @property
    def waits_for_ready(self) -> bool:
        return False  # audio follows websocket:connected; there is no handshake.

    def headers(self) -> Mapping[str, str]:
        return {"Authorization": f"Bearer {self._token}"} if self._token else {}

    def opening(self) -> list[Frame]:
        connected = {
            "event": "websocket:connected",
            "content-type": f"audio/l16;rate={self._format.sample_rate}",
            **self.ncco_headers,
        }
        return [json.dumps(connected)]

    def audio(self, data: bytes) -> Frame:
        return data

    def dtmf(self, digit: str) -> list[Frame]:
        if digit.upper() not in DIGITS:
            raise ValueError(f"{digit!r} is not a DTMF key (0-9, *, #, A-D)")
        message = {"event": "websocket:dtmf", "digit": digit.upper(), "duration": KEY_DURATION_MS}
        return [json.dumps(message)]

    def hangup(self) -> list[Frame]:
        return []  # Vonage just closes the socket

    def marker_played(self, token: str) -> Frame | None:
        return None  # no marks are sent to this far end

    def receive(self, frame: Frame) -> list[Reaction]:
        if isinstance(frame, bytes):
            if len(frame) != self.frame_bytes:
                return [_invalid(f"a {len(frame)}-byte audio frame; 20 ms is {self.frame_bytes}")]
            return [Play(frame)]
        try:
            message = json.loads(frame)
        except json.JSONDecodeError:
            return [_invalid(f"not JSON: {frame[:80]!r}")]
        if message == {"action": "clear"}:
            return [Clear(), Send(CLEARED)]
        return [_invalid(f"unknown message {frame[:80]!r}")]


def _invalid(problem: str) -> Heard:
    return Heard("error", f"Vonage would not play this: {problem}")
