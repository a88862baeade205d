"""Streaming sample-rate conversion and per-direction format conversion for a call.

Each direction of each call owns its own resampler so filter state carries across chunks: chunk
boundaries never click, and output length tracks input length exactly over the stream.

Small rational ratios (every pair among 8, 16, 24, 32 and 48 kHz) go through `PolyphaseResampler`,
which returns every output sample as soon as its inputs have arrived; other ratios (e.g. 22.05 kHz
TTS output) go through soxr.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Literal, cast, get_args

import numpy as np
import numpy.typing as npt
import soxr

from opusagent.audio.codecs import Buffer, decode, encode
from opusagent.audio.formats import AudioFormat, Encoding
from opusagent.call.stages import Samples

Quality = Literal["QQ", "LQ", "MQ", "HQ", "VHQ"]

DEFAULT_QUALITY: Quality = "LQ"
"""For polyphase ratios (see `PolyphaseResampler`, `STOPBAND_DB`): LQ rejects aliases and images
by >= 73 dB with a 2.3 ms group delay when the lower rate is 8 kHz (1.2 ms at 16 kHz); every
setting is flat to 3.4 kHz at 8 kHz. MQ/HQ/VHQ reject 84/89/92 dB for 2.7/2.9/3.0 ms (at 8 kHz),
QQ 49 dB for 1.5 ms.

For the other ratios soxr is used; measured on 20 ms chunks (mean/max delay in ms; 8k<>16k,
22.05k->8k, 24k->16k): LQ 33/61, 23/43, 11/20; MQ and HQ 64/118, 46/82, 21/38; QQ ~0 but passes
aliases at 0 dB. LQ, MQ and HQ all reject aliases by ~85 dB (the int16 floor); LQ's passband is
narrower: -0.3 dB at 75% and -8 dB at 85% of the output Nyquist where MQ is flat. CPU is 2-4 us
per 20 ms chunk whatever the setting.
"""

_EMPTY: Samples = np.zeros(0, dtype=np.int16)
_INT16_MIN = np.array(-32768.0)
_INT16_MAX = np.array(32767.0)  # 0-d arrays: np.minimum/np.maximum take them fastest

MAX_POLYPHASE_FACTOR = 6
"""Ratios reducing to L/M with L and M up to this use `PolyphaseResampler`, the others soxr."""

STOPBAND_DB: dict[Quality, float] = {"QQ": 50, "LQ": 75, "MQ": 85, "HQ": 90, "VHQ": 93}
"""Kaiser design target for the polyphase stopband (measured rejection is within ~1 dB)."""

PASSBAND_EDGE = 0.425
"""Flat (to ~0.002 dB at LQ) up to this fraction of the lower rate: 3.4 kHz at 8 kHz."""
STOPBAND_EDGE = 0.55
"""Stopband from this fraction of the lower rate: 4.4 kHz at 8 kHz, so at most the band above
3.6 kHz (of 4 kHz) can take an alias or image, and then one already attenuated by the
transition band."""

_COEFF_BITS = 30
"""Coefficients are rounded to multiples of 2**-30: every product of an int16 sample and every
partial sum is then exact in float64, so the result cannot depend on the summation order (BLAS
kernel, row blocking, chunking); the rounding itself is ~-150 dB."""

_SUPERBLOCK_CHOICES = (1, 2, 4, 5, 8, 10, 16, 20, 32, 40)
"""Periods per matrix row: divisors of 160, the periods in 20 ms between multiples of 8 kHz, so
that 20 ms chunks fill whole rows."""

_MAX_STEP_INPUT = 4096
"""Longer chunks are processed in pieces of about this many samples, bounding work buffers."""
_SLACK = 2048
"""Spare room (in samples) in a stream's input buffer: it is compacted when that is used up."""


@dataclass(frozen=True, eq=False)
class PolyphaseFilter:
    """A windowed-sinc prototype at `up` x the input rate, laid out for block processing.

    Output `m` of the stream is `sum_k taps[k * up + p] * x[i - k]` where `m * down = i * up + p`.
    A block of `periods` periods (`hop = periods * down` inputs, `block = periods * up` outputs)
    is one row of a matrix product: `window (hop + taps_per_phase - 1 inputs) @ bank`.
    """

    up: int
    down: int
    quality: Quality
    taps: npt.NDArray[np.float64]
    """The prototype, gain `up`, quantised (see `_COEFF_BITS`)."""
    taps_per_phase: int
    beta: float
    cutoff: float
    """-6 dB point as a fraction of the lower of the two rates."""
    delay: float
    """Group delay of the filter, in input samples."""
    periods: int
    bank: npt.NDArray[np.float64]
    """(taps_per_phase - 1 + hop, block) matrix: window of inputs -> a block of outputs."""

    @property
    def hop(self) -> int:
        return self.periods * self.down

    @property
    def block(self) -> int:
        return self.periods * self.up

    @property
    def history(self) -> int:
        return self.taps_per_phase - 1

    @property
    def lag(self) -> int:
        """The group delay in whole output samples (rounded down): what a stream drops first."""
        return (len(self.taps) - 1) // (2 * self.down)


def _kaiser_beta(attenuation_db: float) -> float:
    if attenuation_db > 50:
        return 0.1102 * (attenuation_db - 8.7)
    if attenuation_db > 21:
        return float(0.5842 * (attenuation_db - 21) ** 0.4 + 0.07886 * (attenuation_db - 21))
    return 0.0


@functools.cache
def polyphase_filter(
    up: int, down: int, quality: Quality = DEFAULT_QUALITY, periods: int | None = None
) -> PolyphaseFilter:
    """Design (once per ratio and quality; shared by every stream) the filter for `up`/`down`.

    Frequencies are relative: the lower of the two rates is `1 / max(up, down)` of the prototype
    rate `up * input rate`, so the design does not depend on the absolute rates. `periods` (the
    block size) is chosen for speed unless given.
    """
    if up < 1 or down < 1 or math.gcd(up, down) != 1:
        raise ValueError(f"expected a reduced ratio up/down, got {up}/{down}")
    attenuation = STOPBAND_DB[quality]
    lower = 1 / max(up, down)  # the lower rate in units of the prototype rate
    cutoff = (PASSBAND_EDGE + STOPBAND_EDGE) / 2
    transition = (STOPBAND_EDGE - PASSBAND_EDGE) * lower
    # Kaiser's estimate of the length for this attenuation and transition width.
    length = math.ceil((attenuation - 7.95) / (2.285 * 2 * math.pi * transition)) + 1
    per_phase = -(-length // up)
    length = per_phase * up
    beta = _kaiser_beta(attenuation)
    n = np.arange(length) - (length - 1) / 2
    width = 2 * cutoff * lower  # sinc's main lobe half-width is 1 / width prototype samples
    taps = width * np.sinc(width * n) * np.kaiser(length, beta)
    taps *= up / taps.sum()
    scale = float(2**_COEFF_BITS)
    taps = np.round(taps * scale) / scale

    if periods is None:
        # Measured fastest: a row spanning about half the taps per phase, and <= ~20 outputs.
        target = min((per_phase - 1) / (2 * down), 20 / up)
        periods = min(_SUPERBLOCK_CHOICES, key=lambda q: abs(math.log(q / target)))
    # bank[history + i_r - k, r] = taps[k * up + p_r] for output r of the block.
    history = per_phase - 1
    bank = np.zeros((history + periods * down, periods * up))
    k = np.arange(per_phase)
    for r in range(periods * up):
        i, p = divmod(r * down, up)
        bank[history + i - k, r] = taps[k * up + p]
    bank.flags.writeable = False
    taps.flags.writeable = False
    return PolyphaseFilter(
        up=up,
        down=down,
        quality=quality,
        taps=taps,
        taps_per_phase=per_phase,
        beta=beta,
        cutoff=cutoff,
        delay=(length - 1) / (2 * up),
        periods=periods,
        bank=bank,
    )


class PolyphaseResampler:
    """Streaming polyphase FIR resampler for small ratios `up`/`down`: steady, short delay.

    It exists because soxr releases output in bursts for these ratios: fed 20 ms at 8 -> 16 kHz,
    LQ returns nothing for two chunks in three and then 940 samples, holding audio back 33 ms on
    average and up to 61 ms. Here each `process` returns every output sample whose inputs have
    arrived, so after the first chunk 20 ms in always gives 20 ms out (320 samples at 8 -> 16 kHz),
    and any chunking of the input gives bit-identical output.

    Filter (`polyphase_filter`, designed once per ratio and quality and shared): Kaiser-windowed
    sinc, -6 dB at 0.4875 of the lower rate, flat within 0.002 dB to 0.425 of it (3.4 kHz at
    8 kHz), and from 0.55 of it on (everything that would alias or image into the band below
    0.45) down by >= 73 dB at LQ. LQ taps per phase: 38 for 8 -> 16 kHz (76 in all, beta 7.3),
    76 for 16 -> 8 kHz, 57 for 24 -> 16 kHz. Group delay: 2.34 ms when the lower rate is 8 kHz,
    1.18 ms at 16 kHz, 0.8 ms at 24 kHz. About 4 us per 20 ms chunk at 8 -> 16 kHz, 5 us at
    24 -> 16 kHz (soxr LQ: 2.4 and 3.4 us).

    The delay is compensated, as soxr does: the first `filter.lag` output samples (the filter's
    ramp-up) are dropped and `flush` computes the last ones from zeros past the end, so output
    sample `m` is aligned with input time `m * down / up` (late by under one output sample) and
    a stream of `n` samples gives exactly `ceil(n * up / down)`. So the first chunk comes out
    short by `lag` samples (283 instead of 320 at 8 -> 16 kHz): output reaching up to an
    input's time needs inputs up to `delay` later.
    """

    def __init__(self, up: int, down: int, quality: Quality = DEFAULT_QUALITY) -> None:
        self.filter = polyphase_filter(up, down, quality)
        f = self.filter
        self._up, self._down = up, down
        self._history, self._hop, self._block = f.history, f.hop, f.block
        self._bank = f.bank
        self._step = max(f.hop, _MAX_STEP_INPUT // f.hop * f.hop)
        # `_buf` holds the inputs from the window of the first unfinished block, which is row
        # `_base` of `_windows` (the blocks' windows, overlapping views into `_buf`), to `_fill`.
        # Finished rows are dropped by moving `_base` on; the data moves down only when `_buf`
        # is full, so 20 ms chunks are not copied twice.
        self._buf = np.zeros(self._history + f.hop + _SLACK)
        self._windows = self._window_view()
        self._base = 0
        self._fill = self._history
        self._skip = 0
        """Outputs of the first unfinished block already returned (or dropped)."""
        self._drop = f.lag
        """Outputs still to drop at the start of the stream."""
        self._fed = False

    def process(self, samples: Samples) -> Samples:
        """Resample the next chunk: every output sample whose inputs are now all available."""
        n = len(samples)
        if n == 0:
            return _EMPTY
        self._fed = True
        if n > self._step:
            step = self._step
            return np.concatenate([self._run(samples[i : i + step]) for i in range(0, n, step)])
        return self._run(samples)

    def flush(self) -> Samples:
        """End the stream: return the last `delay` of output, held back so far, and reset."""
        if not self._fed:
            self.reset()
            return _EMPTY
        up, down = self._up, self._down
        received = self._fill - self._base * self._hop - self._history
        # In all ceil(inputs * up / down) outputs after the dropped ones (block-relative here).
        end = self.filter.lag + -(-received * up // down)
        zeros = (end - 1) * down // up + 1 - received
        tail = self._run(np.zeros(max(zeros, 0), dtype=np.int16), end)
        self.reset()
        return tail

    def reset(self) -> None:
        """Forget the stream: zero history, as if just created."""
        self._buf[: self._history] = 0.0
        self._base = 0
        self._fill = self._history
        self._skip = 0
        self._drop = self.filter.lag
        self._fed = False

    def _window_view(self) -> npt.NDArray[np.float64]:
        windows = np.lib.stride_tricks.sliding_window_view(self._buf, self._history + self._hop)
        return windows[:: self._hop]

    def _make_room(self, n: int) -> None:
        """Move the live inputs to the front of `_buf`, growing it if `n` more would not fit."""
        start = self._base * self._hop
        live = self._fill - start
        size = max(self._buf.size, live + n + self._hop + _SLACK)
        if size > self._buf.size:
            buf = np.zeros(size)
            buf[:live] = self._buf[start : self._fill]
            self._buf = buf
            self._windows = self._window_view()
        else:
            self._buf[:live] = self._buf[start : self._fill]
        self._base = 0
        self._fill = live

    def _run(self, samples: Samples, end: int | None = None) -> Samples:
        n = len(samples)
        if self._fill + n + self._hop > self._buf.size:  # the last window may reach past _fill
            self._make_room(n)
        fill = self._fill
        self._buf[fill : fill + n] = samples
        fill += n
        self._fill = fill
        base, block = self._base, self._block
        if end is None:
            # Output r (from the first unfinished block) needs inputs up to floor(r * down / up).
            received = fill - base * self._hop - self._history
            end = (received * self._up + self._down - 1) // self._down
        skip = self._skip
        if end <= skip:
            return _EMPTY
        rows = (end + block - 1) // block
        out = (self._windows[base : base + rows] @ self._bank).reshape(-1)[skip:end]
        np.minimum(out, _INT16_MAX, out=out)  # half the overhead of np.clip on 20 ms chunks
        np.maximum(out, _INT16_MIN, out=out)
        np.rint(out, out=out)
        done = end // block
        self._base = base + done
        self._skip = end - done * block
        if self._drop:
            dropped = min(self._drop, len(out))
            self._drop -= dropped
            out = out[dropped:]
        return out.astype(np.int16)


class StreamResampler:
    """Mono int16 resampler keeping filter state across chunks (a pass-through for equal rates).

    Ratios reducing to `up`/`down` with both at most `MAX_POLYPHASE_FACTOR` use
    `PolyphaseResampler` (steady output, held back 1-3 ms); the others use soxr, which may hold
    output back for tens of milliseconds.
    """

    def __init__(self, in_rate: int, out_rate: int, quality: Quality = DEFAULT_QUALITY) -> None:
        if in_rate <= 0 or out_rate <= 0:
            raise ValueError(f"sample rates must be positive, got {in_rate} -> {out_rate}")
        if quality not in get_args(Quality):
            raise ValueError(
                f"unknown soxr quality {quality!r}, expected one of {get_args(Quality)}"
            )
        self.in_rate = in_rate
        self.out_rate = out_rate
        self.quality = quality
        self._stream: soxr.ResampleStream | None = None
        self._polyphase: PolyphaseResampler | None = None
        if in_rate != out_rate:
            common = math.gcd(in_rate, out_rate)
            up, down = out_rate // common, in_rate // common
            if max(up, down) <= MAX_POLYPHASE_FACTOR:
                self._polyphase = PolyphaseResampler(up, down, quality)
            else:
                self._stream = soxr.ResampleStream(
                    in_rate, out_rate, 1, dtype="int16", quality=quality
                )

    def process(self, samples: Samples) -> Samples:
        """Resample the next chunk; soxr (not the polyphase path) may hold some output back."""
        if self._polyphase is not None:
            return self._polyphase.process(samples)
        if self._stream is None:
            return samples
        return cast(Samples, self._stream.resample_chunk(np.ascontiguousarray(samples)))

    def flush(self) -> Samples:
        """End the stream: return the held-back tail and get ready for a new stream."""
        if self._polyphase is not None:
            return self._polyphase.flush()
        if self._stream is None:
            return _EMPTY
        tail = cast(Samples, self._stream.resample_chunk(_EMPTY, last=True))
        self._stream.clear()
        return tail

    def reset(self) -> None:
        """Drop held-back audio without emitting it (e.g. when playback is cut on barge-in)."""
        if self._polyphase is not None:
            self._polyphase.reset()
        if self._stream is not None:
            self._stream.clear()


def _require_mono(fmt: AudioFormat) -> None:
    if fmt.channels != 1:
        raise ValueError(f"only mono audio is supported, got {fmt}")


class AudioConverter:
    """Streaming decode -> resample -> encode for one direction of a call.

    Input may be cut anywhere, even inside a PCM16 sample: a dangling byte is carried to the next
    call. Use either the `*_samples` or the `*_bytes` methods on one converter, not both.
    """

    def __init__(
        self, src: AudioFormat, dst: AudioFormat, quality: Quality = DEFAULT_QUALITY
    ) -> None:
        _require_mono(src)
        _require_mono(dst)
        self.src = src
        self.dst = dst
        self._resampler = StreamResampler(src.sample_rate, dst.sample_rate, quality)
        self._carry = b""

    def to_samples(self, data: Buffer) -> Samples:
        """Decode and resample to int16 samples at `dst.sample_rate` (`dst` must be PCM16).

        Without resampling the result may be a read-only view of `data`.
        """
        self._require_pcm16_dst()
        return self._resampler.process(self._decode(data))

    def to_bytes(self, data: Buffer) -> bytes:
        """Decode, resample and encode into `dst`."""
        if self.src == self.dst:
            return bytes(data)
        return encode(self._resampler.process(self._decode(data)), self.dst.encoding)

    def flush_samples(self) -> Samples:
        """End of stream: the resampler's tail as samples (`dst` must be PCM16)."""
        self._require_pcm16_dst()
        self._carry = b""
        return self._resampler.flush()

    def flush_bytes(self) -> bytes:
        """End of stream: the resampler's tail encoded into `dst`.

        A lone trailing PCM16 byte (half a sample) is dropped here.
        """
        self._carry = b""
        return encode(self._resampler.flush(), self.dst.encoding)

    def reset(self) -> None:
        """Drop everything held back without emitting it (e.g. on barge-in)."""
        self._carry = b""
        self._resampler.reset()

    def _decode(self, data: Buffer) -> Samples:
        if self.src.encoding is not Encoding.PCM16:
            return decode(data, self.src.encoding)
        if self._carry:
            data = self._carry + data
            self._carry = b""
        if len(data) % 2:
            self._carry = bytes(data[-1:])
            data = memoryview(data)[:-1]
        return decode(data, Encoding.PCM16)

    def _require_pcm16_dst(self) -> None:
        if self.dst.encoding is not Encoding.PCM16:
            raise ValueError(
                f"samples output needs a PCM16 destination, this converter has {self.dst}"
            )
