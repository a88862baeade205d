"""Where the pocketsphinx model files are, checked before any decoder loads them.

Nothing here imports pocketsphinx: the event loop's process only needs the paths and the
dictionary's words; the decoders themselves run in their own processes.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

from opusagent.voice.stt.errors import STTUnavailableError

_REINSTALL = (
    "pocketsphinx (a dependency of opusagent) ships the en-US model in its wheel; "
    "reinstall it with `uv sync` or `pip install --force-reinstall pocketsphinx`"
)
_ACOUSTIC_FILES = ("mdef", "means", "variances", "transition_matrices", "feat.params")


@dataclass(frozen=True, slots=True)
class SphinxModel:
    """An acoustic model folder, an N-gram language model and a pronunciation dictionary."""

    acoustic: Path
    language_model: Path
    dictionary: Path

    @classmethod
    def in_folder(cls, folder: Path) -> SphinxModel:
        """The layout of pocketsphinx's bundled model: `en-us/`, `en-us.lm.bin` and
        `cmudict-en-us.dict` inside `folder`."""
        return cls(folder / "en-us", folder / "en-us.lm.bin", folder / "cmudict-en-us.dict")

    @classmethod
    def bundled(cls) -> SphinxModel:
        """The en-US model inside the installed pocketsphinx package (16 kHz only)."""
        spec = importlib.util.find_spec("pocketsphinx")
        if spec is None or spec.origin is None:
            raise STTUnavailableError(f"pocketsphinx is not installed: {_REINSTALL}")
        return cls.in_folder(Path(spec.origin).parent / "model" / "en-us")

    def check(self) -> None:
        """Raise `STTUnavailableError` naming every missing part."""
        missing = [
            str(self.acoustic / name)
            for name in _ACOUSTIC_FILES
            if not (self.acoustic / name).is_file()
        ]
        missing += [str(p) for p in (self.language_model, self.dictionary) if not p.is_file()]
        if missing:
            raise STTUnavailableError(
                f"pocketsphinx model incomplete, missing: {', '.join(missing)}. {_REINSTALL}"
            )


def read_vocabulary(dictionary: Path) -> frozenset[str]:
    """The words of a pocketsphinx dictionary (alternative pronunciations `word(2)` folded)."""
    words: set[str] = set()
    with dictionary.open(encoding="utf-8") as lines:
        for line in lines:
            word = line.split(maxsplit=1)[0] if line.strip() else ""
            if word:
                words.add(word.split("(", 1)[0])
    return frozenset(words)
