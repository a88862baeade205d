"""The dialler (`opusagent.bridges.dial`) and `opusagent dial`, against a real uvicorn server on
loopback: the Twilio Media Streams bridge with fake stages, or a scripted Twilio-speaking server
where exact timings are needed.

What a provider does (https://www.twilio.com/docs/voice/media-streams/websocket-messages): it
streams caller audio in 20 ms frames for the whole call, silence included; it plays the server's
audio in order, echoes a `mark` once the audio before it has played (at once when nothing is
buffered), and on `clear` drops what is buffered and returns every pending mark.
"""

from __future__ import annotations

import asyncio
import base64
import json
import socket
import wave
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi import FastAPI, WebSocket, WebSocketDisconnect
from typer.testing import CliRunner

from opusagent.app import create_app
from opusagent.audio.codecs import encode
from opusagent.audio.formats import Encoding
from opusagent.bridges.dial import dial, run_dial
from opusagent.bridges.farend import Ended, Heard, Reaction, Ready, Send
from opusagent.bridges.farends import TwilioMediaFarEnd
from opusagent.bridges.session import Frame
from opusagent.bridges.twilio_media import mount_twilio_media
from opusagent.call.call import Call, SendOutput
from opusagent.call.events import CallerAudio, CallEvent, CallMedia, MarkAcknowledged
from opusagent.call.stages import Samples, Speaker, TurnKind
from opusagent.cli import app as cli
from opusagent.config import Settings
from opusagent.testing import ScriptedAgent, Utterance

from .test_twilio_media import (
    FRAME_S,
    TOKEN,
    Calls,
    lines,
    make_app,
    noise,
    serving,
    twilio_far_end,
)

RATE = 8000
SILENT_FRAME = b"\xff" * 160  # 20 ms of mu-law silence
runner = CliRunner()


@dataclass
class TimedCalls(Calls):
    """Calls that also note when each event reached the server's Call."""

    events: list[tuple[float, CallEvent]] = field(default_factory=list)

    def __call__(
        self, call_id: str, media: CallMedia, send: SendOutput, params: Mapping[str, str]
    ) -> Call:
        call = super().__call__(call_id, media, send, params)
        handle, loop = call.handle, asyncio.get_running_loop()

        def timed(event: CallEvent) -> None:
            self.events.append((loop.time(), event))
            handle(event)

        call.handle = timed  # type: ignore[method-assign]
        return call

    def audio(self) -> list[tuple[float, bytes]]:
        return [(t, e.chunk.data) for t, e in self.events if isinstance(e, CallerAudio)]


# --- caller audio --------------------------------------------------------------------------


async def test_caller_frames_go_out_every_20_ms_without_drift() -> None:
    calls = TimedCalls({"": []})
    async with serving(make_app(calls)) as url, dial(twilio_far_end(), url) as call:
        await call.silence(0.4)
        await call.play(noise(0.6), RATE)
        await call.silence(0.6)

    arrivals = np.array([t for t, _ in calls.audio()])
    assert len(arrivals) >= 80
    errors = arrivals - arrivals[0] - np.arange(len(arrivals)) * FRAME_S
    drift = np.median(errors[-10:]) - np.median(errors[:10])
    assert abs(drift) < 0.005, f"the schedule drifted by {drift * 1000:.1f} ms"
    gap_error = np.abs(np.diff(arrivals) - FRAME_S)
    assert np.percentile(gap_error, 95) < 0.008
    assert all(len(data) == 160 for _, data in calls.audio())


async def test_silence_flows_between_turns() -> None:
    calls = TimedCalls({"": []})
    async with serving(make_app(calls)) as url, dial(twilio_far_end(), url) as call:
        await call.play(noise(0.3), RATE)
        assert await call.wait_until_quiet(0.5)
        await call.play(noise(0.1), RATE)

    frames = [data for _, data in calls.audio()]
    arrivals = [at for at, _ in calls.audio()]
    speech = [i for i, data in enumerate(frames) if data != SILENT_FRAME]
    first, second = speech[:15], speech[15:]
    assert first == list(range(first[0], first[0] + 15)), "0.3 s of speech, 15 frames"
    assert second == list(range(second[0], second[0] + 5)), "0.1 s of speech, 5 frames"
    between = second[0] - first[-1] - 1
    assert between >= 0.5 / FRAME_S - 1, "silent frames flowed while the caller was quiet"
    assert max(np.diff(arrivals[first[-1] : second[0] + 1])) < 0.05, "with no gap"


# --- agent audio, marks and clear ------------------------------------------------------------


async def test_marks_are_echoed_when_their_audio_has_played() -> None:
    calls = TimedCalls({"": []})
    calls.agent = ScriptedAgent(lambda turn: "Hello and welcome. Please hold the line.")
    async with serving(make_app(calls)) as url, dial(twilio_far_end(), url) as call:
        assert await call.wait_until_quiet(0.3)
        started = call.started_at

    playout_end = 0.0
    due: dict[str, tuple[float, float]] = {}  # mark: (its audio has played, it arrived)
    for at, frame in call.received:
        message = json.loads(frame)
        if message["event"] == "media":
            audio = base64.b64decode(message["media"]["payload"])
            playout_end = max(playout_end, at) + len(audio) / RATE
        elif message["event"] == "mark":
            due[message["mark"]["name"]] = (max(playout_end, at), at)
    echoed = {e.name: t - started for t, e in calls.events if isinstance(e, MarkAcknowledged)}
    assert due and set(echoed) == set(due)
    for name, (played, _) in due.items():
        assert played - 0.002 <= echoed[name] <= played + 0.04, name
    assert max(played - sent for played, sent in due.values()) > 0.03, "some marks had to wait"


@dataclass
class ScriptedTwilio:
    """A server speaking Twilio's server messages on a timetable from the stream's `start`,
    noting when each message arrives."""

    timetable: list[tuple[float, dict[str, Any]]]
    sent: dict[str, float] = field(default_factory=dict)
    received: list[tuple[float, dict[str, Any]]] = field(default_factory=list)

    async def __call__(self, websocket: WebSocket) -> None:
        await websocket.accept()
        loop = asyncio.get_running_loop()
        speaking: asyncio.Task[None] | None = None
        try:
            while True:
                message = json.loads(await websocket.receive_text())
                self.received.append((loop.time(), message))
                if message["event"] == "start":
                    speaking = asyncio.create_task(self._speak(websocket, message["streamSid"]))
        except WebSocketDisconnect:
            pass
        finally:
            if speaking is not None:
                speaking.cancel()

    async def _speak(self, websocket: WebSocket, stream_sid: str) -> None:
        loop = asyncio.get_running_loop()
        began = loop.time()
        for at, message in self.timetable:
            await asyncio.sleep(began + at - loop.time())
            self.sent[message.get("mark", {}).get("name", message["event"])] = loop.time()
            await websocket.send_text(json.dumps({**message, "streamSid": stream_sid}))

    def echoes(self) -> dict[str, float]:
        return {m["mark"]["name"]: t for t, m in self.received if m["event"] == "mark"}


def scripted_app(server: ScriptedTwilio) -> FastAPI:
    app = FastAPI()
    app.add_api_websocket_route("/twilio/media", server)
    return app


def media(seconds: float) -> dict[str, Any]:
    tone = (6000 * np.sin(2 * np.pi * 440 * np.arange(round(seconds * RATE)) / RATE)).astype(
        np.int16
    )
    payload = base64.b64encode(encode(tone, Encoding.MULAW)).decode()
    return {"event": "media", "media": {"payload": payload}}


def mark(name: str) -> dict[str, Any]:
    return {"event": "mark", "mark": {"name": name}}


async def test_a_mark_waits_for_long_audio_and_is_echoed_at_once_when_nothing_plays() -> None:
    server = ScriptedTwilio([(0.0, media(0.6)), (0.0, mark("a")), (0.8, mark("b"))])
    async with serving(scripted_app(server)) as url, dial(twilio_far_end(), url) as call:
        await asyncio.sleep(1.0)
        assert call.result().agent_spans
    echoes = server.echoes()
    assert 0.6 <= echoes["a"] - server.sent["a"] < 0.64
    assert echoes["b"] - server.sent["b"] < 0.02


async def test_clear_drops_queued_audio_and_returns_pending_marks_at_once() -> None:
    server = ScriptedTwilio([(0.0, media(1.0)), (0.0, mark("a")), (0.3, {"event": "clear"})])
    async with serving(scripted_app(server)) as url, dial(twilio_far_end(), url) as call:
        await asyncio.sleep(0.6)
        result = call.result()
    echoes = server.echoes()
    assert 0.0 <= echoes["a"] - server.sent["clear"] < 0.02
    [(start, end)] = result.agent_spans
    assert end - start == pytest.approx(0.3, abs=0.02)
    played = np.abs(result.agent_audio.astype(np.int32))
    cut = round(end * 16000) + 16  # past the resampler's 1 ms ring
    assert played[round(start * 16000) : cut - 32].mean() > 1000
    assert not played[cut:].any(), "nothing played after the clear"


# --- provider handshakes: the reactions Twilio does not use ----------------------------------


class HandshakeFarEnd(TwilioMediaFarEnd):
    """Twilio's messages plus a handshake: audio waits for `ready`; `ping` wants a `pong`;
    `note` is shown to a person; `bye` ends the call."""

    @property
    def waits_for_ready(self) -> bool:
        return True

    def receive(self, frame: Frame) -> list[Reaction]:
        event = json.loads(frame)["event"]
        reactions: dict[str, list[Reaction]] = {
            "ready": [Ready()],
            "ping": [Send('{"event":"pong"}')],
            "note": [Heard("note", "hello there")],
            "bye": [Ended("server said bye")],
        }
        return reactions.get(event) or super().receive(frame)


async def test_caller_audio_waits_for_ready() -> None:
    server = ScriptedTwilio([(0.3, {"event": "ready"})])
    async with serving(scripted_app(server)) as url, dial(HandshakeFarEnd(), url) as call:
        await call.silence(0.1)
    first_media = min(t for t, m in server.received if m["event"] == "media")
    assert first_media >= server.sent["ready"]


async def test_send_heard_and_ended_reactions() -> None:
    timetable = [(0.0, {"event": "ready"}), (0.1, {"event": "ping"}), (0.2, {"event": "note"})]
    server = ScriptedTwilio([*timetable, (0.3, {"event": "bye"})])
    async with serving(scripted_app(server)) as url, dial(HandshakeFarEnd(), url) as call:
        assert await asyncio.wait_for(call.wait_ended(), 3.0) == "server said bye"
    assert [m["event"] for _, m in server.received].count("pong") == 1
    [(at, heard)] = call.heard
    assert heard == Heard("note", "hello there")
    assert at == pytest.approx(server.sent["note"] - call.started_at, abs=0.02)
    assert "stop" not in [m["event"] for _, m in server.received], "the server ended it"


# --- whole calls: run_dial and the command ----------------------------------------------------


def write_noise_wav(path: Path, seconds: float, rate: int, channels: int = 1) -> Path:
    rng = np.random.default_rng(3)
    samples = rng.integers(-8000, 8000, (round(seconds * rate), channels)).astype("<i2")
    with wave.open(str(path), "wb") as out:
        out.setnchannels(channels)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(samples.tobytes())
    return path


def voiced(samples: Samples, rate: int = 16000) -> float:
    """Seconds of samples that are not silence."""
    return float(np.count_nonzero(np.abs(samples.astype(np.int32)) > 100)) / rate


async def test_run_dial_says_the_wav_presses_keys_and_records_the_answers(tmp_path: Path) -> None:
    calls = Calls({"": [Utterance(0.3, 1.3, "lost card")]})
    wav = write_noise_wav(tmp_path / "caller.wav", 0.5, 16000)
    async with serving(make_app(calls)) as url:
        result = await run_dial(twilio_far_end(), url, wav, dtmf="12#", quiet_s=0.4)
    call = calls.made["CA0001"]
    assert await call.wait_closed() == "stop"

    assert lines(call, Speaker.AGENT) == ["Hello.", "You said lost card.", "You said 12."]
    kinds = [TurnKind.START, TurnKind.SPEECH, TurnKind.DTMF, TurnKind.HANGUP]
    assert [t.kind for t in calls.agent.turns] == kinds
    [turn] = result.turns
    assert turn.caller_end - turn.caller_start == pytest.approx(0.5, abs=0.03)
    assert turn.latency is not None and 0.25 <= turn.latency < 0.8  # 300 ms end of turn
    assert [d for _, d in result.dtmf] == ["1", "2", "#"]
    assert result.dtmf[0][0] > turn.caller_end
    utterances = result.agent_utterances(gap_s=0.1)  # a frame may come a little late
    durations = [end - start for start, end in utterances]
    assert durations == pytest.approx([0.1, 0.4, 0.3], abs=0.03)  # 1, 4 and 3 words
    assert voiced(result.agent_audio) == pytest.approx(0.8, abs=0.05)
    assert utterances[1][0] == pytest.approx(turn.caller_end + turn.latency, abs=0.02)
    spoke = np.flatnonzero(np.abs(result.caller_audio.astype(np.int32)) > 100) / 16000
    assert voiced(result.caller_audio) == pytest.approx(0.5, abs=0.03)
    assert spoke[0] == pytest.approx(turn.caller_start, abs=0.05)
    assert spoke[-1] == pytest.approx(turn.caller_end, abs=0.05)
    assert result.received_count > 0 and result.heard == []


def invoke(*args: str) -> Any:
    return runner.invoke(cli, ["dial", *args], env={"COLUMNS": "160"})


async def test_the_command_writes_the_agents_wav_and_prints_the_call(tmp_path: Path) -> None:
    calls = Calls({"": [Utterance(0.3, 1.3, "lost card")]})
    wav = write_noise_wav(tmp_path / "caller.wav", 0.5, 22050, channels=2)
    out = tmp_path / "agent.wav"
    async with serving(make_app(calls)) as url:
        args = ["twilio", url, "--wav", str(wav), "--dtmf", "7#", "--out", str(out)]
        result = await asyncio.to_thread(invoke, *args, "--no-transcribe", "--quiet", "0.4")

    assert result.exit_code == 0, result.output + result.stderr
    with wave.open(str(out)) as written:
        assert (written.getnchannels(), written.getframerate()) == (1, 16000)
        agent = np.frombuffer(written.readframes(written.getnframes()), np.int16)
    assert voiced(agent) == pytest.approx(0.1 + 0.4 + 0.3, abs=0.05)  # 1, 4 and 3 words
    output = result.output
    assert "turn 1, until" in output and "agent answered" in output
    assert "key 7" in output and "key #" in output
    assert "speaks, until" in output
    assert "Call ended: " in output and str(out) in output


def test_the_command_names_the_known_bridges(tmp_path: Path) -> None:
    wav = write_noise_wav(tmp_path / "caller.wav", 0.1, 8000)
    result = invoke("nope", "ws://127.0.0.1:9/x", "--wav", str(wav))
    assert result.exit_code == 1
    assert (
        "unknown bridge 'nope'; known bridges: acs, audiocodes, browser, telnyx, twilio, vonage"
        in result.stderr.replace("\n", " ")
    )


def test_the_command_reports_a_server_it_cannot_reach(tmp_path: Path) -> None:
    wav = write_noise_wav(tmp_path / "caller.wav", 0.1, 8000)
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        url = f"ws://127.0.0.1:{unused.getsockname()[1]}/twilio/media"
    result = invoke("twilio", url, "--wav", str(wav), "--no-transcribe")
    assert result.exit_code == 1
    assert f"cannot reach {url}" in result.stderr


@pytest.mark.parametrize(("token", "exit_code"), [(TOKEN, 0), ("wrong_token", 1)])
async def test_the_command_signs_the_stream_with_the_token(
    tmp_path: Path, token: str, exit_code: int
) -> None:
    calls = Calls({"": []})
    app = create_app(Settings(), loaders={}, bridges=False)
    mount_twilio_media(app, calls, auth_token=TOKEN, public_url=None)
    wav = write_noise_wav(tmp_path / "caller.wav", 0.1, 8000)
    async with serving(app) as url:
        args = [url, "--wav", str(wav), "--turns", "0", "--out", str(tmp_path / "a.wav")]
        result = await asyncio.to_thread(
            invoke, "twilio", *args, "--token", token, "--no-transcribe", "--quiet", "0.2"
        )
    assert result.exit_code == exit_code, result.output + result.stderr
    assert ("403" in result.stderr) is (exit_code == 1)
    assert bool(calls.made) is (exit_code == 0)


@pytest.mark.slow
async def test_the_command_transcribes_what_the_agent_said(tmp_path: Path) -> None:
    pytest.importorskip("piper", reason="the piper extra is not installed")
    from opusagent.voice.tts.piper import PiperTTS
    from opusagent.voice.workers import ModelWorkers

    workers = ModelWorkers(1)
    tts = PiperTTS(workers, cache=tmp_path / "tts")
    await asyncio.to_thread(tts.load)
    calls = Calls({"": []}, ScriptedAgent(lambda turn: "Hello, how can I help you today?"))
    calls.tts = lambda: tts
    wav = write_noise_wav(tmp_path / "caller.wav", 0.1, 8000)
    try:
        async with serving(make_app(calls)) as url:
            args = ["twilio", url, "--wav", str(wav), "--turns", "0", "--quiet", "1.0"]
            result = await asyncio.to_thread(invoke, *args, "--out", str(tmp_path / "a.wav"))
    finally:
        workers.close()
    assert result.exit_code == 0, result.output + result.stderr
    assert "help you today" in result.output
