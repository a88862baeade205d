"""The web page's side of the browser channel (`opusagent.bridges.browser`), for the dialler.

It sends `start` with its microphone rate, raw PCM16 frames, `dtmf`, `mark` echoes and
`hangup`; it plays binary frames, and turns every JSON event a page would show (transcripts,
agent text and state, latency, what the agent did, errors) into `Heard`. Server messages are
checked against the protocol's models: one that breaks the protocol (a missing or extra field,
an unknown type, a `started` at another rate than asked) is reported as `Heard("error", …)` with
the frame in `detail`, and otherwise ignored, as a page would log it and go on.
"""

from __future__ import annotations

from collections.abc import Mapping

from pydantic import ValidationError

from opusagent.audio.formats import AudioFormat, Encoding
from opusagent.bridges.browser import (
    SERVER_MESSAGE,
    AgentTextOut,
    ClearOut,
    DtmfMessage,
    DtmfOut,
    ErrorOut,
    HangupMessage,
    HangupOut,
    LatencyOut,
    MarkMessage,
    MarkOut,
    ReplyEndOut,
    ServerMessage,
    SpeechOut,
    Started,
    StartMessage,
    StateOut,
    TranscriptOut,
    TransferOut,
)
from opusagent.bridges.farend import (
    Clear,
    Ended,
    Heard,
    Play,
    PlayMarker,
    Reaction,
    Ready,
)
from opusagent.bridges.session import Frame


class BrowserFarEnd:
    """One page on `/browser`: a microphone at `sample_rate`, speakers at the same rate."""

    def __init__(
        self,
        sample_rate: int = 48000,
        *,
        call_id: str | None = None,
        agent: str | None = None,
        params: Mapping[str, str] | None = None,
        frame_ms: int = 20,
    ) -> None:
        self._format = AudioFormat(Encoding.PCM16, sample_rate)
        self._frame_ms = frame_ms
        self._start = StartMessage(
            type="start",
            sample_rate=sample_rate,
            call_id=call_id,
            agent=agent,
            params=dict(params or {}),
        )
        self.call_id: str | None = None
        """The server's name for the call, once `started` has come."""

    def resumed(self) -> BrowserFarEnd:
        """The page reconnecting with the call id the server gave it."""
        call_id = self.call_id or self._start.call_id
        if call_id is None:
            raise ValueError("the call never started, so there is no call id to resume")
        start = self._start
        return BrowserFarEnd(
            start.sample_rate,
            call_id=call_id,
            agent=start.agent,
            params=start.params,
            frame_ms=self._frame_ms,
        )

    @property
    def audio_format(self) -> AudioFormat:
        return self._format

    @property
    def frame_ms(self) -> int:
        return self._frame_ms

    @property
    def waits_for_ready(self) -> bool:
        return True  # audio before `started` is an error

    def headers(self) -> Mapping[str, str]:
        return {}

    def opening(self) -> list[Frame]:
        return [self._start.model_dump_json(by_alias=True, exclude_none=True)]

    def audio(self, data: bytes) -> Frame:
        return data

    def dtmf(self, digit: str) -> list[Frame]:
        return [DtmfMessage(type="dtmf", digit=digit).model_dump_json()]

    def hangup(self) -> list[Frame]:
        return [HangupMessage(type="hangup").model_dump_json()]

    def marker_played(self, token: str) -> Frame | None:
        return MarkMessage(type="mark", name=token).model_dump_json()

    @classmethod
    def for_url(cls, url: str, *, token: str | None = None) -> BrowserFarEnd:
        """A page at 48 kHz (the usual AudioContext rate) dialling `url`."""
        if token is not None:
            raise ValueError("the browser channel has no authentication; drop the token")
        return cls()

    def receive(self, frame: Frame) -> list[Reaction]:
        if isinstance(frame, bytes):
            return [Play(frame)]
        try:
            message = SERVER_MESSAGE.validate_json(frame)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()
            )
            return [_invalid(frame, problems)]
        return self._react(message, frame)

    def _react(self, message: ServerMessage, frame: str) -> list[Reaction]:
        match message:
            case Started(call_id=call_id, sample_rate=rate):
                if rate != self._format.sample_rate:
                    return [_invalid(frame, f"{rate} Hz, not {self._format.sample_rate} Hz")]
                self.call_id = call_id
                return [Ready()]
            case MarkOut(name=name):
                return [PlayMarker(name)]
            case ClearOut(generation=generation):
                return [Clear(), Heard("clear", "", {"generation": generation})]
            case SpeechOut(started=started):
                return [Heard("speech", "started" if started else "stopped")]
            case TranscriptOut(text=text, final=final, confidence=confidence):
                return [Heard("transcript", text, {"final": final, "confidence": confidence})]
            case AgentTextOut(generation=generation, text=text):
                return [Heard("agent_text", text, {"generation": generation})]
            case StateOut(state=state, detail=detail):
                return [Heard("state", state, detail)]
            case LatencyOut(generation=generation, seconds=seconds):
                detail = {"generation": generation, "seconds": seconds}
                return [Heard("latency", f"{seconds:.3f}", detail)]
            case ReplyEndOut(generation=generation):
                return [Heard("reply_end", "", {"generation": generation})]
            case TransferOut(target=target, reason=reason):
                return [Heard("transfer", target, {"reason": reason})]
            case DtmfOut(digits=digits):
                return [Heard("dtmf", digits)]
            case HangupOut(reason=reason):
                return [Heard("hangup", reason), Ended(reason)]
            case ErrorOut(message=text):
                return [Heard("error", text)]


def _invalid(frame: str, problem: str) -> Heard:
    return Heard("error", f"the server sent an invalid message: {problem}", {"frame": frame})
