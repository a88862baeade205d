"""Voice activity detection: Silero v5 on onnxruntime, batched across calls."""

from opusagent.voice.vad.silero import (
    ModelNotFoundError,
    SileroModel,
    SileroStream,
    SileroVAD,
    VadStats,
)

__all__ = ["ModelNotFoundError", "SileroModel", "SileroStream", "SileroVAD", "VadStats"]
