from __future__ import annotations

import wave
from pathlib import Path

import numpy as np

from opusagent.audio.recorder import StereoRecorder
from opusagent.call.stages import Samples

RATE = 8000


def read_stereo(path: Path) -> tuple[Samples, Samples]:
    with wave.open(str(path), "rb") as wav:
        assert (wav.getnchannels(), wav.getsampwidth(), wav.getframerate()) == (2, 2, RATE)
        data = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2").reshape(-1, 2)
    return data[:, 0], data[:, 1]


def feed_caller(
    recorder: StereoRecorder, seconds: float, agent_at: float | None = None, sent_at: float = 0.0
) -> None:
    """Caller audio (value 100) in 20 ms frames, with 400 agent samples (value 7) at `agent_at`
    handed over once the caller timeline has reached `sent_at`."""
    frame = np.full(RATE // 50, 100, dtype=np.int16)
    for n in range(round(seconds * 50)):
        if agent_at is not None and n == round(sent_at * 50):
            recorder.agent(np.full(400, 7, dtype=np.int16), at=agent_at)
        recorder.caller(frame, at=n * 0.02)


def test_caller_goes_left_and_agent_right_at_its_offset(tmp_path: Path) -> None:
    path = tmp_path / "call.wav"
    with StereoRecorder(path, RATE) as recorder:
        feed_caller(recorder, 3.0, agent_at=1.25, sent_at=1.2)
    left, right = read_stereo(path)

    assert np.all(left == 100)
    start = round(1.25 * RATE)
    assert np.all(right[start : start + 400] == 7)
    assert not right[:start].any()
    assert not right[start + 400 :].any()


def test_agent_audio_slightly_behind_the_caller_timeline_still_lands(tmp_path: Path) -> None:
    path = tmp_path / "call.wav"
    with StereoRecorder(path, RATE) as recorder:
        feed_caller(recorder, 3.0, agent_at=1.25, sent_at=1.6)
    _, right = read_stereo(path)

    start = round(1.25 * RATE)
    assert np.all(right[start : start + 400] == 7)


def test_agent_audio_across_flushes_stays_aligned(tmp_path: Path) -> None:
    path = tmp_path / "call.wav"
    recorder = StereoRecorder(path, RATE)
    ramp = np.arange(1, 2 * RATE + 1, dtype=np.int16)
    for n in range(6 * 50):
        recorder.caller(np.zeros(RATE // 50, dtype=np.int16), at=n * 0.02)
        if n == 100:  # agent audio sent ahead of the caller timeline, in two pieces with a gap
            recorder.agent(ramp[:RATE], at=2.5)
            recorder.agent(ramp[RATE:], at=4.0)
    recorder.close()
    _, right = read_stereo(path)

    assert np.array_equal(right[int(2.5 * RATE) : int(3.5 * RATE)], ramp[:RATE])
    assert not right[int(3.5 * RATE) : 4 * RATE].any()
    assert np.array_equal(right[4 * RATE : 5 * RATE], ramp[RATE:])


def test_length_is_the_later_end_of_both_channels(tmp_path: Path) -> None:
    path = tmp_path / "call.wav"
    recorder = StereoRecorder(path, RATE)
    feed_caller(recorder, 2.0)
    recorder.agent(np.ones(RATE, dtype=np.int16), at=1.5)
    recorder.close()

    left, right = read_stereo(path)
    assert len(left) == round(2.5 * RATE)
    assert not left[2 * RATE :].any()
    assert np.all(right[round(1.5 * RATE) :] == 1)


def test_caller_gaps_are_silence(tmp_path: Path) -> None:
    path = tmp_path / "call.wav"
    with StereoRecorder(path, RATE) as recorder:
        recorder.caller(np.full(RATE, 5, dtype=np.int16), at=0.0)
        recorder.caller(np.full(RATE, 5, dtype=np.int16), at=2.0)
    left, _ = read_stereo(path)

    assert len(left) == 3 * RATE
    assert not left[RATE : 2 * RATE].any()
    assert np.all(left[2 * RATE :] == 5)


def test_audio_is_written_while_the_call_runs(tmp_path: Path) -> None:
    path = tmp_path / "call.wav"
    recorder = StereoRecorder(path, RATE)
    feed_caller(recorder, 5.0)
    size_during = path.stat().st_size
    recorder.close()

    assert size_during > 3 * RATE * 4
    assert path.stat().st_size == 44 + 5 * RATE * 4


def test_empty_recording_is_a_valid_wav(tmp_path: Path) -> None:
    path = tmp_path / "call.wav"
    StereoRecorder(path, RATE).close()
    left, _ = read_stereo(path)
    assert len(left) == 0
