"""Azure Communication Services' side of a bidirectional media stream, for the dialler.

Facts (https://learn.microsoft.com/azure/communication-services/how-tos/call-automation/audio-streaming-quickstart
and the Call Automation SDKs' streaming models, CATALOG §4):

- ACS sends `AudioMetadata` first (`subscriptionId`, encoding `PCM`, `sampleRate` 16000 or
  24000, `channels` 1, `length` = bytes per packet, 640 for 20 ms at 16 kHz), then `AudioData`
  every 20 ms (base64 PCM16LE `data`, ISO 8601 `timestamp`, `participantRawID`, `silent` on
  silence buffers) and `DtmfData` (`data`: the key). It has no stop message: when the call ends,
  it closes the socket.
- The server may send `{"kind":"AudioData","audioData":{"data":…}}` (PCM16LE at the session
  rate) and `{"kind":"StopAudio","stopAudio":{}}`; ACS reads keys case-insensitively. A message
  of another kind, or audio that is not whole samples, is reported as `Heard("error", …)` and
  ignored.

Options let tests speak the .NET SDK's PascalCase (`Kind`, `AudioData`, `Data`, …) and send
silence buffers without `data` (whether ACS includes it is not documented).
"""

from __future__ import annotations

import base64
import binascii
import itertools
import json
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from opusagent.audio.formats import AudioFormat, Encoding
from opusagent.bridges.farend import Clear, Heard, Play, Reaction
from opusagent.bridges.json_frames import json_object
from opusagent.bridges.session import Frame, InvalidMessageError

FRAME_MS = 20
RATES = frozenset({16000, 24000})
DIGITS = frozenset("0123456789*#ABCD")


class AcsFarEnd:
    """ACS's side of one media stream (implements `opusagent.bridges.farend.FarEnd`).

    With `token`, the upgrade carries `Authorization: Bearer <token>`.
    """

    def __init__(
        self,
        *,
        sample_rate: int = 16000,
        subscription_id: str | None = None,
        participant: str = "4:+15550100",
        token: str | None = None,
        pascal_case: bool = False,
        silent_without_data: bool = False,
    ) -> None:
        if sample_rate not in RATES:
            raise ValueError(f"ACS streams PCM at {sorted(RATES)} Hz, not {sample_rate}")
        self.subscription_id = subscription_id or str(uuid.uuid4())
        self.participant = participant
        self._format = AudioFormat(Encoding.PCM16, sample_rate)
        self._token = token
        self._pascal_case = pascal_case
        self._silent_without_data = silent_without_data
        self._started = datetime.now(UTC)
        self._packets = itertools.count()

    @classmethod
    def for_url(cls, url: str, *, token: str | None = None) -> AcsFarEnd:
        """A far end for `url` (call parameters go in its query string) at 16 kHz."""
        return cls(token=token)

    def resumed(self) -> AcsFarEnd:
        """A new media socket for the same subscription."""
        return AcsFarEnd(
            sample_rate=self._format.sample_rate,
            subscription_id=self.subscription_id,
            participant=self.participant,
            token=self._token,
            pascal_case=self._pascal_case,
            silent_without_data=self._silent_without_data,
        )

    @property
    def audio_format(self) -> AudioFormat:
        return self._format

    @property
    def frame_ms(self) -> int:
        return FRAME_MS

    @property
    def waits_for_ready(self) -> bool:
        return False  # ACS streams right after AudioMetadata; there is no handshake.

    def headers(self) -> Mapping[str, str]:
        return {"Authorization": f"Bearer {self._token}"} if self._token else {}

    def opening(self) -> list[Frame]:
        metadata = {
            "subscriptionId": self.subscription_id,
            "encoding": "PCM",
            "sampleRate": self._format.sample_rate,
            "channels": 1,
            "length": self._format.bytes_for(FRAME_MS / 1000),
        }
        return [self._message("AudioMetadata", "audioMetadata", metadata)]

    def audio(self, data: bytes) -> Frame:
        at = self._started + timedelta(milliseconds=next(self._packets) * FRAME_MS)
        silent = not any(data)
        body: dict[str, Any] = {
            "data": base64.b64encode(data).decode(),
            "timestamp": at.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "participantRawID": self.participant,
            "silent": silent,
        }
        if silent and self._silent_without_data:
            del body["data"]
        return self._message("AudioData", "audioData", body)

    def dtmf(self, digit: str) -> list[Frame]:
        if digit.upper() not in DIGITS:
            raise ValueError(f"{digit!r} is not a DTMF key (0-9, *, #, A-D)")
        return [self._message("DtmfData", "dtmfData", {"data": digit.upper()})]

    def hangup(self) -> list[Frame]:
        return []  # ACS just closes the socket

    def marker_played(self, token: str) -> Frame | None:
        return None  # no playback marks on ACS media streaming

    def receive(self, frame: Frame) -> list[Reaction]:
        if isinstance(frame, bytes):
            return [_invalid("a binary frame (ACS takes JSON text frames)")]
        try:
            raw = json_object(frame)
        except InvalidMessageError as exc:
            return [_invalid(str(exc))]
        message = {str(key).lower(): value for key, value in raw.items()}
        kind = message.get("kind")
        if str(kind).lower() == "audiodata":
            return [self._play(message.get("audiodata"))]
        if str(kind).lower() == "stopaudio":
            return [Clear()]
        return [_invalid(f"unknown kind {kind!r}")]

    def _play(self, body: object) -> Reaction:
        data = body.get("data") if isinstance(body, dict) else None
        if not isinstance(data, str):
            return _invalid(f"AudioData without data: {body!r}"[:120])
        try:
            audio = base64.b64decode(data, validate=True)
        except binascii.Error:
            return _invalid("AudioData data is not base64")
        if not audio or len(audio) % self._format.frame_bytes:
            return _invalid(f"AudioData of {len(audio)} bytes is not whole PCM16 samples")
        return Play(audio)

    def _message(self, kind: str, key: str, body: Mapping[str, Any]) -> str:
        if self._pascal_case:
            key = key[0].upper() + key[1:]
            body = {name[0].upper() + name[1:]: value for name, value in body.items()}
            return json.dumps({"Kind": kind, key: body})
        return json.dumps({"kind": kind, key: body})


def _invalid(problem: str) -> Heard:
    return Heard("error", f"ACS would not play this: {problem}")
