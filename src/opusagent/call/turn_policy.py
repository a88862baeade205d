"""Turn-taking options for a call, in one typed object."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

DEFAULT_BACKCHANNEL_WORDS = frozenset(
    {"mhm", "mm", "hmm", "uh-huh", "uh huh", "okay", "ok", "yeah", "yep", "right", "sure", "aha"}
    | {"mm hmm", "mm-hmm", "m", "h"}
)
""""m" and "h": pocketsphinx's language model has no "mhm" and spells it "m h m", word by word
in its partials."""


class TurnPolicy(BaseModel):
    """When the caller starts and ends a turn, when the caller may interrupt the agent, and how
    long each stage may take before the caller hears the agent's fallback line."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    speech_threshold: float = Field(
        0.5, ge=0.0, le=1.0, description="VAD probability at or above which a window is speech."
    )
    min_speech_ms: int = Field(
        96, ge=0, description="Speech must last this long before a caller turn starts."
    )
    end_of_turn_silence_ms: int = Field(
        500, ge=0, description="Silence after speech that ends the caller's turn."
    )
    barge_in_min_speech_ms: int = Field(
        300, ge=0, description="Caller speech over the agent must last this long to interrupt."
    )
    barge_in_min_words: int = Field(
        1,
        ge=0,
        description="Words (backchannels excluded) the caller must say to interrupt; "
        "0 interrupts on speech alone and relies on false-interruption resume.",
    )
    backchannel_words: frozenset[str] = Field(
        DEFAULT_BACKCHANNEL_WORDS,
        description="Words that acknowledge the agent and never interrupt it.",
    )
    false_interruption_ms: int = Field(
        1500,
        ge=0,
        description="If the caller stops within this time of cutting in and said no words, "
        "the cut reply resumes; 0 disables resuming.",
    )
    dtmf_interrupts: bool = Field(True, description="A DTMF key cuts the agent off.")
    dtmf_inter_digit_ms: int = Field(
        2000, ge=0, description="Digits collected so far form a turn after this pause."
    )
    dtmf_terminators: str = Field("#", description="Keys that end a DTMF entry at once.")
    no_input_timeout_ms: int = Field(
        8000,
        ge=0,
        description="Silence after the agent finishes speaking before a no-input turn; 0 disables.",
    )
    max_call_duration_s: float = Field(
        3600.0, gt=0, description="The call is hung up after this long."
    )
    stt_final_timeout_ms: int = Field(
        2000,
        gt=0,
        description="Longest wait for the recogniser's final transcript after the caller "
        "stops; then the partial is used, or with no words the fallback line is said.",
    )
    agent_timeout_ms: int = Field(
        6000,
        gt=0,
        description="Longest wait for each part of the agent's reply (keep it above the agent "
        "file's LLM timeout_s); then the fallback line is said.",
    )
    tts_timeout_ms: int = Field(
        8000,
        gt=0,
        description="Longest wait for the synthesiser's audio once it has text to speak; "
        "then the fallback line is said.",
    )

    def is_backchannel(self, text: str) -> bool:
        """True when every word of `text` is a backchannel (and there is at least one word)."""
        words = normalized_words(text)
        if not words:
            return False
        joined = " ".join(words)
        return joined in self.backchannel_words or all(w in self.backchannel_words for w in words)

    def counted_words(self, text: str) -> int:
        """Words that count toward an interruption: all words unless the text is a backchannel."""
        return 0 if self.is_backchannel(text) else len(normalized_words(text))


def normalized_words(text: str) -> list[str]:
    """Lower-case words with surrounding punctuation removed."""
    return [w for w in (t.strip(".,!?;:\"'()").lower() for t in text.split()) if w]
