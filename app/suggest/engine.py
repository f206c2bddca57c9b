"""Offline card suggestions: look-alike cards, likely duplicates, proposed groups.

This module owns the public, pure-Python API of the suggestion engine (no
database, no web): ``similar`` for the "Is yours one of these?" prompt,
``duplicate_pairs`` for the facilitator and ``suggest_clusters`` for proposed
groups, plus the numpy average-linkage clustering they rest on. Scores are
cosines of multilingual sentence embeddings (see ``embedding``), so a Russian
card and its English counterpart meet. A character n-gram TF-IDF signal was
measured as an addition and left out: it did not improve grouping (paired
difference +0.006 ARI, s.e. 0.009, over 60 random halves of the labelled set)
and it lowered the top-1 precision of title look-ups (0.78 -> 0.73). The
thresholds below were tuned on ``tests/data/cards_labelled.json``; see
``bench/suggest.py``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from app.suggest.embedding import embed
from app.suggest.titles import propose_titles

# Title typed so far vs. a whole card. Cards of unrelated topics reach 0.24 at
# the 99th percentile and 0.31 at the 99.9th; a Russian title vs. the English
# card saying the same thing scores 0.23-0.57 (median 0.36). At 0.30, with each
# labelled title as the query, 86% of the cards shown share its topic and 51 of
# 86 titles get a prompt; 0.35 would raise that to 94% but miss half of the
# cross-language duplicates, and a missed duplicate costs more than a glance.
SIMILAR_MIN_SCORE = 0.30
# Whole card vs. whole card. Pairs from different topics top out at 0.47 on the
# labelled set; a card and its Russian paraphrase score 0.50-0.83 (median 0.72).
# At 0.55 all 32 pairs found on the labelled set are within one topic.
DUPLICATE_MIN_SCORE = 0.55
# Average-linkage cut on 1 - cosine of the centred embeddings: merge while the
# mean pair of two groups is still positively correlated. ARI on the labelled
# set is flat (0.52-0.54) from 0.88 to 0.97 and falls off a cliff from 0.98
# (0.47, then 0.34 at 1.00); 0.93 is the middle of that plateau, not its peak.
CLUSTER_DISTANCE = 0.93
# Centring removes the direction every card shares (the workshop's topic), which
# otherwise dominates the cosines. With a handful of cards their mean is mostly
# the cards themselves, so it is shrunk towards zero like a prior worth this
# many cards: two cards are not pushed apart just because they are the only two.
CENTRING_PRIOR = 5.0


@dataclass(frozen=True)
class Item:
    """A card as the engine sees it: ``text`` is title + " " + body."""

    id: int
    text: str


@dataclass
class Suggestion:
    """A proposed group: card ids in ascending order and a title of 2-4 words."""

    card_ids: list[int]
    title: str


def similar(
    query: str,
    items: list[Item],
    limit: int = 3,
    min_score: float = SIMILAR_MIN_SCORE,
) -> list[tuple[int, float]]:
    """Up to ``limit`` (id, score) of items that look like ``query``, best first."""
    if not items or limit <= 0 or not query.strip():
        return []
    vecs = embed([query] + [item.text for item in items])
    scores = vecs[1:] @ vecs[0]
    ranked = sorted(
        ((item.id, round(float(s), 4)) for item, s in zip(items, scores, strict=True)),
        key=lambda pair: (-pair[1], pair[0]),
    )
    return [pair for pair in ranked if pair[1] >= min_score][:limit]


def duplicate_pairs(
    items: list[Item],
    limit: int = 10,
    min_score: float = DUPLICATE_MIN_SCORE,
) -> list[tuple[int, int, float]]:
    """Likely duplicates as (smaller id, larger id, score), most similar first."""
    ordered = sorted(items, key=lambda item: item.id)
    if len(ordered) < 2 or limit <= 0:
        return []
    vecs = embed([item.text for item in ordered])
    sims = vecs @ vecs.T
    rows, cols = np.triu_indices(len(ordered), k=1)
    values = sims[rows, cols]
    keep = np.flatnonzero(values >= min_score)
    pairs = [(ordered[rows[k]].id, ordered[cols[k]].id, round(float(values[k]), 4)) for k in keep]
    pairs.sort(key=lambda p: (-p[2], p[0], p[1]))
    return pairs[:limit]


def suggest_clusters(items: list[Item], max_distance: float = CLUSTER_DISTANCE) -> list[Suggestion]:
    """Proposed groups of two or more cards, largest first; deterministic.

    The number of groups is not asked for: average linkage stops merging when
    the closest two groups are further apart than ``max_distance``.
    """
    # Sorting by id makes the result independent of the caller's order, ties
    # included (the clustering breaks them by position).
    ordered = sorted(items, key=lambda item: item.id)
    if len(ordered) < 2:
        return []
    texts = [item.text for item in ordered]
    vecs = _centre(embed(texts).astype(np.float64))
    labels = average_linkage(1.0 - vecs @ vecs.T, max_distance)
    groups = [np.flatnonzero(labels == lab).tolist() for lab in np.unique(labels)]
    groups = [g for g in groups if len(g) >= 2]
    titles = propose_titles(groups, texts)
    out = [
        Suggestion(card_ids=[ordered[i].id for i in g], title=t)
        for g, t in zip(groups, titles, strict=True)
    ]
    out.sort(key=lambda s: (-len(s.card_ids), s.card_ids[0]))
    return out


def _centre(vecs: np.ndarray) -> np.ndarray:
    n = len(vecs)
    centred = vecs - vecs.mean(axis=0) * (n / (n + CENTRING_PRIOR))
    norms = np.linalg.norm(centred, axis=1, keepdims=True)
    return centred / np.maximum(norms, 1e-12)


def average_linkage(dist: np.ndarray, max_distance: float) -> np.ndarray:
    """Cluster labels (0..k-1, by first member) from a symmetric distance matrix.

    Plain O(n^3)-worst-case agglomeration with the Lance-Williams update for
    average linkage; at 500 cards that is ~0.1 s of numpy, so neither scipy nor
    a cleverer nearest-neighbour chain is worth a dependency or the code.
    """
    n = len(dist)
    d = np.array(dist, dtype=np.float64)
    np.fill_diagonal(d, np.inf)
    size = np.ones(n)
    owner = np.arange(n)
    for _ in range(n - 1):
        # argmin scans row-major, so among equal distances the pair with the
        # smallest indices wins: ties are broken the same way on every run.
        i, j = divmod(int(np.argmin(d)), n)
        if d[i, j] > max_distance:
            break
        i, j = min(i, j), max(i, j)
        merged = (size[i] * d[i] + size[j] * d[j]) / (size[i] + size[j])
        d[i, :] = merged
        d[:, i] = merged
        d[i, i] = np.inf
        d[j, :] = np.inf
        d[:, j] = np.inf
        size[i] += size[j]
        owner[owner == j] = i
    # A cluster is owned by its smallest index (merges keep the smaller one), so
    # numbering the sorted owners numbers clusters by their first member.
    return np.unique(owner, return_inverse=True)[1]


__all__ = [
    "CLUSTER_DISTANCE",
    "DUPLICATE_MIN_SCORE",
    "SIMILAR_MIN_SCORE",
    "Item",
    "Suggestion",
    "average_linkage",
    "duplicate_pairs",
    "similar",
    "suggest_clusters",
]
