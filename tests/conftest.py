"""Shared test set-up."""

import os
import shutil
import subprocess
import wave
from collections.abc import Callable

import numpy as np
import numpy.typing as npt
import pytest


@pytest.fixture(autouse=True)
def _no_opusagent_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests see only the OPUSAGENT_* variables they set, not the developer's shell."""
    for name in list(os.environ):
        if name.startswith("OPUSAGENT_"):
            monkeypatch.delenv(name)


Speak = Callable[[str], tuple[npt.NDArray[np.int16], int]]


@pytest.fixture(scope="session")
def speak(tmp_path_factory: pytest.TempPathFactory) -> Speak:
    """Real speech from espeak-ng: `speak(text)` gives (mono int16 samples, sample rate).

    Missing espeak-ng skips the test on a developer's machine but fails it in CI, where
    `make test` installs it, so a broken install step cannot hide behind a skip.
    """
    if shutil.which("espeak-ng") is None:
        message = "espeak-ng is not installed (make test installs it; or apt-get install espeak-ng)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    folder = tmp_path_factory.mktemp("speech")

    def synthesize(text: str) -> tuple[npt.NDArray[np.int16], int]:
        path = folder / f"{abs(hash(text))}.wav"
        subprocess.run(["espeak-ng", "-w", str(path), text], check=True)
        with wave.open(str(path)) as wav:
            rate = wav.getframerate()
            samples = np.frombuffer(wav.readframes(wav.getnframes()), np.int16)
        return samples, rate

    return synthesize
