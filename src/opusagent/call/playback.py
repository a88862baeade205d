"""The playback ledger: which of the agent's words the caller actually heard.

Each reply is a sequence of segments (the text a TTS chunk speaks and where its audio ends,
in seconds from the start of the reply). Marks acknowledged by the provider tell how far
playback got; where a provider has no marks, the pacer's clock tells instead. History takes
its agent lines from here, so it holds the words heard, not the words generated.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from opusagent.call.turn_policy import normalized_words


@dataclass(slots=True)
class _Segment:
    text: str
    end_s: float


@dataclass(slots=True)
class ReplyLedger:
    """Segments of one reply and how much of it has played."""

    generation: int
    segments: list[_Segment] = field(default_factory=list)
    audio_s: float = 0.0
    """Seconds of audio queued for this reply so far."""
    acked_s: float = 0.0
    """Playback position confirmed by an acknowledged mark."""

    def add_text(self, text: str) -> None:
        """Words that the audio added next will speak."""
        if text:
            self.segments.append(_Segment(text, self.audio_s))

    def add_audio(self, seconds: float) -> None:
        self.audio_s += seconds
        if self.segments:
            self.segments[-1].end_s = self.audio_s

    @property
    def generated_text(self) -> str:
        return " ".join(s.text.strip() for s in self.segments if s.text.strip())

    def heard_text(self, heard_s: float) -> str:
        """Words played by `heard_s` seconds; a partly played segment counts pro rata."""
        words: list[str] = []
        start = 0.0
        for seg in self.segments:
            seg_words = seg.text.split()
            if heard_s >= seg.end_s - 1e-9:
                words.extend(seg_words)
            elif heard_s > start and seg.end_s > start:
                fraction = (heard_s - start) / (seg.end_s - start)
                words.extend(seg_words[: int(len(seg_words) * fraction + 1e-9)])
                break
            else:
                break
            start = seg.end_s
        return " ".join(words)

    def next_boundary_after(self, position_s: float) -> float:
        """End of the segment playing at `position_s` (the next point a mark can confirm)."""
        for seg in self.segments:
            if seg.end_s > position_s + 1e-9:
                return seg.end_s
        return self.audio_s


def word_count(text: str) -> int:
    return len(normalized_words(text))
