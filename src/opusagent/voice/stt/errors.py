"""Errors shared by the speech recognisers."""

from __future__ import annotations


class STTUnavailableError(RuntimeError):
    """A recogniser cannot start: its package or model is missing. The message says what to
    install or configure."""


class DecoderError(RuntimeError):
    """A decoder failed while recognising; the utterance it was decoding is lost."""
