"""A decoder process: one pocketsphinx decoder serving utterances over stdin/stdout.

pocketsphinx's Python binding keeps the GIL while it decodes (measured: the event loop stalled
up to 89 ms, p99 64 ms, while a worker thread decoded), so decoders run in processes of their
own; a worker thread of the main process sends each job and waits on the pipe without the GIL.

Run as `python -m opusagent.voice.stt.sphinx_decoder`; the first request is `Load`.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from collections import OrderedDict
from pathlib import Path
from typing import IO, Any

import numpy as np
import pocketsphinx  # type: ignore[import-untyped]

from opusagent.voice.stt.grammar import Grammar
from opusagent.voice.stt.sphinx_protocol import (
    Abort,
    Begin,
    Failed,
    Final,
    Load,
    Progress,
    Quit,
    Ready,
    Reply,
    Step,
    read_request,
    write_message,
)

GRAMMAR_SEARCHES = 32
"""Grammar searches kept in a decoder; the least recently used one is removed beyond this."""
GRAMMAR_WIP = 0.05
"""Word insertion probability for grammar searches (the language model keeps 0.65): on 24
16-digit strings (Piper and flite through a phone line) it cut digit errors from 6.5 % to
5.2 %; menu and yes/no results were unchanged (42 of 42 right either way)."""
GRAMMAR_CONFIG: dict[str, float | bool] = {"wip": GRAMMAR_WIP, "bestpath": False}
"""Decoder settings for grammar searches. Without the lattice best-path search, finishing a
16-digit utterance drops from 48-113 ms to under 1 ms (bench/voice.py), errors unchanged."""
MIN_WORD_SCORE = -50.0
"""Lowest mean acoustic score per frame of the recognised words at which a grammar result is
believed: `Logmath.log` of the binding's `Segment.ascore` (a probability), summed over the words
and divided by their frames.

Tuned on 406 utterances through 8 kHz mu-law (Piper's voice twice, flite and espeak-ng once;
a 20-phrase menu, the bank agent's first state, yes/no, 4 and 16 digits, and 22 sentences said
to grammars they are not in). Of 154 correct grammar results, Piper's and flite's scored -44 to
-15 and espeak-ng's -54 to -16: 2 (espeak-ng's) fall below. Of 252 off-grammar utterances, 48
came back as a phrase with no threshold (27 of them as four digits), 15 at -50 (8). The voices
overlap: at -45 no off-grammar espeak-ng result stands but 9 correct ones fall; at -55 all
correct ones stand and 27 off-grammar ones do too."""
MAX_UNEXPLAINED = 0.2
"""Highest share of the utterance's loud frames (within `LOUD_DB` of its loudest) that may fall
outside the recognised words: a grammar search takes speech it cannot match for silence."""
LOUD_DB = 30.0
"""Frames this close to the utterance's loudest count as speech for `MAX_UNEXPLAINED`."""
FALLBACK_MAX_SECONDS = 10.0
"""Longest utterance re-decoded with the language model when its grammar result is rejected
(re-decoding runs at ~0.1 x real time, and the Call waits 2 s for a final); a longer one gets an
empty final."""
_BYTES_PER_SECOND = 16_000 * 2
_FRAME_SAMPLES = 160
"""pocketsphinx's frame shift at 16 kHz: frame i starts at sample 160 i."""


def _is_word(word: str) -> bool:
    """Not silence, noise, a sentence marker or a grammar's null transition."""
    return not word.startswith(("<", "[", "+", "("))


class Session:
    """One decoder and the utterance it is decoding."""

    def __init__(self, load: Load) -> None:
        model = load.model
        self._decoder = pocketsphinx.Decoder(
            hmm=str(model.acoustic),
            lm=str(model.language_model),
            dict=str(model.dictionary),
            loglevel="FATAL",
        )
        self._generic: str = self._decoder.current_search()
        self._logmath = self._decoder.get_logmath()
        self._searches: OrderedDict[str, None] = OrderedDict()
        self._begin: Begin | None = None
        self._audio = bytearray()
        """The utterance so far, kept only in grammar mode for a fallback re-decode."""

    def step(self, step: Step) -> Progress | Final:
        if step.begin is not None:
            self._start(step.begin)
        if self._begin is None:
            raise RuntimeError("audio sent before an utterance began")
        if step.audio:
            self._decoder.process_raw(step.audio)
            if self._begin.grammar is not None and self._buffering:
                self._audio += step.audio
        if step.finish:
            return self._finish(self._begin)
        hypothesis = self._decoder.hyp()
        return Progress(hypothesis.hypstr if hypothesis is not None else "")

    def abort(self) -> None:
        if self._begin is not None:
            self._decoder.end_utt()
            self._begin = None
        self._audio.clear()

    @property
    def _buffering(self) -> bool:
        return len(self._audio) <= FALLBACK_MAX_SECONDS * _BYTES_PER_SECOND

    def _start(self, begin: Begin) -> None:
        self.abort()
        self._activate(begin.grammar)
        self._decoder.set_cmn(begin.cmn)
        self._decoder.start_utt()
        self._begin = begin

    def _activate(self, grammar: Grammar | None) -> None:
        if grammar is None:
            self._decoder.activate_search(self._generic)
            return
        if grammar.name in self._searches:
            self._searches.move_to_end(grammar.name)
        else:
            config = self._decoder.config
            generic = {key: config[key] for key in GRAMMAR_CONFIG}
            for key, value in GRAMMAR_CONFIG.items():
                config[key] = value  # read once, when the search is created
            try:
                self._decoder.add_jsgf_string(grammar.name, grammar.jsgf)
            finally:
                for key, value in generic.items():
                    config[key] = value
            self._searches[grammar.name] = None
            if len(self._searches) > GRAMMAR_SEARCHES:
                oldest, _ = self._searches.popitem(last=False)
                self._decoder.remove_search(oldest)
        self._decoder.activate_search(grammar.name)

    def _finish(self, begin: Begin) -> Final:
        self._decoder.end_utt()
        self._begin = None
        text, words = self._result()
        fallback = begin.grammar is not None and not self._believe(begin.grammar, text, words)
        if fallback:
            text, words = "", []
            if self._buffering:
                text, words = self._redecode(begin.cmn)
        self._audio.clear()
        confidence = sum(w.prob for w in words) / len(words) if words else None
        return Final(text, confidence, self._decoder.get_cmn(True), fallback)

    def _result(self) -> tuple[str, list[Any]]:
        """The last utterance's text and its word segments (silence and noise left out)."""
        hypothesis = self._decoder.hyp()
        if hypothesis is None or not hypothesis.hypstr:
            return "", []
        return hypothesis.hypstr, [s for s in self._decoder.seg() or () if _is_word(s.word)]

    def _believe(self, grammar: Grammar, text: str, words: list[Any]) -> bool:
        """Whether a grammar result stands. Rejected: a prefix of a phrase (where the search
        stopped), words that match the audio poorly (speech forced onto a phrase), or loud
        audio left outside the words (speech taken for silence).

        `MIN_WORD_SCORE` says how the score was tuned.
        """
        if not text or not words or not grammar.accepts(text):
            return False
        frames = sum(w.end_frame - w.start_frame + 1 for w in words)
        score = sum(self._logmath.log(w.ascore) for w in words) / frames
        return score >= MIN_WORD_SCORE and self._unexplained(words) <= MAX_UNEXPLAINED

    def _unexplained(self, words: list[Any]) -> float:
        samples = np.frombuffer(self._audio, np.int16)
        frames = len(samples) // _FRAME_SAMPLES
        if frames == 0:
            return 0.0
        blocks = samples[: frames * _FRAME_SAMPLES].astype(np.float64).reshape(frames, -1)
        energy = 10 * np.log10(np.mean(blocks**2, axis=1) + 1.0)
        loud = energy > energy.max() - LOUD_DB
        total = int(loud.sum())
        for word in words:
            loud[max(word.start_frame, 0) : word.end_frame + 1] = False
        return int(loud.sum()) / total

    def _redecode(self, cmn: str) -> tuple[str, list[Any]]:
        decoder = self._decoder
        decoder.activate_search(self._generic)
        decoder.set_cmn(cmn)
        decoder.start_utt()
        decoder.process_raw(bytes(self._audio))
        decoder.end_utt()
        return self._result()


def _rss_bytes() -> int | None:
    """Resident memory now, where /proc tells it (getrusage's peak would count the parent's
    memory at fork time on Linux)."""
    try:
        resident_pages = int(Path("/proc/self/statm").read_text().split()[1])
    except OSError:
        return None
    return resident_pages * os.sysconf("SC_PAGE_SIZE")


def serve(requests: IO[bytes], replies: IO[bytes]) -> None:
    """Answer requests until `Quit` or the other end closes the pipe."""
    try:
        load = read_request(requests)
        if not isinstance(load, Load):
            raise TypeError(f"expected Load first, got {type(load).__name__}")
        began = time.perf_counter()
        session = Session(load)
    except EOFError:
        return
    except Exception as exc:
        write_message(replies, Failed(f"could not load the pocketsphinx decoder: {exc}"))
        return
    write_message(replies, Ready(time.perf_counter() - began, _rss_bytes()))
    while True:
        try:
            request = read_request(requests)
        except EOFError:
            return
        if isinstance(request, Quit):
            return
        write_message(replies, _answer(session, request))


def _answer(session: Session, request: Load | Step | Abort) -> Reply:
    try:
        if isinstance(request, Step):
            return session.step(request)
        if isinstance(request, Abort):
            session.abort()
            return Progress("")
        return Failed("the decoder is already loaded")
    except Exception as exc:
        session.abort()
        return Failed(f"{type(exc).__name__}: {exc}")


def main() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent ends it: Quit, or closing stdin
    # Replies get a private copy of stdout; anything else printed goes to stderr.
    replies = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    serve(sys.stdin.buffer, replies)


if __name__ == "__main__":
    main()
