"""The polyphase path of StreamResampler: steady output, chunking independence, filter quality."""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator

import numpy as np
import pytest

from opusagent.audio.resample import (
    PolyphaseResampler,
    StreamResampler,
    polyphase_filter,
)
from opusagent.call.stages import Samples

POLYPHASE_RATES = [8000, 16000, 24000, 32000, 48000]
POLYPHASE_PAIRS = [(a, b) for a, b in itertools.permutations(POLYPHASE_RATES, 2)]
STEADY_PAIRS = [(8000, 16000), (16000, 8000), (24000, 16000), (8000, 24000), (16000, 24000)]


def ratio(in_rate: int, out_rate: int) -> tuple[int, int]:
    common = math.gcd(in_rate, out_rate)
    return out_rate // common, in_rate // common


def lag(in_rate: int, out_rate: int) -> int:
    """Output samples dropped at the start of a stream to compensate the group delay."""
    return polyphase_filter(*ratio(in_rate, out_rate)).lag


def noise(rate: int, seconds: float = 1.0, seed: int = 3) -> Samples:
    return np.random.default_rng(seed).normal(0, 5000, round(rate * seconds)).astype(np.int16)


def tone(freq: float, rate: int, seconds: float = 1.0, amplitude: float = 16000) -> Samples:
    t = np.arange(round(rate * seconds)) / rate
    return np.round(amplitude * np.sin(2 * np.pi * freq * t)).astype(np.int16)


def chunks(samples: Samples, sizes: Iterator[int]) -> Iterator[Samples]:
    i = 0
    while i < len(samples):
        size = next(sizes)
        yield samples[i : i + size]
        i += size


def run(resampler: StreamResampler, parts: Iterator[Samples]) -> Samples:
    return np.concatenate([*(resampler.process(p) for p in parts), resampler.flush()])


def spectrum_db(samples: Samples, rate: int) -> tuple[np.ndarray, np.ndarray]:
    """Amplitude spectrum in dB re the amplitude of a full-window sine of amplitude 1."""
    x = samples.astype(np.float64)
    window = np.kaiser(len(x), 20.0)  # sidelobes far below the -70 dB being measured
    amplitude = np.abs(np.fft.rfft(x * window)) * 2 / window.sum()
    return np.fft.rfftfreq(len(x), 1 / rate), 20 * np.log10(amplitude + 1e-9)


def steady_part(out: Samples, rate: int) -> Samples:
    """Drop 50 ms at each end: the transients where the tone starts and stops."""
    return out[rate // 20 : -rate // 20]


@pytest.mark.parametrize(("in_rate", "out_rate"), STEADY_PAIRS)
def test_every_20ms_chunk_returns_20ms(in_rate: int, out_rate: int) -> None:
    resampler = StreamResampler(in_rate, out_rate)
    step = in_rate // 50
    lengths = [len(resampler.process(p)) for p in chunks(noise(in_rate), itertools.repeat(step))]
    # The first chunk is short by the compensated group delay (1-3 ms), the rest exact.
    assert lengths[0] == out_rate // 50 - lag(in_rate, out_rate) > 0
    assert set(lengths[1:]) == {out_rate // 50}


@pytest.mark.parametrize(("in_rate", "out_rate", "size"), [(24000, 16000, 100), (16000, 24000, 7)])
def test_uneven_chunks_return_the_ratio_give_or_take_one(
    in_rate: int, out_rate: int, size: int
) -> None:
    resampler = StreamResampler(in_rate, out_rate)
    source = noise(in_rate)[: in_rate // size * size]
    lengths = [len(resampler.process(p)) for p in chunks(source, itertools.repeat(size))]
    expected = size * out_rate / in_rate
    assert set(lengths[5:]) == {math.floor(expected), math.ceil(expected)}
    # Only the group delay is held back: after k chunks all outputs up to k * size - delay.
    held = lag(in_rate, out_rate)
    assert np.array_equal(
        np.cumsum(lengths),
        [
            max(0, math.ceil(k * size * out_rate / in_rate) - held)
            for k in range(1, len(lengths) + 1)
        ],
    )


@pytest.mark.parametrize(("in_rate", "out_rate"), POLYPHASE_PAIRS)
def test_any_chunking_gives_identical_output(in_rate: int, out_rate: int) -> None:
    source = noise(in_rate, 0.7)
    rng = np.random.default_rng(42)
    random_sizes = (int(rng.integers(1, 4001)) for _ in itertools.count())

    reference = run(
        StreamResampler(in_rate, out_rate), chunks(source, itertools.repeat(in_rate // 50))
    )

    assert np.array_equal(
        run(StreamResampler(in_rate, out_rate), chunks(source, random_sizes)), reference
    )
    assert np.array_equal(run(StreamResampler(in_rate, out_rate), iter([source])), reference)
    short = source[: in_rate // 20]
    one_by_one = run(StreamResampler(in_rate, out_rate), chunks(short, itertools.repeat(1)))
    assert np.array_equal(one_by_one, run(StreamResampler(in_rate, out_rate), iter([short])))


def direct(samples: Samples, up: int, down: int) -> Samples:
    """The textbook definition: zero-stuff, filter with the prototype, decimate, round, clip."""
    stuffed = np.zeros(len(samples) * up)
    stuffed[::up] = samples
    filtered = np.convolve(stuffed, polyphase_filter(up, down).taps)[::down]
    return np.clip(np.rint(filtered), -32768, 32767).astype(np.int16)


@pytest.mark.parametrize(("in_rate", "out_rate"), POLYPHASE_PAIRS)
def test_output_is_the_direct_filter_output(in_rate: int, out_rate: int) -> None:
    source = noise(in_rate, 0.2)
    out = run(StreamResampler(in_rate, out_rate), chunks(source, itertools.cycle([1, 333, 77])))
    held = lag(in_rate, out_rate)
    assert len(out) == math.ceil(len(source) * out_rate / in_rate)
    assert np.array_equal(out, direct(source, *ratio(in_rate, out_rate))[held : held + len(out)])


def test_full_scale_overshoot_is_clipped_not_wrapped() -> None:
    square = np.where(tone(300, 8000) >= 0, 32767, -32768).astype(np.int16)
    out = run(StreamResampler(8000, 16000), iter([square]))
    assert out.max() == 32767
    assert out.min() == -32768
    held = lag(8000, 16000)
    assert np.array_equal(out, direct(square, 2, 1)[held : held + len(out)])


def fitted_sine(out: Samples, freq: float, rate: int, start: int) -> tuple[float, float]:
    """Amplitude and delay (s) of the sine at `freq` in `out`, whose first sample is `start`."""
    t = (np.arange(len(out)) + start) / rate
    basis = np.stack([np.sin(2 * np.pi * freq * t), np.cos(2 * np.pi * freq * t)], axis=1)
    (a, b), *_ = np.linalg.lstsq(basis, out.astype(np.float64), rcond=None)
    return math.hypot(a, b), -math.atan2(b, a) / (2 * np.pi * freq)


@pytest.mark.parametrize("fraction", [0.1, 0.3, 0.4, 0.425])
@pytest.mark.parametrize(("in_rate", "out_rate"), STEADY_PAIRS)
def test_passband_tone_keeps_its_level_and_has_no_spurs(
    in_rate: int, out_rate: int, fraction: float
) -> None:
    # Off a round frequency, so the int16 rounding does not repeat with a short period.
    freq = fraction * min(in_rate, out_rate) + 7.31
    out = run(StreamResampler(in_rate, out_rate), iter([tone(freq, in_rate)]))
    out = steady_part(out, out_rate)

    amplitude, _ = fitted_sine(out, freq, out_rate, out_rate // 20)
    assert 20 * np.log10(amplitude / 16000) == pytest.approx(0, abs=0.5)
    freqs, db = spectrum_db(out, out_rate)
    peak = int(np.argmax(db))
    assert freqs[peak] == pytest.approx(freq, abs=2)
    spurs = np.delete(db, np.arange(peak - 30, peak + 31))
    assert spurs.max() - db[peak] <= -70


@pytest.mark.parametrize(
    ("in_rate", "out_rate", "freq"),
    [
        (16000, 8000, 6000),
        (16000, 8000, 4403.7),  # the stopband edge, 0.55 x 8 kHz
        (24000, 16000, 10000),
        (24000, 16000, 8883.7),
        (24000, 8000, 5000),
        (48000, 16000, 9000),
        (32000, 24000, 13273.7),
    ],
)
def test_tone_above_the_new_nyquist_is_rejected_by_70_db(
    in_rate: int, out_rate: int, freq: float
) -> None:
    out = run(StreamResampler(in_rate, out_rate), iter([tone(freq, in_rate)]))
    _, db = spectrum_db(steady_part(out, out_rate), out_rate)
    assert db.max() - 20 * np.log10(16000) <= -70


@pytest.mark.parametrize(("in_rate", "out_rate"), STEADY_PAIRS)
def test_output_is_aligned_with_the_input(in_rate: int, out_rate: int) -> None:
    freq = 200.0  # period 5 ms, longer than any delay to be measured
    out = run(StreamResampler(in_rate, out_rate), iter([tone(freq, in_rate)]))
    _, delay = fitted_sine(steady_part(out, out_rate), freq, out_rate, out_rate // 20)
    # What is left of the group delay after dropping whole output samples.
    f = polyphase_filter(*ratio(in_rate, out_rate))
    assert delay == pytest.approx(f.delay / in_rate - f.lag / out_rate, abs=2e-6)
    assert 0 <= delay < 1 / out_rate


@pytest.mark.parametrize("chunking", ["20ms", "random"])
@pytest.mark.parametrize(("in_rate", "out_rate"), POLYPHASE_PAIRS)
def test_output_is_held_back_by_the_group_delay_only(
    in_rate: int, out_rate: int, chunking: str
) -> None:
    rng = np.random.default_rng(5)
    sizes = (
        itertools.repeat(in_rate // 50)
        if chunking == "20ms"
        else (int(rng.integers(1, 2000)) for _ in itertools.count())
    )
    resampler = StreamResampler(in_rate, out_rate)
    delay = polyphase_filter(*ratio(in_rate, out_rate)).delay / in_rate
    assert delay <= 0.003
    received = emitted = 0
    for part in chunks(noise(in_rate, 0.5), sizes):
        received += len(part)
        emitted += len(resampler.process(part))
        if emitted:  # the output after the dropped group delay has started
            held_back = received / in_rate - emitted / out_rate
            assert delay - 2 / out_rate < held_back <= delay + 1e-9


@pytest.mark.parametrize(("in_rate", "out_rate"), POLYPHASE_PAIRS)
def test_flush_returns_the_held_back_group_delay(in_rate: int, out_rate: int) -> None:
    resampler = StreamResampler(in_rate, out_rate)
    source = noise(in_rate, 0.1)
    body = resampler.process(source)
    tail = resampler.flush()
    total = math.ceil(len(source) * out_rate / in_rate)
    assert len(body) == total - lag(in_rate, out_rate)
    assert len(body) + len(tail) == total


def test_flush_and_reset_start_a_fresh_stream() -> None:
    source = noise(8000, 0.3)
    fresh = run(StreamResampler(8000, 16000), iter([source]))
    resampler = StreamResampler(8000, 16000)
    run(resampler, iter([noise(8000, 0.1, seed=9)]))
    assert np.array_equal(run(resampler, iter([source])), fresh)
    resampler.process(noise(8000, 0.1, seed=9))
    resampler.reset()
    assert np.array_equal(run(resampler, iter([source])), fresh)


def test_flush_without_input_returns_nothing() -> None:
    resampler = StreamResampler(8000, 16000)
    assert len(resampler.flush()) == 0
    assert len(resampler.process(np.zeros(0, dtype=np.int16))) == 0
    assert len(resampler.flush()) == 0


def test_filter_is_designed_once_and_shared() -> None:
    first, second = PolyphaseResampler(2, 1), PolyphaseResampler(2, 1)
    assert first.filter is second.filter
    assert not first.filter.bank.flags.writeable


@pytest.mark.parametrize(("in_rate", "out_rate"), POLYPHASE_PAIRS)
def test_every_pair_of_common_rates_uses_the_polyphase_path(in_rate: int, out_rate: int) -> None:
    assert StreamResampler(in_rate, out_rate)._polyphase is not None


@pytest.mark.parametrize(("in_rate", "out_rate"), [(22050, 8000), (44100, 16000), (8000, 22050)])
def test_other_ratios_use_soxr(in_rate: int, out_rate: int) -> None:
    assert StreamResampler(in_rate, out_rate)._polyphase is None
