"""Personas: who the simulated caller is, and how that changes what the caller does.

- `voice` and `speaking_rate`: the synthesiser, voice and speed of the caller's speech (audio).
- `patience_s`: how long the caller waits for the agent to speak before saying "Hello?", and
  as long again before hanging up.
- `verbosity`: `terse` answers with the bare value where a reply offers a short form, `normal`
  says the reply, `chatty` wraps spoken answers in small talk.
- `tendencies`: `interrupts` (speaks over each agent reply that runs on), `backchannels` (says
  "mhm" while the agent talks), `wrong_info_first` (gives a scenario's wrong fact before the
  right one), `digits` (`spoken`, or `keyed` on the keypad), `goes_silent_after` (says nothing
  more after that many answers; 0: silent from the start).
- `language`: the caller's language (BCP 47); it picks the espeak-ng/flite voice when none is
  named, and a scenario written for an agent in another language is flagged.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from opusagent.config import TtsEngine
from opusagent.simulate.files import load_yaml_model


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Voice(_Model):
    engine: TtsEngine = "piper"
    name: str | None = Field(
        None, description="A voice of that engine; unset: the engine's default for the language."
    )


class Tendencies(_Model):
    interrupts: bool = False
    backchannels: bool = False
    wrong_info_first: bool = False
    digits: Literal["spoken", "keyed"] = "spoken"
    goes_silent_after: int | None = Field(None, ge=0)


class Persona(_Model):
    name: str = Field(min_length=1)
    description: str = ""
    voice: Voice = Voice()
    speaking_rate: float = Field(1.0, gt=0.25, le=4.0)
    patience_s: float = Field(12.0, gt=0)
    verbosity: Literal["terse", "normal", "chatty"] = "normal"
    tendencies: Tendencies = Tendencies()
    language: str = "en-US"

    def voice_name(self) -> str | None:
        """The synthesiser voice: the one named, else the language's for espeak-ng."""
        if self.voice.name is not None or self.voice.engine != "espeak":
            return self.voice.name
        return self.language.lower()


DEFAULT_PERSONA = Persona(name="default", description="Calm, patient, says what it is asked.")


def load_persona(path: Path) -> Persona:
    """The persona in a YAML file; `SimulationFileError` names the file and line of a problem."""
    return load_yaml_model(path, Persona, "persona")
