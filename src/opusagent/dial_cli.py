"""`opusagent dial`: call a running server as a provider would, and show what was said."""

from __future__ import annotations

import asyncio
import re
import wave
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, NoReturn

import typer
from rich.console import Console
from rich.table import Table
from websockets.exceptions import ConnectionClosed, InvalidHandshake

from opusagent.bridges.dial import RECORD_RATE, DialError, DialResult, call_script, run_script
from opusagent.bridges.farends import FAR_ENDS, UnknownBridgeError, far_end_for
from opusagent.bridges.farends.twilio_relay import converse, signature_headers
from opusagent.call.stages import Samples
from opusagent.config import ConfigError, Settings, load_settings
from opusagent.voice.engines import EngineChoiceError, build_stt
from opusagent.voice.offline import Segment, find_utterances, read_wav, resample, transcribe
from opusagent.voice.stt import STTUnavailableError
from opusagent.voice.stt.pocketsphinx import PocketsphinxSTT
from opusagent.voice.tts import EngineUnavailableError
from opusagent.voice.vad import SileroModel, SileroVAD
from opusagent.voice.workers import ModelWorkers

DTMF_KEYS = re.compile(r"^[0-9*#A-Da-d]+$")
RELAY = "relay"
"""Twilio ConversationRelay: text both ways, so the dialler recognises the WAV itself."""


@dataclass(frozen=True, slots=True)
class AgentUtterance:
    """One stretch of agent speech, in seconds from when the call connected."""

    start: float
    end: float
    text: str | None
    """What the recogniser heard; None when not transcribed."""


def dial_command(
    bridge: Annotated[
        str,
        typer.Argument(help=f"The provider to speak as: {', '.join(sorted([*FAR_ENDS, RELAY]))}."),
    ],
    url: Annotated[
        str,
        typer.Argument(help="The server's WebSocket URL, e.g. ws://localhost:8000/twilio/media."),
    ],
    wav: Annotated[
        Path | None,
        typer.Option(
            help="What the caller says: a 16-bit PCM WAV, any rate, any channels.",
            exists=True,
            dir_okay=False,
            readable=True,
        ),
    ] = None,
    say: Annotated[
        list[str] | None,
        typer.Option(help="relay only: what the caller says, as text, in order (repeatable)."),
    ] = None,
    dtmf: Annotated[
        str | None, typer.Option(help="Keys to press after the last turn, e.g. 12#.")
    ] = None,
    turns: Annotated[int, typer.Option(help="How many times to say the WAV.", min=0)] = 1,
    out: Annotated[
        Path, typer.Option(help="Where to write the agent's audio (16 kHz mono WAV).")
    ] = Path("agent.wav"),
    token: Annotated[
        str | None,
        typer.Option(help="The provider's credential (Twilio: the auth token that signs)."),
    ] = None,
    transcribe_agent: Annotated[
        bool,
        typer.Option(
            "--transcribe/--no-transcribe",
            help="Transcribe the agent's utterances with the offline recogniser.",
        ),
    ] = True,
    quiet: Annotated[
        float,
        typer.Option(help="Seconds of silence after which the agent is done talking.", min=0.1),
    ] = 1.0,
    drop_after: Annotated[
        float | None,
        typer.Option(
            help="Drop the line this many seconds into the call (no hang-up message), as a "
            "lost connection would.",
            min=0.0,
        ),
    ] = None,
    resume: Annotated[
        str | None,
        typer.Option(
            help="After --drop-after, reconnect the same call to this URL (another server, or "
            "the same one) and carry on.",
        ),
    ] = None,
) -> None:
    """Call a running server as BRIDGE's provider would: say the WAV, press keys, hang up.

    Caller audio streams in real time (silence between turns); the agent's audio is played on a
    real-time clock, with playback acknowledgements and clears honoured as the provider does.
    Writes what the agent said to a WAV file and prints the call with its timings.
    """
    if dtmf is not None and not DTMF_KEYS.match(dtmf):
        _fail(f"--dtmf {dtmf!r}: keys are 0-9, *, #, A-D")
    if bridge == RELAY and say:
        _dial_relay(url, list(say), dtmf=dtmf, turns=turns, token=token)
        return
    if wav is None:
        _fail("--wav is needed (or, for relay, --say)")
    try:
        samples, rate = read_wav(wav)
    except (OSError, EOFError, ValueError, wave.Error) as exc:
        _fail(f"cannot read {wav}: {exc}")
    if bridge == RELAY:
        said = [u.text for u in _recognised(samples, rate) if u.text]
        if not said:
            _fail(f"the offline recogniser heard no words in {wav}")
        _dial_relay(url, said, dtmf=dtmf, turns=turns, token=token)
        return
    try:
        far_end = far_end_for(bridge, url, token=token)
    except UnknownBridgeError as exc:
        _fail(f"{exc}, {RELAY}")
    if resume is not None and drop_after is None:
        _fail("--resume needs --drop-after (when to drop the line)")
    steps = call_script(samples, rate, turns=turns, dtmf=dtmf, quiet_s=quiet)
    try:
        legs = asyncio.run(
            run_script(far_end, url, steps, drop_after=drop_after, resume_url=resume)
        )
    except (DialError, ValueError) as exc:
        _fail(str(exc))
    console = Console()
    for number, result in enumerate(legs):
        path = out if number == 0 else out.with_stem(f"{out.stem}.resumed")
        result.save_wav(path)
        utterances = _transcribed(result) if transcribe_agent else _spans(result)
        title = "The call" if number == 0 else f"The call, resumed at {resume}"
        console.print(_transcript(result, utterances, title))
        console.print(
            f"Call ended: {result.end_reason}. Wrote {path}: "
            f"{len(result.agent_audio) / RECORD_RATE:.2f} s at {RECORD_RATE} Hz. "
            f"{result.received_count} messages received.",
            highlight=False,
        )


def _dial_relay(
    url: str, said: list[str], *, dtmf: str | None, turns: int, token: str | None
) -> None:
    """ConversationRelay is text: each utterance (recognised from the WAV here, as Twilio
    would, or given with --say) is sent as a prompt."""
    headers = signature_headers(url, token) if token else None
    try:
        session = asyncio.run(converse(url, said * turns, dtmf=dtmf, headers=headers))
    except (OSError, InvalidHandshake, ConnectionClosed) as exc:
        _fail(f"cannot dial {url}: {exc}")
    table = Table(title="The conversation (ConversationRelay)")
    table.add_column("Time (s)", justify="right")
    table.add_column("Who")
    table.add_column("What")
    for line in session.lines:
        what = line.text or (f"key {line.dtmf}" if line.dtmf else "")
        if line.latency_s is not None:
            what += f"  [{line.latency_s * 1000:.0f} ms]"
        table.add_row(
            f"{line.at_s:.2f}", line.speaker, what + (" (cut)" if line.interrupted else "")
        )
    console = Console()
    console.print(table)
    ending = f"handoff {session.handoff_data}" if session.handoff_data else "caller hung up"
    console.print(f"Session ended: {ending}.", highlight=False)
    for error in session.errors:
        console.print(f"protocol error: {error}", style="red", markup=False)


def _spans(result: DialResult) -> list[AgentUtterance]:
    return [AgentUtterance(start, end, None) for start, end in result.agent_utterances()]


def _transcribed(result: DialResult) -> list[AgentUtterance]:
    """The agent's utterances as the offline VAD finds them, with the recogniser's words."""
    return _recognised(result.agent_audio, RECORD_RATE)


def _recognised(samples: Samples, rate: int) -> list[AgentUtterance]:
    """The utterances in `samples` as the offline VAD finds them, with the recogniser's words."""
    try:
        settings = load_settings()
    except ConfigError as exc:
        _fail(str(exc))
    vad = SileroVAD(SileroModel(settings.vad_threads))
    audio = resample(samples, rate, vad.sample_rate)
    segments = find_utterances(audio, vad, settings.turn)
    if not segments:
        return []
    try:
        texts = asyncio.run(_recognise(settings, audio, vad.sample_rate, segments))
    except (EngineChoiceError, EngineUnavailableError, STTUnavailableError) as exc:
        _fail(str(exc))
    return [AgentUtterance(s.start, s.end, text) for s, text in zip(segments, texts, strict=True)]


async def _recognise(
    settings: Settings, audio: Samples, rate: int, segments: list[Segment]
) -> list[str]:
    workers = ModelWorkers(1)
    stt = build_stt(settings, workers)
    try:
        await asyncio.to_thread(stt.load)
        heard = resample(audio, rate, stt.input_format.sample_rate)
        return [line.text for line in await transcribe(heard, stt, segments)]
    finally:
        if isinstance(stt, PocketsphinxSTT):
            stt.close()
        workers.close()


def _transcript(
    result: DialResult, utterances: list[AgentUtterance], title: str = "The call"
) -> Table:
    rows: list[tuple[float, str, str]] = []
    for number, turn in enumerate(result.turns, 1):
        answer = (
            "no answer"
            if turn.latency is None
            else f"agent answered {turn.latency * 1000:.0f} ms after"
        )
        rows.append(
            (turn.caller_start, "caller", f"turn {number}, until {turn.caller_end:.2f} s; {answer}")
        )
    rows.extend((at, "caller", f"key {digit}") for at, digit in result.dtmf)
    for utterance in utterances:
        said = f"“{utterance.text}”" if utterance.text is not None else "speaks"
        rows.append((utterance.start, "agent", f"{said}, until {utterance.end:.2f} s"))
    rows.extend((at, "heard", f"{heard.kind}: {heard.text}") for at, heard in result.heard)
    table = Table(title=title)
    table.add_column("Time (s)", justify="right")
    table.add_column("Who")
    table.add_column("What")
    for at, who, what in sorted(rows, key=lambda row: row[0]):
        table.add_row(f"{at:.2f}", who, what)
    return table


def _fail(message: str) -> NoReturn:
    Console(stderr=True).print(
        f"Error: {message}", style="red", markup=False, highlight=False, soft_wrap=True
    )
    raise typer.Exit(1)
