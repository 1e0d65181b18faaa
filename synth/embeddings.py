"""Text embeddings for grouping and preferences: an API model through LLMClient, or `local-hash`.

`local-hash` is a deterministic offline embedding (numpy only): word unigrams and character
3-grams hashed with CRC32 (not Python's salted hash()) into `dim` signed buckets, then
L2-normalized. It is no semantic model, but similar descriptions share words and n-grams,
which is enough to run the pipeline offline and reproducibly.
"""

from __future__ import annotations

import re
import zlib

import numpy as np

LOCAL_MODELS = ("local-hash",)


def _features(text: str) -> list[str]:
    words = re.findall(r"[a-z0-9]+", text.lower())
    feats = [f"w:{w}" for w in words]
    for w in words:
        padded = f"#{w}#"
        feats.extend(f"c:{padded[i:i + 3]}" for i in range(len(padded) - 2))
    return feats


def hash_embed(texts: list[str], dim: int) -> np.ndarray:
    out = np.zeros((len(texts), dim), dtype=np.float64)
    for row, text in enumerate(texts):
        for feat in _features(text):
            h = zlib.crc32(feat.encode("utf-8"))
            out[row, h % dim] += 1.0 if (h >> 31) & 1 else -1.0
    norms = np.linalg.norm(out, axis=1, keepdims=True)
    return out / np.where(norms == 0, 1.0, norms)


def embed(texts: list[str], config: dict, client=None, progress: bool = False) -> np.ndarray:
    """Unit-norm embeddings, one row per text."""
    model = config["embedding"]["model"]
    if model in LOCAL_MODELS:
        return hash_embed(texts, config["embedding"]["dim"])
    if client is None:
        raise ValueError(f"embedding.model={model!r} needs an LLM client")
    vectors = np.asarray(
        client.embed(texts, model, batch_size=config["embedding"]["batch_size"], progress=progress),
        dtype=np.float64,
    )
    if vectors.ndim != 2 or len(vectors) != len(texts):
        raise ValueError(f"embedding model {model!r} returned a malformed answer")
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.where(norms == 0, 1.0, norms)
