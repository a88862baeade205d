"""Speech recognition with pocketsphinx: offline, streaming, and exact on expected phrases.

Gating: a stream decodes only between the VAD's `speech_started` and `speech_ended`; while the
caller is silent it keeps a short pre-roll and nothing else. Decoding runs in shared decoder
processes (see `sphinx_pool`), driven from `ModelWorkers`, one job in flight per stream so audio
stays in order; partials are emitted when the hypothesis changes, and one final per utterance.

Free speech uses the generic language model. `expect(phrases)` switches the next utterances to
a grammar of those phrases (see `grammar` for how phrases and `digits()` are written); when the
grammar's result is not a whole phrase or scores poorly, the utterance is decoded again with
the language model and that result is the final.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections import deque
from collections.abc import AsyncIterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from opusagent.audio.formats import PCM16_16K, AudioFormat
from opusagent.call.stages import Samples, Transcript
from opusagent.voice.stt.grammar import Grammar, GrammarBook, digits
from opusagent.voice.stt.preroll import PreRoll
from opusagent.voice.stt.sphinx_model import SphinxModel, read_vocabulary
from opusagent.voice.stt.sphinx_pool import DecoderPool, DecoderProcess
from opusagent.voice.stt.sphinx_protocol import Begin, Final, Step
from opusagent.voice.workers import ModelWorkers

log = logging.getLogger(__name__)

SAMPLE_RATE = 16_000
"""The bundled acoustic model is 16 kHz only; telephone audio arrives upsampled by the Call."""

TELEPHONE_CMN = "41.33,33.13,-33.36,35.13,-20.91,-2.33,10.76,-24.22,12.62,-8.40,2.77,4.07,-8.56"
"""Cepstral mean (13 coefficients, as `Decoder.set_cmn` takes them) that primes the first
utterance of a call.

A fresh decoder's default (40,3,-1,0,...) suits wideband speech; on 8 kHz-band audio its first
utterances come out at ~80 % WER. Measured once: seven sentences each from Piper
(en_US-joe-medium) and flite, each scaled to -26 dBFS RMS over its active samples (the ITU-T
P.56 nominal speech level), encoded to 8 kHz mu-law and upsampled to 16 kHz with
`AudioConverter`, as a call does; the batch mean of every frame (`Decoder.get_cmn(True)` after
a `full_utt` decode), averaged over the two voices. Primed, streaming matches batch decoding.
Later utterances of the call start from the mean updated by its previous utterance that
produced words, which follows the caller's level and line (on speech 20 dB quieter, WER fell
from 75 % to 23 % that way)."""


@dataclass(eq=False, slots=True)
class _Utterance:
    grammar: Grammar | None
    pending: list[Samples] = field(default_factory=list)
    samples: int = 0
    ended: bool = False
    partial: str = ""

    def take_audio(self) -> bytes:
        if not self.pending:
            return b""
        audio = np.concatenate(self.pending).tobytes()
        self.pending.clear()
        return audio


def _warm_up(decoder: DecoderProcess, grammar: Grammar | None) -> None:
    """Decode a second of noise with the language model, then with `grammar`."""
    noise = np.random.default_rng(0).normal(0, 300, SAMPLE_RATE).astype(np.int16).tobytes()
    for search in (None, grammar):
        decoder.step(Step(noise, Begin(TELEPHONE_CMN, search), finish=True))


class PocketsphinxStream:
    """One call's recogniser session (an `STTStream`); used from the event loop only."""

    def __init__(self, stt: PocketsphinxSTT) -> None:
        self._stt = stt
        self._preroll = PreRoll(stt.preroll_samples)
        self._utterances: deque[_Utterance] = deque()
        """Utterances not finalised yet, oldest first; the last may still be receiving audio."""
        self._open: _Utterance | None = None
        self._grammar: Grammar | None = None
        self._cmn = TELEPHONE_CMN
        self._results: asyncio.Queue[Transcript | None] = asyncio.Queue()
        self._wake = asyncio.Event()
        self._runner: asyncio.Task[None] | None = None
        self._acquiring = False
        self._closed = False

    def push(self, samples: Samples) -> None:
        """Keep 16 kHz audio: in the pre-roll while silent, else for the decoder."""
        if self._closed:
            return
        utterance = self._open
        if utterance is None:
            self._preroll.push(samples)
            return
        utterance.pending.append(samples)
        utterance.samples += len(samples)
        if utterance.samples >= self._stt.max_utterance_samples:
            utterance.ended = True
            self._open = self._new_utterance([])
        self._wake.set()

    def speech_started(self) -> None:
        if self._closed or self._open is not None:
            return
        self._open = self._new_utterance(self._preroll.take())
        if self._runner is None:
            self._runner = asyncio.get_running_loop().create_task(
                self._run(), name="pocketsphinx-stream"
            )
        self._wake.set()

    def speech_ended(self) -> None:
        if self._open is None:
            return
        self._open.ended = True
        self._open = None
        self._wake.set()

    def expect(self, phrases: Sequence[str] | None) -> None:
        """Phrases for the utterances that start from now on (see `grammar`); None: free speech."""
        self._grammar = None if phrases is None else self._stt.grammar(phrases)

    async def results(self) -> AsyncIterator[Transcript]:
        while (transcript := await self._results.get()) is not None:
            yield transcript

    async def aclose(self) -> None:
        """Stop: an utterance being decoded is dropped, and `results()` ends."""
        if self._closed:
            return
        self._closed = True
        self._open = None
        self._wake.set()
        runner = self._runner
        if runner is not None:
            if self._acquiring:
                runner.cancel()
            await asyncio.wait([runner])
        self._results.put_nowait(None)

    def _new_utterance(self, chunks: list[Samples]) -> _Utterance:
        utterance = _Utterance(self._grammar, chunks, sum(len(c) for c in chunks))
        self._utterances.append(utterance)
        return utterance

    async def _sleep(self) -> None:
        self._wake.clear()
        await self._wake.wait()

    async def _run(self) -> None:
        while not self._closed:
            if not self._utterances:
                await self._sleep()
                continue
            utterance = self._utterances[0]
            try:
                final = await self._recognise(utterance)
            except Exception:
                log.exception("pocketsphinx failed; the utterance is lost")
                final = Transcript("", final=True)
                if utterance is self._open:
                    self._open = None
            self._utterances.popleft()
            if final is not None:
                self._results.put_nowait(final)

    async def _recognise(self, utterance: _Utterance) -> Transcript | None:
        """Decode one utterance on a pooled decoder; None when the stream closed meanwhile."""
        pool = self._stt.pool
        self._acquiring = True
        try:
            decoder = await pool.acquire()
        finally:
            self._acquiring = False
        try:
            final = await self._decode(utterance, decoder)
        except BaseException:
            pool.discard(decoder)
            raise
        pool.release(decoder)
        return final

    async def _decode(self, utterance: _Utterance, decoder: DecoderProcess) -> Transcript | None:
        workers = self._stt.workers
        begin: Begin | None = Begin(self._cmn, utterance.grammar)
        while True:
            if self._closed:
                if begin is None:
                    await workers.run(decoder.abort)
                return None
            finish = utterance.ended
            audio = utterance.take_audio()
            if begin is None and not audio and not finish:
                await self._sleep()
                continue
            reply = await workers.run(decoder.step, Step(audio, begin, finish))
            begin = None
            if isinstance(reply, Final):
                if reply.text:
                    self._cmn = reply.cmn
                return Transcript(reply.text, final=True, confidence=reply.confidence)
            if reply.text and reply.text != utterance.partial:
                utterance.partial = reply.text
                self._results.put_nowait(Transcript(reply.text, final=False))


class PocketsphinxSTT:
    """pocketsphinx's bundled en-US model (or `model`), 16 kHz in; an `STT`.

    `decoders` is the number of decoder processes (each ~125 MB resident) and so of utterances
    decoded at once across all calls; more wait for one to come free. Call `load()` (blocking,
    on a worker) before taking calls, which starts them all, and `close()` at shutdown.
    """

    def __init__(
        self,
        workers: ModelWorkers,
        *,
        model: SphinxModel | None = None,
        decoders: int = 4,
        preroll_ms: int = 300,
        max_utterance_s: float = 30.0,
    ) -> None:
        self.workers = workers
        self.model = model if model is not None else SphinxModel.bundled()
        self.pool = DecoderPool(functools.partial(DecoderProcess, self.model), decoders)
        self.preroll_samples = SAMPLE_RATE * preroll_ms // 1000
        self.max_utterance_samples = round(SAMPLE_RATE * max_utterance_s)
        self._vocabulary: frozenset[str] | None = None
        self._grammars = GrammarBook(self._words)

    @property
    def input_format(self) -> AudioFormat:
        return PCM16_16K

    def load(self) -> None:
        """Check the model, start every decoder and decode a little audio on each with the
        language model and with a grammar, so no call pays a loading cost. Blocking."""
        self.model.check()
        self._words()
        decoders = self.pool.preload()
        warm_up = functools.partial(_warm_up, grammar=self.grammar([digits()]))
        with ThreadPoolExecutor(max(1, len(decoders))) as threads:
            list(threads.map(warm_up, decoders))
        for decoder in decoders:
            log.info(
                "pocketsphinx decoder %d loaded in %.2f s, %s MB resident",
                decoder.pid,
                decoder.load_seconds,
                "?" if decoder.rss_bytes is None else decoder.rss_bytes // 2**20,
            )

    def open_stream(self) -> PocketsphinxStream:
        return PocketsphinxStream(self)

    def grammar(self, phrases: Sequence[str]) -> Grammar | None:
        """The (cached) grammar for `phrases`; None when none of them is usable."""
        return self._grammars.get(phrases)

    def close(self) -> None:
        """Stop the decoder processes (blocking, briefly)."""
        self.pool.close()

    def _words(self) -> frozenset[str]:
        if self._vocabulary is None:
            self._vocabulary = read_vocabulary(self.model.dictionary)
        return self._vocabulary
